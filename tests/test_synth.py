"""detstack.synth writes runs that the reference library (EXtra-data) reads like real data.

Every check compares three things: what EXtra-data returns, what plain h5py reads from the
files through INDEX, and what `synth.frame_values` says was written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import extra_data as ed
import h5py
import numpy as np
import pytest
from extra_data import components as edc
from extra_data.file_access import FileAccess
from extra_data.validation import FileValidator

from detstack import synth

ED_CLASSES = {
    "AGIPD1M": edc.AGIPD1M, "AGIPD500K": edc.AGIPD500K, "LPD1M": edc.LPD1M,
    "DSSC1M": edc.DSSC1M, "JUNGFRAU": edc.JUNGFRAU,
}
XGM = "SA1_XTD2_XGM/XGM/DOOCS"


def ed_run(path: Path, **kw: object) -> ed.DataCollection:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fmt 1.1 flag warning
        return ed.RunDirectory(str(path), parallelize=False, **kw)


def ed_det(kind: str, run: ed.DataCollection, raw: bool, **kw: object) -> edc.MultimodDetectorBase:
    if kind == "JUNGFRAU":
        kw.setdefault("n_modules", 8)
    return ED_CLASSES[kind](run, raw=raw, **kw)


def source(kind: str, modno: int, raw: bool, det: str | None = None) -> str:
    k = synth.KINDS[kind]
    return k.source(det or k.default_detector, modno, raw)


def h5_read(folder: Path, src: str, key: str, tid: int, frame: int | None = None) -> np.ndarray:
    """Read one train's (or one frame's) data with plain h5py, through INDEX first/count."""
    group, _, rest = key.partition(".")
    for fn in sorted(folder.glob("*.h5")):
        with h5py.File(fn, "r") as f:
            if f"INSTRUMENT/{src}" not in f:
                continue
            tids = f["INDEX/trainId"][:]
            pos = np.flatnonzero(tids == tid)
            if not len(pos):
                continue
            idx = f[f"INDEX/{src}/{group}"]
            first, count = int(idx["first"][pos[0]]), int(idx["count"][pos[0]])
            ds = f[f"INSTRUMENT/{src}/{group}/{rest.replace('.', '/')}"]
            if frame is None:
                return ds[first:first + count]
            assert frame < count
            return ds[first + frame]
    raise KeyError((src, tid))


def validate(folder: Path) -> None:
    """EXtra-data's own file validator (extra-data-validate) finds no problem in any file."""
    for fn in sorted(folder.glob("*.h5")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fa = FileAccess(str(fn))
            problems = FileValidator(fa).run_checks()
            fa.close()
        assert problems == [], fn.name


# --- every kind, raw and corrected, every format version --------------------------------

@pytest.mark.parametrize("fmt", synth.FORMAT_VERSIONS)
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "corr"])
@pytest.mark.parametrize("kind", list(synth.KINDS))
def test_extra_data_reads_every_kind_and_version(tmp_path: Path, kind: str, raw: bool,
                                                 fmt: str) -> None:
    k = synth.KINDS[kind]
    mods = [1, 3] if kind == "JUNGFRAU" else [0, k.n_modules - 1]
    kw = {"n_modules": 4, "n_cells": 2} if kind == "JUNGFRAU" else {}
    paths = synth.write_run(tmp_path, kind, raw=raw, format_version=fmt, n_trains=3,
                            frames_per_train=[3, 5, 2], modules=mods, first_train=5000,
                            seed=3, **kw)
    prefix = "RAW" if raw else "CORR"
    assert [p.name for p in paths] == sorted(
        [f"{prefix}-R0001-{k.aggregator}{m:02d}-S00000.h5" for m in mods]
        + [f"{prefix}-R0001-DA01-S00000.h5"])

    run = ed_run(tmp_path)
    assert list(run.train_ids) == [5000, 5001, 5002]
    det = ed_det(kind, run, raw, **({"n_modules": 4} if kind == "JUNGFRAU" else {}))
    assert sorted(det.modno_to_source) == mods
    assert all(("/DET/" if raw else "/CORR/") in s for s in det.source_to_modno)
    key = synth.main_key(k)
    arr = det.get_array(key)
    if kind == "JUNGFRAU":
        assert det.n_modules == 4
        assert arr.dims == ("module", "train", "cell", "slow_scan", "fast_scan")
        assert arr.shape == (2, 3, 2, 512, 1024)
        checks = [(0, 5000, 0), (1, 5002, 1), (1, 5001, 0)]
    else:
        assert list(det.frame_counts) == [3, 5, 2]
        assert arr.shape[:3] == (2, 3, 5)
        checks = [(0, 5000, 0), (1, 5001, 4), (1, 5002, 1), (0, 5001, 2)]
    expected_dtype = np.uint16 if raw else np.float32
    assert run[det.modno_to_source[mods[0]], key].dtype == expected_dtype
    for mi, tid, frame in checks:
        m = mods[mi]
        got = arr.sel(module=m, train=tid)[frame].values
        expected = synth.frame_values(kind, m, tid, frame, raw=raw, seed=3)
        if kind == "JUNGFRAU":  # one entry per train, holding every cell
            direct = h5_read(tmp_path, source(kind, m, raw), key, tid)[0, frame]
        else:
            direct = h5_read(tmp_path, source(kind, m, raw), key, tid, frame)
        np.testing.assert_array_equal(direct, expected)
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)  # ED drops 1-planes
        assert tuple(expected[(0,) * (expected.ndim - 2)][0, :3]) == (m, tid & 0xFFFF, frame)
    if not raw:
        grp = "image" if k.xtdf else "data"
        mask = det.get_array(f"{grp}.mask")
        m = mods[1]
        np.testing.assert_array_equal(
            mask.sel(module=m, train=5001)[1].values,
            synth.frame_values(kind, m, 5001, 1, raw=False, key=f"{grp}.mask", seed=3))
    with h5py.File(paths[0], "r") as f:
        assert ("METADATA/dataFormatVersion" in f) == (fmt != "0.5")
        assert ("INDEX/flag" in f) == (fmt != "0.5")
        assert ("INDEX/origin" in f) == (fmt in ("1.2", "1.3"))
        if fmt != "0.5":
            assert f["METADATA/dataFormatVersion"][0] == fmt.encode()
    validate(tmp_path)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "corr"])
@pytest.mark.parametrize("kind", list(synth.KINDS))
def test_default_is_the_whole_detector(tmp_path: Path, kind: str, raw: bool) -> None:
    k = synth.KINDS[kind]
    synth.write_run(tmp_path, kind, raw=raw, n_trains=2, frames_per_train=2, n_cells=1,
                    with_control=False)
    det = ed_det(kind, ed_run(tmp_path), raw)
    assert sorted(det.modno_to_source) == k.modnos()
    assert det.detector_name == k.default_detector
    if kind == "JUNGFRAU":
        arr = det.get_array("data.adc")
        assert arr.shape == (8, 2, 1, 512, 1024)
    else:
        assert det.get_array("image.cellId").shape == (k.n_modules, 2, 2)


# --- frame counts, missing and empty trains ---------------------------------------------

def test_variable_missing_and_empty_trains(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "AGIPD1M", modules=[0, 1, 2], n_trains=5,
                    frames_per_train=[4, 0, 6, 2, 3],
                    missing_trains={1: [10002]}, empty_trains={2: [10003]})
    with h5py.File(tmp_path / "RAW-R0001-AGIPD01-S00000.h5", "r") as f:
        tids = f["INDEX/trainId"][:]
        assert list(tids[:4]) == [10000, 10001, 10003, 10004]
        assert (tids[4:] == 0).all() and len(tids) == 32
        src = "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf"
        assert list(f[f"INDEX/{src}/image/count"]) == [4, 0, 2, 3]
        assert list(f[f"INDEX/{src}/image/first"]) == [0, 4, 4, 6]
        assert list(f[f"INDEX/{src}/header/count"]) == [1, 1, 1, 1]  # a 0-frame train has a header
        assert f[f"INSTRUMENT/{src}/image/data"].shape[0] > 9  # over-allocated
    with h5py.File(tmp_path / "RAW-R0001-AGIPD02-S00000.h5", "r") as f:
        src = "SPB_DET_AGIPD1M-1/DET/2CH0:xtdf"
        for group in ("image", "header", "trailer", "detector"):
            assert f[f"INDEX/{src}/{group}/count"][3] == 0
        assert list(f[f"INSTRUMENT/{src}/header/pulseCount"][:4]) == [4, 0, 6, 3]

    run = ed_run(tmp_path)
    det = edc.AGIPD1M(run, raw=True)
    assert list(det.frame_counts.index) == [10000, 10002, 10003, 10004]  # 10001 has no frames
    assert list(det.frame_counts) == [4, 6, 2, 3]
    counts = {m: run[det.modno_to_source[m], "image.data"].data_counts(labelled=False)
              for m in (0, 1, 2)}
    assert list(counts[1]) == [4, 0, 0, 2, 3]
    assert list(counts[2]) == [4, 0, 6, 0, 3]
    arr = det.get_array("image.data", fill_value=999)
    assert (arr.sel(module=1, train=10002).values == 999).all()
    assert (arr.sel(module=2, train=10003)[:2].values == 999).all()  # 2 frames in that train
    np.testing.assert_array_equal(arr.sel(module=2, train=10002)[5].values,
                                  synth.frame_values("AGIPD1M", 2, 10002, 5))
    np.testing.assert_array_equal(arr.sel(module=1, train=10004)[2].values,
                                  h5_read(tmp_path, det.modno_to_source[1], "image.data", 10004, 2))
    validate(tmp_path)


def test_sequence_files_break_at_different_trains(tmp_path: Path) -> None:
    paths = synth.write_run(tmp_path, "DSSC1M", modules=[0, 1, 2, 5], n_trains=7,
                            frames_per_train=2, trains_per_file=3, missing_trains={5: [10003]})
    bounds = {}
    for m in (0, 1, 2, 5):
        files = sorted(p for p in paths if f"DSSC{m:02d}" in p.name)
        assert [p.name[-9:-3] for p in files] == [f"S{i:05d}" for i in range(len(files))]
        per_file = []
        for p in files:
            with h5py.File(p, "r") as f:
                t = f["INDEX/trainId"][:]
                per_file.append([int(x) for x in t[t != 0]])
                assert f["METADATA/sequenceNumber"][0] == len(per_file) - 1
        assert sum(per_file, []) == [t for t in range(10000, 10007)
                                     if not (m == 5 and t == 10003)]
        bounds[m] = [len(x) for x in per_file]
    assert bounds == {0: [3, 3, 1], 1: [2, 3, 2], 2: [1, 3, 3], 5: [1, 2, 3]}
    with h5py.File(tmp_path / "RAW-R0001-DA01-S00002.h5", "r") as f:
        assert list(f["INDEX/trainId"][:1]) == [10006]

    det = edc.DSSC1M(ed_run(tmp_path), raw=True)
    arr = det.get_array("image.data")
    assert arr.shape == (4, 7, 2, 128, 512)  # EXtra-data drops raw DSSC's 1-long plane axis
    for m, tid, fr in [(1, 10002, 1), (2, 10000, 0), (2, 10001, 1), (5, 10006, 1)]:
        np.testing.assert_array_equal(arr.sel(module=m, train=tid)[fr].values,
                                      synth.frame_values("DSSC1M", m, tid, fr)[0])
    validate(tmp_path)


# --- layouts ------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,fpc", [("chunked", 1), ("chunked", 3), ("contiguous", 1),
                                        ("deflate", 1), ("shuffle-deflate", 2)])
def test_layouts(tmp_path: Path, layout: str, fpc: int) -> None:
    synth.write_run(tmp_path, "LPD1M", raw=False, modules=[4], n_trains=3, frames_per_train=5,
                    layout=layout, frames_per_chunk=fpc, with_control=False)
    src = "FXE_DET_LPD1M-1/CORR/4CH0:output"
    with h5py.File(tmp_path / "CORR-R0001-LPD04-S00000.h5", "r") as f:
        for key in ("data", "gain", "mask"):
            ds = f[f"INSTRUMENT/{src}/image/{key}"]
            if layout == "contiguous":
                assert ds.chunks is None and ds.compression is None
            else:
                assert ds.chunks == (fpc, 256, 256)
                assert ds.compression == (None if layout == "chunked" else "gzip")
                assert ds.shuffle == (layout == "shuffle-deflate")
    arr = edc.LPD1M(ed_run(tmp_path), raw=False).get_array("image.data")
    for tid in (10000, 10002):
        for fr in (0, 4):
            np.testing.assert_array_equal(arr.sel(module=4, train=tid)[fr].values,
                                          synth.frame_values("LPD1M", 4, tid, fr, raw=False))
    # the same values whatever the layout
    np.testing.assert_array_equal(h5_read(tmp_path, src, "image.gain", 10001, 3),
                                  synth.frame_values("LPD1M", 4, 10001, 3, raw=False,
                                                     key="image.gain"))


def test_jungfrau_layout_and_cells(tmp_path: Path) -> None:
    synth.write_run(tmp_path / "a", "JUNGFRAU", n_modules=2, n_cells=8, n_trains=2,
                    layout="deflate", frames_per_chunk=4)
    with h5py.File(tmp_path / "a" / "RAW-R0001-JNGFR02-S00000.h5", "r") as f:
        grp = f["INSTRUMENT/SPB_IRDA_JF4M/DET/JNGFR02:daqOutput/data"]
        assert grp["adc"].chunks == (1, 4, 512, 1024) and grp["adc"].compression == "gzip"
        assert grp["adc"].dtype == np.uint16 and "mask" not in grp
        assert grp["memoryCell"][0].tolist() == list(range(7, -1, -1))
        assert grp["frameNumber"].dtype == np.uint64 and grp["timestamp"].shape[1:] == (8,)
        assert list(f["INDEX/SPB_IRDA_JF4M/DET/JNGFR02:daqOutput/data/count"]) == [1, 1]
    det = edc.JUNGFRAU(ed_run(tmp_path / "a"), raw=True)
    assert det.n_modules == 2
    arr = det.get_array("data.adc")
    np.testing.assert_array_equal(arr.sel(module=2, train=10001)[6].values,
                                  synth.frame_values("JUNGFRAU", 2, 10001, 6))
    gain = det.get_array("data.gain")
    np.testing.assert_array_equal(gain.sel(module=1, train=10000)[3].values,
                                  synth.frame_values("JUNGFRAU", 1, 10000, 3, key="data.gain"))

    synth.write_run(tmp_path / "b", "JUNGFRAU", raw=False, n_modules=3, modules=[2], n_cells=1,
                    n_trains=2, empty_trains={2: [10001]})
    det = edc.JUNGFRAU(ed_run(tmp_path / "b"), n_modules=3)
    assert det.n_modules == 3 and list(det.modno_to_source) == [2]
    assert list(det.data.train_ids) == [10000]
    assert det.get_array("data.mask").dtype == np.uint32


# --- names, flags, indexes ----------------------------------------------------------------

def test_legacy_soft_links(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "AGIPD1M", raw=False, legacy=True, modules=[0, 9], n_trains=2,
                    frames_per_train=3)
    with h5py.File(tmp_path / "CORR-R0001-AGIPD09-S00000.h5", "r") as f:
        for section in ("INSTRUMENT", "INDEX"):
            link = f.get(f"{section}/SPB_DET_AGIPD1M-1/DET/9CH0:xtdf", getlink=True)
            assert isinstance(link, h5py.SoftLink)
            assert link.path == f"/{section}/SPB_DET_AGIPD1M-1/CORR/9CH0:output"
        ids = [x for x in f["METADATA/dataSources/dataSourceId"][:] if x]
        assert b"INSTRUMENT/SPB_DET_AGIPD1M-1/DET/9CH0:xtdf/image" in ids
        assert b"INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/9CH0:output/image" in ids
    run = ed_run(tmp_path)
    assert run.legacy_sources == {
        f"SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf": f"SPB_DET_AGIPD1M-1/CORR/{m}CH0:output"
        for m in (0, 9)}
    det = edc.AGIPD1M(run)
    assert sorted(det.source_to_modno) == ["SPB_DET_AGIPD1M-1/CORR/0CH0:output",
                                           "SPB_DET_AGIPD1M-1/CORR/9CH0:output"]
    np.testing.assert_array_equal(det.get_array("image.data").sel(module=9, train=10001)[2],
                                  synth.frame_values("AGIPD1M", 9, 10001, 2, raw=False))


def test_bad_train_ids(tmp_path: Path) -> None:
    paths = synth.write_run(tmp_path, "AGIPD500K", modules=[0, 1], n_trains=5, frames_per_train=2,
                            format_version="0.5", bad_train_ids={2: 10400})
    for p in paths:
        with h5py.File(p, "r") as f:
            assert list(f["INDEX/trainId"][:5]) == [10000, 10001, 10400, 10003, 10004]
    f0 = ed.H5File(str(paths[0]))
    assert list(f0.train_ids) == [10000, 10001, 10003, 10004, 10400]
    # format 0.5 has no flag: EXtra-data guesses that exactly the bad position is suspect
    good = ed.H5File(str(paths[0]), inc_suspect_trains=False)
    assert list(good.train_ids) == [10000, 10001, 10003, 10004]
    det = edc.AGIPD500K(ed_run(tmp_path, inc_suspect_trains=False), raw=True)
    assert list(det.frame_counts.index) == [10000, 10001, 10003, 10004]

    dup = tmp_path / "dup"
    synth.write_run(dup, "AGIPD500K", modules=[3], n_trains=4, bad_train_ids={3: 10001},
                    with_control=False)
    with pytest.raises(ValueError, match="conflicting"):
        ed_run(dup)


@pytest.mark.parametrize("fmt", ["1.0", "1.1", "1.2", "1.3"])
def test_bad_flags(tmp_path: Path, fmt: str) -> None:
    paths = synth.write_run(tmp_path, "AGIPD1M", modules=[2], n_trains=4, frames_per_train=2,
                            format_version=fmt, bad_flags=[1, 3], index_pad=8)
    for p in paths:
        with h5py.File(p, "r") as f:
            flag = f["INDEX/flag"][:]
            assert len(flag) == 8
            expected = [0, 1, 0, 1] if fmt == "1.1" else [1, 0, 1, 0]
            assert list(flag[:4]) == expected
    good = ed_run(tmp_path, inc_suspect_trains=False)
    assert list(good.train_ids) == [10000, 10002]
    det = edc.AGIPD1M(good, raw=True)
    assert list(det.get_array("image.pulseId").coords["train"].values) == [10000, 10002]


def test_old_index_format_05(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "LPD1M", modules=[1], n_trains=3, frames_per_train=[2, 0, 3],
                    format_version="0.5", old_index=True, empty_trains={1: [10001]})
    with h5py.File(tmp_path / "RAW-R0001-LPD01-S00000.h5", "r") as f:
        idx = f["INDEX/FXE_DET_LPD1M-1/DET/1CH0:xtdf/image"]
        assert set(idx) == {"first", "last", "status"}
        assert list(idx["first"]) == [0, 2, 2]
        assert list(idx["last"]) == [1, 2, 4]
        assert list(idx["status"]) == [1, 0, 1]
        assert "dataFormatVersion" not in f["METADATA"]
        assert f["METADATA/dataSourceId"][0].startswith(b"INSTRUMENT/")
        assert "INDEX/flag" not in f and "INDEX/timestamp" not in f
    run = ed_run(tmp_path)
    assert run.run_metadata() == {"dataFormatVersion": "0.5"}
    det = edc.LPD1M(run, raw=True)
    assert list(det.frame_counts) == [2, 3]
    np.testing.assert_array_equal(det.get_array("image.data").sel(module=1, train=10002)[2],
                                  synth.frame_values("LPD1M", 1, 10002, 2)[0])
    with h5py.File(tmp_path / "RAW-R0001-DA01-S00000.h5", "r") as f:
        assert set(f[f"INDEX/{XGM}"]) == {"first", "last", "status"}


def test_lpd_parallel_gain(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "LPD1M", modules=[0, 7], n_trains=2, frames_per_train=4,
                    parallel_gain=True, pulse_id_step=2)
    with h5py.File(tmp_path / "RAW-R0001-LPD07-S00000.h5", "r") as f:
        src = "INSTRUMENT/FXE_DET_LPD1M-1/DET/7CH0:xtdf/image"
        assert f[src]["pulseId"][:12, 0].tolist() == [0, 2, 4, 6] * 3
        assert f[src]["cellId"][:12, 0].tolist() == [0, 1, 2, 3] * 3
    det = edc.LPD1M(ed_run(tmp_path), raw=True, parallel_gain=True)
    assert list(det.frame_counts) == [12, 12]
    arr = det.get_array("image.data")
    assert arr.dims[:4] == ("module", "train", "gain", "pulse")
    assert arr.shape[:4] == (2, 2, 3, 4)
    assert list(arr.coords["pulse"].values) == [0, 2, 4, 6]
    for stage in range(3):
        np.testing.assert_array_equal(
            arr.sel(module=7, train=10001)[stage, 1].values,
            synth.frame_values("LPD1M", 7, 10001, stage * 4 + 1)[0])


def test_pulse_id_step_by_id_vs_by_index(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "AGIPD1M", raw=False, modules=[5], n_trains=2,
                    frames_per_train=6, pulse_id_step=3)
    det = edc.AGIPD1M(ed_run(tmp_path), raw=False)
    by_id = det.get_array("image.data", pulses=ed.by_id[[3, 9]])
    by_index = det.get_array("image.data", pulses=ed.by_index[[1, 3]])
    assert list(by_id.coords["pulse"].values) == [3, 9]
    np.testing.assert_array_equal(by_id.sel(module=5, train=10001)[1].values,
                                  synth.frame_values("AGIPD1M", 5, 10001, 3, raw=False))
    np.testing.assert_array_equal(by_index.values, by_id.values)
    assert not np.array_equal(det.get_array("image.data", pulses=ed.by_index[[3, 9]]).values,
                              by_id.values)


# --- metadata, control data, attributes -----------------------------------------------------

def test_metadata_and_padding(tmp_path: Path) -> None:
    paths = synth.write_run(tmp_path, "DSSC1M", modules=[3], n_trains=40, frames_per_train=1,
                            trains_per_file=20, run_number=42, proposal=2012, index_pad=32)
    assert paths[0].name == "RAW-R0042-DA01-S00000.h5"
    with h5py.File(tmp_path / "RAW-R0042-DSSC03-S00001.h5", "r") as f:
        assert f["INDEX/trainId"].shape == (32,) and f["INDEX/trainId"].dtype == np.uint64
        assert (f["INDEX/trainId"][20:] == 0).all()
        assert f["INDEX/timestamp"][1] - f["INDEX/timestamp"][0] == 100_000_000
        md = f["METADATA"]
        assert md["proposalNumber"].dtype == np.uint32 and md["proposalNumber"][0] == 2012
        assert md["runNumber"][0] == 42 and md["sequenceNumber"][0] == 1
        ids = md["dataSources/dataSourceId"][:]
        assert len(ids) == 32 and ids[-1] == b"" and h5py.check_vlen_dtype(ids.dtype) is bytes
        assert sorted(x for x in md["dataSources/deviceId"][:] if x) == [
            f"SCS_DET_DSSC1M-1/DET/3CH0:xtdf/{g}".encode()
            for g in ("detector", "header", "image", "trailer")]
        assert set(md["dataSources/root"][:4]) == {b"INSTRUMENT"}
        for key in ("creationDate", "daqLibrary", "karaboFramework", "runType", "sample",
                    "updateDate"):
            assert md[key][0]
        img = f["INSTRUMENT/SCS_DET_DSSC1M-1/DET/3CH0:xtdf/image"]
        assert img["data"].attrs["unitSymbol"] and img["data"].attrs["description"]
        assert img["pulseId"].shape[1:] == (1,) and img["cellId"].dtype == np.uint16
    meta = ed_run(tmp_path).run_metadata()
    assert meta["proposalNumber"] == 2012 and meta["runNumber"] == 42
    assert meta["dataFormatVersion"] == "1.3"

    synth.write_run(tmp_path / "v12", "DSSC1M", modules=[3], n_trains=2, format_version="1.2")
    with h5py.File(tmp_path / "v12" / "RAW-R0001-DSSC03-S00000.h5", "r") as f:
        assert "unitSymbol" not in f["INSTRUMENT/SCS_DET_DSSC1M-1/DET/3CH0:xtdf/image/data"].attrs
        assert list(f["INDEX/origin"][:2]) == [-1, -1]


def test_control_file(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "AGIPD1M", modules=[0], n_trains=6, frames_per_train=2,
                    trains_per_file=4)
    run = ed_run(tmp_path)
    assert XGM in run.control_sources and f"{XGM}:output" in run.instrument_sources
    flux = run[XGM, "pulseEnergy.photonFlux"].ndarray()
    assert flux.shape == (6,) and flux.dtype == np.float32
    assert run.get_run_value(XGM, "pulseEnergy.photonFlux") == pytest.approx(flux[0])
    td = run[f"{XGM}:output", "data.intensityTd"].ndarray()
    assert td.shape == (6, 1000) and td.dtype == np.float32 and (td[:, :2] > 0).all()

    synth.write_run(tmp_path / "none", "AGIPD1M", modules=[0], n_trains=2, with_control=False)
    assert [p.name for p in (tmp_path / "none").iterdir()] == ["RAW-R0001-AGIPD00-S00000.h5"]


# --- API behaviour --------------------------------------------------------------------------

def test_refuses_existing_files_and_overwrites(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "AGIPD500K", modules=[0], n_trains=2, frames_per_train=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synth.write_run(tmp_path, "AGIPD500K", modules=[1], n_trains=2)
    paths = synth.write_run(tmp_path, "AGIPD500K", modules=[1], n_trains=2, frames_per_train=1,
                            with_control=False, overwrite=True)
    assert sorted(tmp_path.glob("*.h5")) == paths == [tmp_path / "RAW-R0001-AGIPD01-S00000.h5"]


@pytest.mark.parametrize("kwargs,err", [
    ({"kind": "EPIX"}, ValueError), ({"format_version": "2.0"}, ValueError),
    ({"modules": [16]}, ValueError), ({"frames_per_train": [1, 2]}, ValueError),
    ({"old_index": True}, ValueError), ({"bad_flags": [1], "format_version": "0.5"}, ValueError),
    ({"parallel_gain": True}, ValueError), ({"legacy": True}, ValueError),
    ({"n_modules": 4}, ValueError), ({"missing_trains": {0: [99]}}, ValueError),
    ({"layout": "zarr"}, ValueError), ({"n_trains": 2.5}, TypeError),
])
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict[str, object],
                                     err: type[Exception]) -> None:
    kw: dict = {"n_trains": 4, **kwargs}
    with pytest.raises(err):
        synth.write_run(tmp_path / "run", **kw)
    assert not (tmp_path / "run").exists()


def test_photon_values_are_deterministic(tmp_path: Path) -> None:
    a = synth.write_run(tmp_path / "a", "AGIPD1M", modules=[1], n_trains=2, frames_per_train=3,
                        with_control=False, seed=7, mean_photons=2.0,
                        values="photons")
    b = synth.write_run(tmp_path / "b", "AGIPD1M", modules=[1], n_trains=2, frames_per_train=3,
                        with_control=False, seed=7, mean_photons=2.0,
                        values="photons")
    c = synth.write_run(tmp_path / "c", "AGIPD1M", modules=[1], n_trains=2, frames_per_train=3,
                        with_control=False, seed=8, mean_photons=2.0,
                        values="photons")
    key = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/1CH0:xtdf/image/data"
    with h5py.File(a[0]) as fa, h5py.File(b[0]) as fb, h5py.File(c[0]) as fc:
        da, db, dc = fa[key][:6], fb[key][:6], fc[key][:6]
    np.testing.assert_array_equal(da, db)
    assert not np.array_equal(da, dc)
    counts = da[:, 0].astype(float)
    assert 1.8 < counts[:, 1:].mean() < 2.2  # Poisson photon counts, mean as asked
    assert (da[:, 1] <= 2).all() and 0 < (da[:, 1] > 0).mean() < 0.5  # gain stage, mostly 0
    assert not np.array_equal(da[0], da[1])  # frames differ within a train


def test_demo_run(tmp_path: Path) -> None:
    paths = synth.demo_run(tmp_path)
    assert len(paths) == 16 * 2 + 2
    run = ed_run(tmp_path)
    det = edc.AGIPD1M(run, raw=True)
    assert len(det.source_to_modno) == 16 and list(det.frame_counts) == [32] * 4
    counts = run[det.modno_to_source[3], "image.data"].data_counts(labelled=False)
    assert list(counts) == [32, 32, 0, 32]
    starts = set()
    for m in range(16):
        with h5py.File(tmp_path / f"RAW-R0001-AGIPD{m:02d}-S00001.h5", "r") as f:
            starts.add(int(f["INDEX/trainId"][0]))
    assert starts == {10001, 10002, 10003}
    validate(tmp_path)


def test_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> list[str]:
        raise OSError("disk full")

    monkeypatch.setattr(synth, "write_control", boom)  # the DA file is written last
    with pytest.raises(OSError, match="disk full"):
        synth.write_run(tmp_path, "AGIPD1M", modules=[0, 1], n_trains=2, frames_per_train=1)
    assert list(tmp_path.iterdir()) == []
