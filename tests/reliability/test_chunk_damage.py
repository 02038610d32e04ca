"""Damaged chunks and deleted references, through every view form and writer that reads
with plain h5py or zarr-python: a chunk that cannot be decoded is a ``CorruptChunkError``
naming source file, dataset, module and train; a manifest reference the counts promise
but that was deleted is a ``MissingDataError`` (reader and ``verify``), while chunks the
DAQ never wrote (HDF5 reads their fill value) are recorded by the writer and read as
h5py reads them."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.convert import to_manifest, to_vds
from detstack.convert.cxi import to_cxi
from detstack.errors import CorruptChunkError, MissingDataError
from detstack.store import open_view
from detstack.store.verify import verify_view

RUN = dict(kind="AGIPD1M", raw=True, n_trains=3, frames_per_train=2, modules=[0, 2],
           with_control=False)
DATA = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf/image/data"
ROW = 3                          # module 0: train 10001, frame 1


def module_file(run: Path, module: int) -> Path:
    return next(run.glob(f"*AGIPD{module:02d}-S00000.h5"))


def damage_chunk(path: Path, dset: str, row: int) -> None:
    with h5py.File(path, "r") as h5:
        offset = h5[dset].id.get_chunk_info(row).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 2)
        fh.write(b"\xff" * 64)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("damaged") / "run"
    synth.write_run(run, layout="deflate", **RUN)
    damage_chunk(module_file(run, 0), DATA.format(0), ROW)
    return run


def det_of(view_or_run: object) -> detstack.AGIPD1M:
    return detstack.AGIPD1M(view_or_run, raw=True)


def assert_names_the_chunk(err: pytest.ExceptionInfo[CorruptChunkError], run: Path) -> None:
    msg = str(err.value)
    for part in (module_file(run, 0).name, DATA.format(0), "module 0", "train 10001"):
        assert part in msg, (part, msg)


def assert_names_the_store_chunk(err: pytest.ExceptionInfo[CorruptChunkError]) -> None:
    """Icechunk hides where a virtual chunk lives: its store, slot, source and train."""
    msg = str(err.value)
    for part in ("v.icechunk", "image.data", DATA.format(0).split("/", 1)[1].rsplit("/", 2)[0],
                 "module slot 0", "train index 1"):
        assert part in msg, (part, msg)


def write_view(form: str, run: Path, out: Path) -> Path:
    det = det_of(detstack.RunDirectory(run))
    if form.startswith("vds"):
        return to_vds(det, out / "v.h5", mapping=form.split("-", 1)[1], overwrite=True)
    if form == "cxi":
        return to_cxi(det, out / "v.cxi", overwrite=True)
    if form == "icechunk":
        from detstack.convert.icechunk import to_icechunk
        to_icechunk(det, out / "v.icechunk")
        return out / "v.icechunk"
    return to_manifest(det, run / f"m.{form}", overwrite=True)


@pytest.mark.parametrize("form", ["vds-per-train", "vds-blocks", "vds-compact", "cxi", "json", "parq",
                                  "icechunk"])
def test_corrupt_chunk_through_every_view_form(damaged: Path, tmp_path: Path, form: str
                                               ) -> None:
    view = write_view(form, damaged, tmp_path)
    det = det_of(open_view(str(view)))
    with pytest.raises(CorruptChunkError) as err:
        det.get_array("image.data")
    if form == "icechunk":
        assert_names_the_store_chunk(err)
        return
    assert_names_the_chunk(err, damaged)
    assert "chunk" in str(err.value)
    good = det.select_trains(detstack.by_index[[0, 2]]).get_array("image.data")
    with h5py.File(module_file(damaged, 0)) as h5:      # the other trains still read
        np.testing.assert_array_equal(good.sel(module=0).values[0], h5[DATA.format(0)][0:2])
    report = verify_view(str(view), full=True)
    assert not report.ok and module_file(damaged, 0).name in " ".join(report.lines())
    count("bad inputs")


def test_write_frames_names_the_corrupt_chunk(damaged: Path, tmp_path: Path) -> None:
    det = det_of(detstack.RunDirectory(damaged))
    out = tmp_path / "frames.h5"
    with pytest.raises(CorruptChunkError) as err:
        det.write_frames(out, [10001, 10001], [0, 1])
    assert_names_the_chunk(err, damaged)
    assert not out.exists() and not list(tmp_path.iterdir())
    count("bad inputs")


# -- manifests: deleted references against never-written chunks ----------------------

def _unallocated_run(folder: Path) -> Path:
    """A run whose module 0 lacks the chunk of ROW: counted by INDEX, never written."""
    run = folder / "run"
    synth.write_run(run, **RUN)
    with h5py.File(module_file(run, 0), "r+") as h5:
        data = h5[DATA.format(0)][...]
        del h5[DATA.format(0)]
        ds = h5.create_dataset(DATA.format(0), shape=data.shape, dtype=data.dtype,
                               chunks=(1,) + data.shape[1:])
        ds[:ROW] = data[:ROW]
        ds[ROW + 1:] = data[ROW + 1:]
        assert ds.id.get_chunk_info_by_coord((ROW, 0, 0, 0)).byte_offset is None
    return run


def _drop_reference(manifest: Path, key: str) -> None:
    if manifest.suffix == ".json":
        doc = json.loads(manifest.read_text())
        del doc["refs"][key]
        manifest.write_text(json.dumps(doc))
        return
    import fastparquet
    name, chunk = key.split("/")
    grid = json.loads((manifest / ".zmetadata").read_text())["metadata"][f"{name}/.zarray"]
    shape = [-(-s // c) for s, c in zip(grid["shape"], grid["chunks"], strict=True)]
    i = int(np.ravel_multi_index(tuple(int(c) for c in chunk.split(".")), shape))
    part = manifest / name / "refs.0.parq"
    frame = fastparquet.ParquetFile(str(part)).to_pandas()
    frame.loc[i, "path"] = None
    fastparquet.write(str(part), frame, compression="ZSTD", object_encoding={"path": "utf8"},
                      has_nulls=["path"], stats=False, write_index=False)


@pytest.mark.parametrize("suffix", [".json", ".parq"])
def test_never_written_chunk_reads_as_h5py_and_deleted_reference_is_refused(
        tmp_path: Path, suffix: str) -> None:
    run = _unallocated_run(tmp_path)
    manifest = to_manifest(det_of(detstack.RunDirectory(run)), run / f"m{suffix}")
    view = open_view(str(manifest))
    holes = view.record["manifest"]["unallocated"]
    assert list(holes) == ["image.data"] and len(holes["image.data"]) == 1
    got = det_of(view).get_array("image.data").sel(module=0).values
    with h5py.File(module_file(run, 0)) as h5:
        want = h5[DATA.format(0)][...]
    assert not want[ROW].any()                          # HDF5 reads the fill value
    got = got.reshape((-1,) + want.shape[1:])
    np.testing.assert_array_equal(got, want[:len(got)])
    assert verify_view(str(manifest), full=True).ok
    del view
    _drop_reference(manifest, "image.data/2.2.1.0.0.0")    # module 2, train 10002, frame 1
    with pytest.raises(MissingDataError) as err:
        det_of(open_view(str(manifest))).get_array("image.data")
    for part in ("image.data", "module 2", "train 10002"):
        assert part in str(err.value), (part, str(err.value))
    import zarr

    from detstack.store.manifest import manifest_store
    plain = zarr.open_group(manifest_store(manifest), mode="r")["image.data"]
    with pytest.raises(MissingDataError, match="train 10002"):      # zarr-python too
        plain[2, 2]
    np.testing.assert_array_equal(plain[0, 1, 1], 0)                # the hole: fill
    report = verify_view(str(manifest))
    assert not report.ok and "train 10002" in report.errors[0]
    full = verify_view(str(manifest), full=True)
    assert not full.ok and full.errors
    count("attacks")


def test_plain_verify_checks_every_mapping(tmp_path: Path) -> None:
    """An HDF5 view mapping a file its record does not list is reported by plain
    ``verify`` (no pixels read), not only when the key is read."""
    run = tmp_path / "run"
    synth.write_run(run, **RUN)
    view = to_vds(det_of(detstack.RunDirectory(run)), tmp_path / "v.h5")
    with h5py.File(view, "r+") as h5:
        ds = h5["image.data"]
        shape, dtype, attrs = ds.shape, ds.dtype, dict(ds.attrs)
        del h5["image.data"]
        layout = h5py.VirtualLayout(shape, dtype)
        layout[0, 0, 0] = h5py.VirtualSource("/etc/passwd", "data", shape[3:], dtype)
        h5.create_virtual_dataset("image.data", layout, fillvalue=0).attrs.update(attrs)
    report = verify_view(str(view))
    assert not report.ok and any("/etc/passwd" in e for e in report.errors), report.lines()
    count("attacks")


# -- zarr stores: every inner chunk carries a crc32c ---------------------------------

def _damage_first_shard(store: Path) -> None:
    """Overwrite bytes inside the first stored object of image.data (folder or zip)."""
    if store.suffix != ".zip":
        shard = sorted(p for p in (store / "image.data" / "c").rglob("*") if p.is_file())[0]
        raw = bytearray(shard.read_bytes())
        raw[100:400] = b"\xff" * 300
        shard.write_bytes(bytes(raw))
        return
    import zipfile
    with zipfile.ZipFile(store) as z:
        items = {i.filename: z.read(i.filename) for i in z.infolist()}
    name = sorted(n for n in items if n.startswith("image.data/c/"))[0]
    raw = bytearray(items[name])
    raw[100:400] = b"\xff" * 300
    items[name] = bytes(raw)
    with zipfile.ZipFile(store, "w", zipfile.ZIP_STORED) as z:
        for n, v in items.items():
            z.writestr(n, v)


@pytest.mark.parametrize("name", ["s.zarr", "s.zip"])
def test_damaged_zarr_store_chunk_is_refused(tmp_path: Path, name: str) -> None:
    """Blosc/zstd decode damaged bytes into plausible values without a word (found: 1195
    wrong pixels, no error): every chunk ends in a crc32c, so detstack's shard decoder,
    zarr-python and verify all refuse it."""
    import zarr

    from detstack.convert import to_zarr
    run = tmp_path / "run"
    synth.write_run(run, **RUN)
    store = tmp_path / name
    to_zarr(det_of(detstack.RunDirectory(run)), store)
    _damage_first_shard(store)
    with pytest.raises(CorruptChunkError) as err:
        det_of(open_view(str(store))).get_array("image.data")
    for part in (str(store), "image.data", "module slot 0", "train index 0-2"):
        assert part in str(err.value), (part, str(err.value))
    with pytest.raises(ValueError, match="checksum"):     # plain zarr-python refuses too
        where = zarr.storage.ZipStore(store, mode="r") if name.endswith(".zip") else str(store)
        zarr.open_group(where, mode="r")["image.data"][0]
    assert not verify_view(str(store), full=True).ok
    count("bad inputs")


@pytest.mark.parametrize("workers", [1, 2])
def test_to_zarr_names_the_corrupt_chunk(damaged: Path, tmp_path: Path, workers: int) -> None:
    """The error of a task in a worker process arrives as it was raised there."""
    from detstack.convert import to_zarr
    store = tmp_path / "s.zarr"
    with pytest.raises(CorruptChunkError) as err:
        to_zarr(det_of(detstack.RunDirectory(damaged)), store, workers=workers, shards=1)
    for part in (module_file(damaged, 0).name, DATA.format(0), "module slot 0", "train 10001",
                 "rows 3-3"):
        assert part in str(err.value), (part, str(err.value))
    assert not (store / "zarr.json").exists()        # readers refuse what was written
    count("bad inputs")
