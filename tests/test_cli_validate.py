"""detstack validate and verify through the console script."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from clitools import cli, cli_json, no_python_warnings, one_line_error

from detstack import convert, synth
from detstack.detectors import DSSC1M
from detstack.run import RunDirectory


def test_order_problems_give_position_and_values(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "LPD1M", n_trains=6, frames_per_train=2, modules=[0],
                    bad_train_ids={3: 9000}, with_control=False, format_version="0.5")
    res = cli("validate", tmp_path)
    assert res.returncode == 1
    assert "train IDs not strictly increasing at 3 (10002 >= 9000)" in res.stdout
    assert "1 suspect train IDs (e.g. [9000]); open with --exc-suspect-trains" in res.stdout
    no_python_warnings(res.stderr)


def test_single_file_json_and_clean_run(tmp_path: Path) -> None:
    files = synth.write_run(tmp_path, "DSSC1M", n_trains=2, frames_per_train=2, modules=[0, 1])
    res = cli("validate", tmp_path)
    assert res.returncode == 0 and f"{tmp_path}: {len(files)} files checked, 0 problems" \
        in res.stdout
    doc = cli_json("validate", files[0])
    assert doc == {"target": str(files[0]), "files_checked": 1, "views_left_out": [],
                   "problems": [], "ok": True}


def test_missing_path_and_empty_folder_are_errors(tmp_path: Path) -> None:
    one_line_error(cli("validate", tmp_path / "nope"), "no such file or folder")
    one_line_error(cli("validate", tmp_path), "No .h5 files")


def test_truncated_file_is_a_problem(tmp_path: Path) -> None:
    files = synth.write_run(tmp_path, "DSSC1M", n_trains=2, frames_per_train=2, modules=[0, 1],
                            with_control=False)
    files[0].write_bytes(files[0].read_bytes()[: files[0].stat().st_size // 3])
    doc = cli_json("validate", tmp_path, status=1)
    assert doc["files_checked"] == 2 and doc["problems"][0]["file"] == str(files[0])


def test_module_consistency(tmp_path: Path) -> None:
    files = synth.write_run(tmp_path, "AGIPD1M", n_trains=3, frames_per_train=2, modules=[0, 1],
                            with_control=False)
    mod1 = next(f for f in files if "AGIPD01" in f.name)
    src = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/1CH0:xtdf/image/cellId"
    with h5py.File(mod1, "r+") as f:
        cells = f[src][:]
        del f[src]
        f.create_dataset(src, data=cells.astype(np.int32))
        count = f["INDEX/SPB_DET_AGIPD1M-1/DET/1CH0:xtdf/image/count"]
        count[1] = 1
    doc = cli_json("validate", tmp_path, status=1)
    messages = [p["message"] for p in doc["problems"]]
    assert any(f"{mod1}: source SPB_DET_AGIPD1M-1/DET/1CH0:xtdf key 'image.cellId'" in m
               and "has entries 1 <i4, but the other modules have entries 1 <u2" in m
               for m in messages), messages
    frames = next(m for m in messages if m.startswith("Inconsistent frame counts"))
    assert "for train 10001" in frames and "stores 2 rows" in frames
    assert "(--modules LIST) or that key out (--keys LIST)" in frames   # flags, not Python


def test_views_in_the_run_folder_are_left_out_quietly(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "DSSC1M", n_trains=2, frames_per_train=2, modules=[0, 1],
                    with_control=False)
    det = DSSC1M(RunDirectory(tmp_path), raw=True)
    convert.to_vds(det, tmp_path / "view.h5")
    convert.to_cxi(det, tmp_path / "view_virt.h5")
    import extra_data  # the reference's own virtual CXI file, too
    from extra_data.components import DSSC1M as EdDSSC1M
    EdDSSC1M(extra_data.RunDirectory(str(tmp_path))).write_virtual_cxi(
        str(tmp_path / "r_detectors_virt.h5"))
    res = cli("validate", tmp_path)
    assert res.returncode == 0, res.stdout
    assert "2 files checked (3 views left out), 0 problems" in res.stdout
    info = cli("info", tmp_path)
    assert info.returncode == 0 and info.stderr == "" and "SKIPPED" not in info.stdout


def test_verify_touched_and_removed_sources(tmp_path: Path) -> None:
    run = tmp_path / "run"
    files = synth.write_run(run, "DSSC1M", n_trains=2, frames_per_train=2, modules=[0, 1],
                            with_control=False)
    det = DSSC1M(RunDirectory(run), raw=True)
    convert.to_vds(det, tmp_path / "view.h5")
    convert.to_zarr(det, tmp_path / "copy.zarr")
    doc = cli_json("verify", tmp_path / "view.h5")
    assert doc["ok"] is True and doc["checked"] == 2
    full = cli_json("verify", tmp_path / "copy.zarr", "--full")
    assert full["ok"] is True and full["full"] is True and full["n_mismatches"] == 0
    assert full["blocks_checked"] > 0 and full["frames_checked"] >= 8
    os.utime(files[0], (1e9, 1e9))                     # touched, content unchanged
    touched = cli("verify", tmp_path / "view.h5")
    assert touched.returncode == 0, touched.stdout
    files[1].unlink()
    gone = cli("verify", tmp_path / "view.h5")
    assert gone.returncode == 1 and f"MISSING: {files[1]}" in gone.stdout
    # a zarr store is a copy: its source run may go
    own = cli("verify", tmp_path / "copy.zarr")
    assert own.returncode == 0, own.stdout
    one_line_error(cli("verify", tmp_path / "nothing.h5"), "no such file or folder")
