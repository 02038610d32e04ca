"""Parquet manifests: record files written by pyarrow with dictionary-encoded paths,
read back by fastparquet (fsspec's default) and pyarrow as plain columns; keys written
side by side in worker processes give the same files as one process, and errors raised
in a worker reach the caller as they were raised, with nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import fastparquet
import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import xarray as xr
from test_manifest import assert_same_reads, open_det, write
from view_oracle import expected_array

from detstack.convert import to_manifest
from detstack.convert.manifest import UnsupportedKeyError, copied
from detstack.convert.plan import ViewPlan
from detstack.store import open_view

NAME = "agipd-raw-chunked"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("parq") / "run", NAME)


def tables(folder: Path) -> dict[str, object]:
    """Every record file's columns, the manifest's own name taken out of the paths."""
    out = {}
    for p in sorted(folder.rglob("*.parq")):
        cols = pq.read_table(p).to_pydict()
        if "path" in cols:
            cols["path"] = [v and v.replace(folder.name, "M") for v in cols["path"]]
        out[str(p.relative_to(folder))] = cols
    return out


def test_record_files_are_plain_columns(run: Path) -> None:
    out = to_manifest(open_det(run, NAME), run / "plain.parq", overwrite=True)
    files = sorted((out / "image.data").glob("refs.*.parq"))
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.metadata is None or b"ARROW:schema" not in meta.metadata   # no arrow schema
    col = meta.row_group(0).column(0)
    assert col.path_in_schema == "path" and "RLE_DICTIONARY" in col.encodings
    for i in (1, 2):   # offsets and sizes delta-encoded, read back as integers
        assert "DELTA_BINARY_PACKED" in meta.row_group(0).column(i).encodings
    frame = fastparquet.ParquetFile(str(files[0])).to_pandas()
    assert frame["offset"].dtype.kind == "i" and frame["size"].dtype.kind == "i"
    np.testing.assert_array_equal(frame["offset"].to_numpy(),
                                  pq.read_table(files[0])["offset"].to_numpy())
    paths = frame["path"].to_numpy()
    assert {type(p) for p in paths} <= {str, type(None)}
    assert None in set(paths.tolist())       # holes (absent modules) stay null paths
    names = {Path(p).name for p in paths if p is not None}
    assert names <= {p.name for p in run.glob("*.h5")} | {"arrays.h5"}   # + the fill chunk


def test_workers_write_the_same_files(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    det = open_det(run, NAME)
    monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", "1")
    one = to_manifest(det, run / "one.parq", overwrite=True)
    monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", "2")
    two = to_manifest(det, run / "two.parq", overwrite=True)
    a, b = tables(one), tables(two)
    assert a.keys() == b.keys() and len(a) > 3
    assert a == b
    ma, mb = (json.loads((m / ".zmetadata").read_text())["metadata"] for m in (one, two))
    assert {k: v for k, v in ma.items() if k != ".zattrs"} == \
        {k: v for k, v in mb.items() if k != ".zattrs"}
    holes = [m[".zattrs"]["detstack_record"]["manifest"]["unallocated"] for m in (ma, mb)]
    assert holes[0] == holes[1]
    assert_same_reads(det, open_det(open_view(two), NAME))
    ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                         storage_options={"fo": str(two), "remote_protocol": "file"})
    np.testing.assert_array_equal(ds["image.data"].values,
                                  expected_array(ViewPlan(det, squeeze=True), "image.data"))


def test_tasks_by_module_write_the_same_files(run: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """One task per module for all its keys (advanced window by window) or one per
    (key, module): the same files, in one process and in workers."""
    from detstack.convert.manifest import output
    det = open_det(run, NAME)
    made = {}
    for group in (1, 10**6):
        monkeypatch.setattr(output, "GROUP_MODULES", group)
        for workers in ("1", "2"):
            monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", workers)
            out = to_manifest(det, run / f"g{group}-{workers}.parq", overwrite=True)
            made[group, workers] = tables(out)
    first = made[1, "1"]
    assert len(first) > 3 and all(t == first for t in made.values())


def test_worker_errors_reach_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "dssc-raw-shuffle"
    write(tmp_path, name)
    det = open_det(tmp_path, name)
    block = next(ViewPlan(det, ["image.data"], squeeze=True).blocks(
        ViewPlan(det, ["image.data"], squeeze=True).key("image.data")))
    for f in det.data.files:
        f.close()
    with h5py.File(block.file, "r+") as f:   # one chunk stored skipping its filters
        ds = f[block.dataset]
        ds.id.write_direct_chunk((block.src_start, 0, 0, 0), ds[block.src_start].tobytes(),
                                 filter_mask=3)
    monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", "2")
    with pytest.raises(UnsupportedKeyError, match="filter_mask") as err:
        to_manifest(open_det(tmp_path, name), tmp_path / "v.parq")
    assert err.value.key == "image.data"
    assert not [p for p in tmp_path.iterdir() if "v.parq" in p.name]   # nothing left


def test_small_keys_stream_by_trains(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copied keys go into the sidecar a window of trains at a time: a window of one
    train gives the same manifest as one window holding the run."""
    det = open_det(run, NAME)
    monkeypatch.setattr(copied.train_blocks, "__defaults__", (1,))
    small = open_view(to_manifest(det, run / "w1.json", overwrite=True))
    monkeypatch.setattr(copied.train_blocks, "__defaults__", (10_000,))
    whole = open_view(to_manifest(det, run / "wall.json", overwrite=True))
    keys = small.record["manifest"]["copied"]
    assert "image.pulseId" in keys and "header.pulseCount" in keys
    for key in keys:
        xr.testing.assert_identical(det.get_array(key), open_det(small, NAME).get_array(key))
        xr.testing.assert_identical(det.get_array(key), open_det(whole, NAME).get_array(key))


def references(folder: Path) -> dict[str, dict[int, tuple[object, ...]]]:
    """{key: {chunk index: (path, offset, size)}} over every record file, the manifest's
    own name taken out of the paths; every record file holds a whole record."""
    meta = json.loads((folder / ".zmetadata").read_text())
    size = meta["record_size"]
    out: dict[str, dict[int, tuple[object, ...]]] = {}
    for key in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        grid = meta["metadata"][f"{key}/.zarray"]
        n_chunks = int(np.prod([-(-s // c) for s, c in zip(grid["shape"], grid["chunks"],
                                                           strict=True)]))
        refs = out.setdefault(key, {})
        for p in (folder / key).glob("refs.*.parq"):
            r = int(p.name.split(".")[1])
            cols = pq.read_table(p).to_pydict()
            assert len(cols["path"]) == min(size, n_chunks - r * size), p
            for i, (path, off, n) in enumerate(zip(cols["path"], cols["offset"], cols["size"],
                                                   strict=True)):
                if path is not None:
                    refs[r * size + i] = (path.replace(folder.name, "M"), off, n)
    return out


@pytest.mark.parametrize(("record_size", "layout"), [(1, "trains"), (7, "trains"),
                                                     (1000, "trains"), (7, "frames")])
def test_records_of_any_size_from_module_tasks(run: Path, monkeypatch: pytest.MonkeyPatch,
                                               record_size: int, layout: str) -> None:
    """Modules built as tasks in windows of one train, records of any size (one chunk,
    a few, more than the whole key): the same references and holes as the default build,
    in one process or in workers; records shared by modules are joined whole."""
    from detstack.convert.manifest import keyrefs, writer
    det = open_det(run, NAME)
    base = to_manifest(det, run / f"base-{layout}.parq", overwrite=True, layout=layout)
    expected = references(base)
    assert sum(len(v) for v in expected.values()) > 100
    monkeypatch.setattr(writer, "RECORD_SIZE", record_size)
    monkeypatch.setattr(keyrefs, "WINDOW_TRAINS", 1)
    for workers in ("1", "2"):
        monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", workers)
        out = to_manifest(det, run / f"r{record_size}-{workers}.parq", overwrite=True,
                          layout=layout)
        assert references(out) == expected
        holes = [json.loads((m / ".zmetadata").read_text())["metadata"][".zattrs"]
                 ["detstack_record"]["manifest"]["unallocated"] for m in (base, out)]
        assert holes[0] == holes[1]
    assert_same_reads(det, open_det(open_view(out), NAME))


def test_record_files_have_row_groups(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record files are cut into row groups (readers of one chunk decode only its group):
    several per file, the same references as one group, read back by fsspec and detstack."""
    from detstack.convert.manifest import records
    det = open_det(run, NAME)
    whole = to_manifest(det, run / "groups1.parq", overwrite=True)
    monkeypatch.setattr(records, "ROW_GROUP", 5)
    out = to_manifest(det, run / "groups5.parq", overwrite=True)
    meta = pq.ParquetFile(out / "image.data" / "refs.0.parq").metadata
    assert meta.num_row_groups > 2 and meta.row_group(0).num_rows == 5
    assert pq.ParquetFile(whole / "image.data" / "refs.0.parq").metadata.num_row_groups == 1
    assert references(out) == references(whole)
    ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                         storage_options={"fo": str(out), "remote_protocol": "file"})
    np.testing.assert_array_equal(ds["image.data"].values,
                                  expected_array(ViewPlan(det, squeeze=True), "image.data"))
    assert_same_reads(det, open_det(open_view(out), NAME))


def test_a_record_file_larger_than_any_record_is_refused(run: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Record files are read whole into memory; one larger than a record can be (a
    hostile manifest's) is refused by name, not read."""
    from detstack.errors import FileFormatError
    from detstack.store import manifest_records
    out = to_manifest(open_det(run, NAME), run / "big.parq", overwrite=True)
    record = out / "image.data" / "refs.0.parq"
    view = open_det(open_view(out), NAME)
    monkeypatch.setattr(manifest_records, "MAX_RECORD_BYTES", record.stat().st_size - 1)
    with pytest.raises(FileFormatError, match="refs.0.parq.*more than a reference record"):
        view.get_array("image.data")
