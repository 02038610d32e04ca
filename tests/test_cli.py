"""The detstack command: demo, info, validate, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from detstack import synth
from detstack.cli import main


def test_demo_writes_opens_and_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AGIPD1M 'SPB_DET_AGIPD1M-1': modules [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]" in out
    assert "4 trains" in out and "(16, 4, 4, 2, 512, 128)" not in out
    assert "{'module': 16, 'train': 4, 'pulse': 4, 'data_gain': 2, 'slow_scan': 512, 'fast_scan': 128}" in out
    assert len(list((tmp_path / "run").glob("*.h5"))) == 34
    for label in ("HDF5 virtual view", "virtual CXI", "zarr manifest", "zarr store"):
        line = next(ln for ln in out.splitlines() if ln.startswith(label))
        assert line.endswith("identical"), line
    # a second demo into the same folder is refused, not silently overwritten
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "already" in capsys.readouterr().err


def test_info_reports_detector_and_gaps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth.write_run(tmp_path, "JUNGFRAU", n_trains=3, n_modules=4, modules=[1, 2, 4],
                    missing_trains={2: [10001]}, n_cells=2)
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "JUNGFRAU 'SPB_IRDA_JF4M': modules [1, 2, 4] of 4" in out
    assert "frames per train [2]" in out
    assert "1 (module, train) pairs missing" in out
    assert "data.adc: shape (3, 3, 2, 512, 1024) uint16" in out


def test_validate_finds_suspect_train_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth.write_run(tmp_path, "LPD1M", n_trains=6, frames_per_train=2, modules=[0],
                    bad_train_ids={3: 10001}, with_control=False, format_version="0.5")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "train IDs do not strictly increase" in out
    assert "suspect train IDs (e.g. [10001])" in out


def test_validate_clean_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth.write_run(tmp_path, "DSSC1M", n_trains=2, frames_per_train=2, modules=[0, 1])
    assert main(["validate", str(tmp_path)]) == 0
    assert "0 problems" in capsys.readouterr().out


def test_validate_skips_truncated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = synth.write_run(tmp_path, "DSSC1M", n_trains=2, frames_per_train=2, modules=[0, 1],
                            with_control=False)
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert files[0].name in out and "PROBLEM" in out


def test_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "detstack.cli", "info", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.startswith("detstack: error:") and "No .h5 files" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_lists_commands() -> None:
    res = subprocess.run([sys.executable, "-m", "detstack.cli", "--help"], capture_output=True,
                         text=True, check=True)
    for cmd in ("demo", "info", "validate", "convert", "verify"):
        assert f"detstack {cmd}" in res.stdout


def test_demo_values_are_realistic_adc(tmp_path: Path) -> None:
    synth.demo_run(tmp_path)
    with h5py.File(sorted(tmp_path.glob("RAW-*-AGIPD05-S*.h5"))[0]) as f:
        data = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/5CH0:xtdf/image/data"][:4]
    assert 4000 < float(np.median(data[:, 0, 1:])) < 6000 and data.max() <= 16383
    np.testing.assert_array_equal(data[1], synth.frame_values("AGIPD1M", 5, 10000, 1))
