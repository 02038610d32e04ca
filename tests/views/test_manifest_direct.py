"""detstack reads local Parquet manifests itself (references straight from the record
files, chunks through the source guard, decoded with the array's codecs): the values are
exactly zarr-python's, and every refusal of the zarr path holds there too (references
outside stored data, promised chunks without a reference, chunks that do not decode,
coordinate references that do not point at the sidecar)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_manifest import open_det, write

from detstack.errors import CorruptChunkError, MissingDataError, UnsafeReferenceError
from detstack.store import open_view
from detstack.store.manifest import manifest_filesystem
from detstack.store.manifest_reads import ManifestArray
from detstack.store.manifest_sidecar import _chunk_spans, _read_chunks, _references_dataset

RUNS = ["agipd-raw-chunked", "agipd500k-corr-deflate", "lpd-raw-gain-multiframe"]


@pytest.fixture(scope="module", params=RUNS)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, Path]:
    from detstack.convert import to_manifest
    folder = write(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, to_manifest(open_det(folder, request.param), folder / "view.parq")


def _arrays(view: Any) -> dict[str, ManifestArray]:
    """The manifest arrays behind a view's keys (ExpandedArray wraps some)."""
    out = {}
    for key, rows in view.files[0].h5.items():
        arr = getattr(rows.array, "array", rows.array) if not isinstance(
            rows.array, ManifestArray) else rows.array
        if isinstance(arr, ManifestArray):
            out[key] = arr
    return out


def test_direct_reads_are_zarr_reads(built):
    _, out = built
    arrays = _arrays(open_view(out))
    assert arrays and all(a.direct is not None for a in arrays.values())
    for key, arr in arrays.items():
        n = arr.shape
        for index in [(), (0,), (n[0] - 1, slice(None)), (slice(None), -1),
                      (0, slice(1, max(n[1], 2)), Ellipsis), (Ellipsis, 0)]:
            got = arr.direct.read(index)
            want = np.asarray(arr.array[index])
            assert got is not None, (key, index)
            assert got.dtype == want.dtype and got.shape == want.shape, (key, index)
            np.testing.assert_array_equal(got, want, err_msg=f"{key} {index}")
        assert arr.direct.read((0, [0, 1])) is None      # fancy indexes: zarr reads them


def _edit_record(out: Path, name: str, change: Any) -> None:
    """Rewrite ``name``'s first record file with ``change(paths, offsets, sizes)``."""
    file = out / name / "refs.0.parq"
    cols = pq.read_table(file).to_pydict()
    change(cols["path"], cols["offset"], cols["size"])
    pq.write_table(pa.table({"path": pa.array(cols["path"], pa.string()),
                             "offset": pa.array(cols["offset"], pa.int64()),
                             "size": pa.array(cols["size"], pa.int64())}), file)


def _first(paths: list[str | None]) -> int:
    return next(i for i, p in enumerate(paths) if p is not None)


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Any, Path]:
    from detstack.convert import to_manifest
    name = "agipd-raw-chunked"
    write(tmp_path / "run", name)
    det = open_det(tmp_path / "run", name)
    return det, to_manifest(det, tmp_path / "run" / "view.parq")


def test_reference_into_metadata_is_refused(fresh):
    _, out = fresh

    def into_superblock(paths: list[Any], offsets: list[int], sizes: list[int]) -> None:
        offsets[_first(paths)] = 0

    _edit_record(out, "image.data", into_superblock)
    view = open_det(open_view(out), "agipd-raw-chunked")
    with pytest.raises(UnsafeReferenceError, match="outside the stored data"):
        view.get_array("image.data")


def test_promised_chunk_without_reference_names_train(fresh):
    _, out = fresh
    _edit_record(out, "image.data", lambda paths, o, s: paths.__setitem__(_first(paths), None))
    view = open_det(open_view(out), "agipd-raw-chunked")
    with pytest.raises(MissingDataError, match=r"image\.data/0\.0\.0\.0\.0.*train"):
        view.get_array("image.data")


def test_chunk_that_does_not_decode_names_source(tmp_path):
    from detstack.convert import to_manifest
    name = "agipd500k-corr-deflate"
    write(tmp_path / "run", name)
    out = to_manifest(open_det(tmp_path / "run", name), tmp_path / "run" / "view.parq")

    def cut(paths: list[Any], offsets: list[int], sizes: list[int]) -> None:
        sizes[_first(paths)] -= 7          # still inside stored data, but cut short

    _edit_record(out, "image.data", cut)
    view = open_det(open_view(out), name)
    with pytest.raises(CorruptChunkError, match=r"INSTRUMENT/.*image/data.*cannot be decoded"):
        view.get_array("image.data")


def test_coordinate_check_compares_every_reference(fresh):
    det, out = fresh
    fs = manifest_filesystem(str(out))
    sidecar = fs.locations.listed[-1].loc
    with h5py.File(sidecar) as f:
        spans = _chunk_spans(f["count.image"])
        assert _references_dataset(fs, "count.image", f["count.image"], sidecar, spans)
        assert not _references_dataset(fs, "count.image", f["count.image"], sidecar,
                                       (spans[0][::-1], spans[1][::-1]))

    def shifted(paths: list[Any], offsets: list[int], sizes: list[int]) -> None:
        offsets[-1] += 1

    _edit_record(out, "count.image", shifted)
    fs = manifest_filesystem(str(out))
    with h5py.File(sidecar) as f:
        ds = f["count.image"]
        assert not _references_dataset(fs, "count.image", ds, sidecar, _chunk_spans(ds))
    # then read as the references say: a chunk that does not decode names key and train
    with pytest.raises(CorruptChunkError, match=r"count\.image/0\.3 .*train index 3"):
        open_view(out)

    def into_metadata(paths: list[Any], offsets: list[int], sizes: list[int]) -> None:
        offsets[-1] = 0

    _edit_record(out, "count.image", into_metadata)
    with pytest.raises(UnsafeReferenceError, match="outside the stored data"):
        open_view(out)


def test_sidecar_chunks_decoded_whole_equal_hdf5(built):
    _, out = built
    fs = manifest_filesystem(str(out))
    sidecar = fs.locations.listed[-1].loc
    with h5py.File(sidecar) as f:
        names = [n for n, d in f.items() if isinstance(d, h5py.Dataset) and d.chunks]
        assert "train" in names and any(n.startswith("count.") for n in names)
        for name in names:
            ds = f[name]
            got = _read_chunks(fs, ds, sidecar, *_chunk_spans(ds))
            assert got.dtype == ds.dtype
            np.testing.assert_array_equal(got, ds[()], err_msg=name)


def test_locations_resolved_in_bulk_as_one_by_one(tmp_path):
    from detstack.store.manifest_guard import normalize, normalize_many
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f.h5").write_bytes(b"")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "g.h5").symlink_to(tmp_path / "real" / "f.h5")
    urls = [str(tmp_path / p) for p in ("linked/f.h5", "real/g.h5", "linked/../real/f.h5",
                                        "linked/none.h5", "real")] + ["s3://b/x/../y.h5"]
    assert normalize_many(urls) == [normalize(u) for u in urls]
    assert normalize_many(urls)[:2] == [str((tmp_path / "real" / "f.h5").resolve())] * 2


def test_compact_parquet_inline_records_read_through_zarr(tmp_path):
    """compact=True puts small arrays inline (a ``raw`` column): zarr reads those; the
    referenced keys are still read directly."""
    from test_manifest import assert_same_reads

    from detstack.convert import to_manifest
    name = "agipd500k-corr-deflate"
    det = open_det(write(tmp_path / "run", name), name)
    out = to_manifest(det, tmp_path / "run" / "c.parq", compact=True)
    assert "raw" in pq.read_schema(out / "train" / "refs.0.parq").names
    view = open_view(out)
    assert all(a.direct is not None for a in _arrays(view).values())
    assert_same_reads(det, open_det(view, name))


def test_record_files_in_row_groups_are_read_by_group(fresh):
    """A writer may split record files into row groups: only the group holding a chunk
    is read, with the same values."""
    _, out = fresh
    file = out / "image.data" / "refs.0.parq"
    pq.write_table(pq.read_table(file), file, row_group_size=3)
    view = open_view(out)
    arr = _arrays(view)["image.data"]
    assert len(arr.direct.records.row_groups("image.data", 0)) > 3
    np.testing.assert_array_equal(arr.direct.read(()), np.asarray(arr.array[...]))
    np.testing.assert_array_equal(arr.direct.read((0, 1)), np.asarray(arr.array[0, 1]))


def test_chunk_index_accepts_exactly_the_stored_chunks(tmp_path):
    """The guard's chunk lookup: every stored chunk (start, size) of a chunked dataset, a
    range inside a contiguous one; not a shifted start, a wrong size or a gap."""
    from detstack.store.manifest_guard import ChunkIndex
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("c", data=np.arange(6 * 40, dtype=np.uint16).reshape(6, 40),
                         chunks=(1, 40))
        f.create_dataset("z", data=np.arange(50, dtype=np.uint8).reshape(5, 10),
                         chunks=(1, 10), compression="gzip")
        f.create_dataset("flat", data=np.arange(100, dtype=np.int32))
    with h5py.File(path, "r") as f:
        spans = {name: [(c.byte_offset, c.size) for c in
                        (f[name].id.get_chunk_info(i) for i in range(f[name].id.get_num_chunks()))]
                 for name in ("c", "z")}
        flat = f["flat"].id.get_offset()
    index = ChunkIndex(str(path))
    try:
        for name, chunks in spans.items():
            for start, size in chunks:
                assert index.holds(start, start + size, (name,))
            start, size = chunks[2]
            assert not index.holds(start + 1, start + 1 + size, (name,))
            assert not index.holds(start, start + size - 1, (name,))
        assert index.holds(flat + 8, flat + 40, ("flat",))
        assert not index.holds(flat + 396, flat + 404, ("flat",))
    finally:
        index.close()
