"""The detstack command as a whole: help, version, python -m, demo, warnings, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from clitools import cli, no_python_warnings, one_line_error

import detstack
from detstack import synth
from detstack.cli import COMMANDS


def test_version_and_python_m() -> None:
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"detstack {detstack.__version__}"
    mod = subprocess.run([sys.executable, "-m", "detstack", "--version"], capture_output=True,
                         text=True)
    assert mod.returncode == 0 and mod.stdout == res.stdout


def test_help_lists_every_command_and_each_has_examples() -> None:
    res = cli("--help")
    assert res.returncode == 0
    for cmd in COMMANDS:
        assert f"detstack {cmd}" in res.stdout
        sub = cli(cmd, "--help")
        assert sub.returncode == 0, sub.stderr
        examples = sub.stdout.split("examples:", 1)[1]
        assert f"detstack {cmd} " in examples, cmd
        assert "--quiet" in sub.stdout and "--verbose" in sub.stdout


def test_no_command_is_a_usage_error() -> None:
    res = cli()
    assert res.returncode == 2 and "usage: detstack" in res.stderr


def test_demo_writes_views_beside_the_run(tmp_path: Path) -> None:
    res = cli("demo", "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "{'module': 16, 'train': 4, 'pulse': 4, 'data_gain': 2, 'slow_scan': 512, " \
        "'fast_scan': 128}" in out
    for label in ("HDF5 virtual view", "virtual CXI", "zarr manifest", "zarr store"):
        line = next(ln for ln in out.splitlines() if ln.startswith(label))
        assert line.endswith("identical"), line
    run = tmp_path / "run"
    assert len(list(run.glob("*.h5"))) == 34 and not list(run.glob("view*"))
    assert sorted(p.name for p in tmp_path.glob("view*")) == [
        "view.arrays.h5", "view.cxi", "view.h5", "view.json", "view.zarr"]
    assert res.stderr == ""
    # the run folder is still a clean run, and its views open
    val = cli("validate", run)
    assert val.returncode == 0 and "34 files checked, 0 problems" in val.stdout
    # a second demo into the same folder is refused, naming the flag
    again = cli("demo", "--out", tmp_path)
    one_line_error(again, "already holds", "--overwrite")
    assert "overwrite=True" not in again.stderr


def test_demo_out_pointing_at_a_file(tmp_path: Path) -> None:
    target = tmp_path / "somefile"
    target.write_text("x")
    one_line_error(cli("demo", "--out", target), f"--out {target} is a file")


def test_warnings_reach_the_terminal_as_one_line_naming_the_flag(tmp_path: Path) -> None:
    synth.write_run(tmp_path / "run", "LPD1M", n_trains=2, frames_per_train=2, modules=[0, 1],
                    with_control=False)
    res = cli("convert", tmp_path / "run", tmp_path / "view.h5")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines() == [
        "detstack: warning: Falling back to raw data for backwards compatibility. Pass --raw "
        "to select raw data explicitly."]
    no_python_warnings(res.stderr)
    quiet = cli("convert", tmp_path / "run", tmp_path / "view2.h5", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("Wrote HDF5 virtual view of")


def test_verbose_shows_library_logging(tmp_path: Path) -> None:
    synth.write_run(tmp_path / "run", "DSSC1M", n_trains=2, frames_per_train=2, modules=[0],
                    with_control=False)
    res = cli("-v", "convert", tmp_path / "run", tmp_path / "v.h5", "--raw")
    assert res.returncode == 0, res.stderr
    assert "detstack: info: Wrote virtual view" in res.stderr
    no_python_warnings(res.stderr)


def test_demo_values_are_realistic_adc(tmp_path: Path) -> None:
    synth.demo_run(tmp_path)
    with h5py.File(sorted(tmp_path.glob("RAW-*-AGIPD05-S*.h5"))[0]) as f:
        data = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/5CH0:xtdf/image/data"][:4]
    assert 4000 < float(np.median(data[:, 0, 1:])) < 6000 and data.max() <= 16383
    np.testing.assert_array_equal(data[1], synth.frame_values("AGIPD1M", 5, 10000, 1))
