"""detstack convert and archive: one grammar, honest summaries, one-line failures."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from clitools import DETSTACK, cli, cli_json, hide_package, one_line_error

from detstack import synth


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("convert") / "run"
    synth.write_run(run, "AGIPD1M", n_trains=6, frames_per_train=2, modules=[0, 1, 2],
                    with_control=False)
    return run


def test_form_follows_the_name_and_json_summary(small_run: Path, tmp_path: Path) -> None:
    for name, form in (("v.h5", "vds"), ("v.cxi", "cxi"), ("v.json", "manifest"),
                       ("v.zarr", "zarr")):
        doc = cli_json("convert", small_run, tmp_path / name, "--raw")
        assert doc["form"] == form and doc["trains"] == 6 and doc["frames"] == 12
        assert doc["modules"] == {"present": [0, 1, 2], "missing": list(range(3, 16)), "of": 16}
    with h5py.File(tmp_path / "v.h5") as f:
        assert f["image.data"].shape == (16, 6, 2, 2, 512, 128)


def test_train_selections(small_run: Path, tmp_path: Path) -> None:
    one = cli("convert", small_run, tmp_path / "one.h5", "--raw", "--trains", "10003")
    assert one.returncode == 0, one.stderr
    assert "; 1 train; 2 frames)" in one.stdout
    with h5py.File(tmp_path / "one.h5") as f:
        assert f["image.data"].shape[1] == 1 and list(f["train_ids"][:]) == [10003]
    rng = cli_json("convert", small_run, tmp_path / "rng.h5", "--raw", "--trains", "10001:10004")
    assert rng["trains"] == 3
    res = cli("convert", small_run, tmp_path / "e.h5", "--raw", "--trains", "5:2")
    assert res.returncode == 2 and "5:2 is empty" in res.stderr
    res = cli("convert", small_run, tmp_path / "e.h5", "--raw", "--trains", "0:5")
    one_line_error(res, "--trains 0:5 selects none of the 6 trains", "(10000-10005)")
    assert len(res.stderr.splitlines()) == 1, res.stderr     # no warning saying it twice
    one_line_error(cli("convert", small_run, tmp_path / "e.h5", "--raw", "--trains", "20000"),
                   "--trains 20000 selects none")
    assert not (tmp_path / "e.h5").exists()


def test_unusable_module_file_is_reported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    files = synth.write_run(run, "AGIPD1M", n_trains=2, frames_per_train=2, with_control=False)
    bad = next(f for f in files if "AGIPD03" in f.name)
    bad.write_bytes(bad.read_bytes()[:2000])
    res = cli("convert", run, tmp_path / "v.h5", "--raw")
    assert res.returncode == 0, res.stderr
    assert "15 of 16 modules, missing 3;" in res.stdout
    assert f"1 unusable file skipped: {bad.name}" in res.stdout


def test_options_of_other_forms_and_bad_values_are_refused(small_run: Path,
                                                           tmp_path: Path) -> None:
    one_line_error(cli("convert", small_run, tmp_path / "v.h5", "--resume"),
                   "--resume applies to --to zarr, not to --to vds")
    one_line_error(cli("convert", small_run, tmp_path / "v.dat"),
                   "cannot tell the output form", "--to")
    res = cli("convert", small_run, tmp_path / "v.h5", "--modules", "3-1")
    assert res.returncode == 2 and "module range 3-1 is empty" in res.stderr
    one_line_error(cli("convert", small_run, tmp_path / "v.h5", "--modules", "7"),
                   "No sources matching", "modules [7]")
    cli("convert", small_run, tmp_path / "v.h5", "--raw")
    one_line_error(cli("convert", small_run, tmp_path / "v.h5", "--raw"),
                   "already exists", "--overwrite")
    one_line_error(cli("convert", small_run, tmp_path / "v.h5", "--corrected"),
                   "only raw data found", "--raw")


def test_missing_optional_packages_name_the_extra(small_run: Path, tmp_path: Path) -> None:
    env = hide_package(tmp_path, "fastparquet")
    one_line_error(cli("convert", small_run, tmp_path / "v.parq", "--raw", env=env),
                   "fastparquet", "pip install 'detstack[parquet]'")
    env = hide_package(tmp_path, "distributed")
    one_line_error(cli("convert", small_run, tmp_path / "v.zarr", "--raw", "--scheduler",
                       "tcp://127.0.0.1:9", env=env),
                   "distributed", "pip install 'detstack[distributed]'")
    env = hide_package(tmp_path, "s3fs")
    one_line_error(cli("convert", small_run, "s3://bucket/v.zarr", "--raw", env=env),
                   "s3fs", "pip install 'detstack[s3]'")


def test_scheduler_that_does_not_answer(small_run: Path, tmp_path: Path) -> None:
    res = cli("convert", small_run, tmp_path / "v.zarr", "--raw", "--scheduler",
              "tcp://127.0.0.1:9", "--scheduler-timeout", "1")
    one_line_error(res, "the dask scheduler at tcp://127.0.0.1:9 did not answer within 1 s")


def test_ctrl_c_during_convert_then_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", n_trains=24, frames_per_train=16, modules=[0, 1, 2, 3],
                    with_control=False)
    store = tmp_path / "big.zarr"
    proc = subprocess.Popen([str(DETSTACK), "convert", run, store, "--raw", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = store / ".detstack-progress" / "done"
    deadline = time.monotonic() + 120
    while not (done.is_dir() and any(done.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "detstack: interrupted; run again with --resume"
    assert "Traceback" not in err
    assert not (store / "zarr.json").exists()
    res = cli("convert", run, store, "--raw", "--resume")
    assert res.returncode == 0, res.stderr
    assert (store / "zarr.json").exists()
    assert cli("verify", store).returncode == 0


def on_terminal(*args: object) -> tuple[int, str]:
    """Run ``detstack ARGS`` with stderr on a pseudo-terminal: (exit status, what it showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([str(DETSTACK), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=follower, text=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(("name", "steps"), [
    ("t.zarr", ["scanning files", "copying to zarr"]),
    ("t.cxi", ["scanning files", "building CXI datasets", "building CXI by_module"]),
])
def test_progress_bars_only_on_a_terminal(small_run: Path, tmp_path: Path, name: str,
                                          steps: list[str]) -> None:
    plain = cli("convert", small_run, tmp_path / f"p-{name}", "--raw")
    assert plain.returncode == 0 and plain.stderr == ""
    status, shown = on_terminal("convert", small_run, tmp_path / name, "--raw")
    assert status == 0
    for step in steps:
        assert step in shown, (step, shown)
    assert "it/s" in shown
    status, shown = on_terminal("convert", small_run, tmp_path / f"q-{name}", "--raw", "--quiet")
    assert status == 0 and shown == ""


def test_archive(small_run: Path, tmp_path: Path) -> None:
    cli("convert", small_run, tmp_path / "v.h5", "--raw")
    doc = cli_json("archive", tmp_path / "v.h5", tmp_path / "a.h5", "--compression", "gzip",
                   "--level", "2")
    assert doc["output"] == str(tmp_path / "a.h5") and doc["compression"] == "gzip"
    with h5py.File(tmp_path / "v.h5") as v, h5py.File(tmp_path / "a.h5") as a:
        assert not a["image.data"].is_virtual
        assert a["image.data"].compression == "gzip"
        np.testing.assert_array_equal(a["image.data"][:, 1], v["image.data"][:, 1])
    one_line_error(cli("archive", tmp_path / "v.h5", tmp_path / "a.h5"), "--overwrite")
    one_line_error(cli("archive", tmp_path / "none.h5", tmp_path / "b.h5"),
                   "no such file or folder")
    info = cli_json("info", tmp_path / "a.h5")
    assert info["view"]["form"] == "materialized" and info["view"]["sources"]["needed"] is False
    assert json.loads(json.dumps(info))  # plain JSON all through
