"""Damaged INDEX sections and non-regular files: typed errors (or a warning where the data
is merely empty) naming the file, source and train; never a hang. The bad files are made
with h5py from small synth runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.errors import FileFormatError, IndexFormatError

SRC = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
IDX = f"INDEX/{SRC}/image"


@pytest.fixture
def module_file(tmp_path: Path) -> Path:
    """One raw AGIPD module file: 5 trains x 4 frames (trains 10000..10004)."""
    synth.write_run(tmp_path / "run", "AGIPD1M", modules=[0], n_trains=5, frames_per_train=4,
                    with_control=False)
    return tmp_path / "run" / "RAW-R0001-AGIPD00-S00000.h5"


def _replace(f: h5py.File, path: str, values: np.ndarray) -> None:
    del f[path]
    f[path] = values


def _error(path: Path, *fragments: str) -> IndexFormatError:
    with pytest.raises(IndexFormatError) as info:
        detstack.H5File(path)
    msg = str(info.value)
    assert str(path) in msg and isinstance(info.value, FileFormatError)
    for fragment in fragments:
        assert fragment in msg, msg
    return info.value


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_negative_first_stored_signed(module_file: Path, dtype: type) -> None:
    with h5py.File(module_file, "r+") as f:
        first = f[f"{IDX}/first"][:].astype(dtype)
        first[2] = -4
        _replace(f, f"{IDX}/first", first)
    _error(module_file, f"{IDX}/first", "negative (-4)", "train 10002")


def test_negative_count_wrapped_unsigned(module_file: Path) -> None:
    with h5py.File(module_file, "r+") as f:
        count = f[f"{IDX}/count"][:]
        count[3] = np.uint64(2**64 - 2)     # -2 stored as uint64: passed the end check before
        f[f"{IDX}/count"][:] = count
    _error(module_file, f"{IDX}/count", "negative", "train 10003", "2**64 - 2")


def test_huge_first_does_not_wrap_past_the_check(module_file: Path) -> None:
    with h5py.File(module_file, "r+") as f:
        f[f"{IDX}/first"][1] = 2**62      # first + count would overflow int64 sums
    _error(module_file, "past the end", "train 10001")


def test_overlapping_trains(module_file: Path) -> None:
    with h5py.File(module_file, "r+") as f:
        f[f"{IDX}/first"][3] = 10          # train 10003 starts inside train 10002 (8..11)
    _error(module_file, IDX, "10002", "10003", "overlap")


def test_per_frame_train_id_contradicts_the_index(module_file: Path) -> None:
    with h5py.File(module_file, "r+") as f:   # 10000 claims rows 0..4; row 4 is 10001's
        f[f"{IDX}/count"][:2] = [5, 3]
        f[f"{IDX}/first"][1] = 5
    err = _error(module_file, "image.trainId", "train 10000", "row 4", "10001")
    assert "different trains" in str(err)


def test_relabelled_train_warns(module_file: Path) -> None:
    with h5py.File(module_file, "r+") as f:
        f[f"INSTRUMENT/{SRC}/image/trainId"][8:12] = 10042
    with pytest.warns(UserWarning, match="10042") as rec:
        data = detstack.H5File(module_file)
    assert any(str(module_file) in str(w.message) and "train 10002" in str(w.message)
               for w in rec)
    assert data.train_ids == [10000, 10001, 10002, 10003, 10004]


def test_lazy_check_in_a_run_folder(module_file: Path) -> None:
    """RunDirectory checks a source when it is first used: the error names the file."""
    with h5py.File(module_file, "r+") as f:
        f[f"{IDX}/first"][3] = 10
    run = detstack.RunDirectory(module_file.parent)
    with pytest.raises(IndexFormatError, match="overlap") as info:
        detstack.AGIPD1M(run)
    assert str(module_file) in str(info.value) and "include=" in str(info.value)


def test_all_zero_train_ids_warn(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    synth.write_run(folder, "AGIPD1M", modules=[0, 1], n_trains=3, frames_per_train=2,
                    with_control=False)
    bad = folder / "RAW-R0001-AGIPD01-S00000.h5"
    with h5py.File(bad, "r+") as f:
        f["INDEX/trainId"][:] = 0
    with pytest.warns(UserWarning, match="all zero") as rec:
        run = detstack.RunDirectory(folder)
    assert any(str(bad) in str(w.message) for w in rec)
    assert run.train_ids == [10000, 10001, 10002]


HANG_GUARD = textwrap.dedent("""
    import sys, warnings
    import detstack
    kind, path = sys.argv[1], sys.argv[2]
    if kind == "h5file":
        try:
            detstack.H5File(path)
        except detstack.FileFormatError as exc:
            print("ERROR", exc)
    else:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            run = detstack.RunDirectory(path)
        print("FILES", len(run.files))
        print("WARN", " | ".join(str(w.message) for w in rec))
""")


def _guarded(kind: str, path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", HANG_GUARD, kind, str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_fifo_is_refused_not_opened(module_file: Path) -> None:
    fifo = module_file.parent / "RAW-R0001-AGIPD05-S00000.h5"
    os.mkfifo(fifo)
    out = _guarded("h5file", fifo)
    assert "ERROR" in out and str(fifo) in out and "FIFO" in out
    out = _guarded("run", module_file.parent)
    assert "FILES 1" in out
    assert "Skipping" in out and str(fifo) in out and "FIFO" in out


def test_device_is_refused(tmp_path: Path) -> None:
    out = _guarded("h5file", Path("/dev/zero"))
    assert "ERROR" in out and "device" in out
