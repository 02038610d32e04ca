"""detstack info on runs, single files, every view form, damaged and interrupted data."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import cli, cli_json, one_line_error

from detstack import convert, synth
from detstack.detectors import AGIPD1M
from detstack.run import RunDirectory


@pytest.fixture
def gappy_run(tmp_path: Path) -> Path:
    """JUNGFRAU with slots 1, 2, 4 of 4; module 2 misses train 10001."""
    run = tmp_path / "run"
    synth.write_run(run, "JUNGFRAU", n_trains=3, n_modules=4, modules=[1, 2, 4],
                    missing_trains={2: [10001]}, n_cells=2)
    return run


def test_info_run_lists_modules_gaps_keys_and_time(gappy_run: Path) -> None:
    res = cli("info", gappy_run)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"{gappy_run}: run folder" in out
    assert "JUNGFRAU 'SPB_IRDA_JF4M' (raw data): 3 of 4 modules; missing: 3" in out
    assert "trains: 3 (10000-10002), frames per train 2, 6 frames" in out
    assert "data.adc: (module 4, train 3, cell 2, slow_scan 512, fast_scan 1024) uint16" in out
    assert "module 2: 1 train missing: 10001" in out
    assert "time: 2024-01-15T10:00:00+00:00 to 2024-01-15T10:00:00+00:00" in out
    assert "format version 1.3 (4)" in out


def test_info_json_and_detail(gappy_run: Path) -> None:
    doc = cli_json("info", gappy_run, "--detail")
    assert doc["kind"] == "run" and doc["trains"]["count"] == 3
    assert doc["trains"]["first"] == 10000 and doc["trains"]["last"] == 10002
    assert doc["trains"]["time"]["from"] == "INDEX/timestamp"
    det = doc["detectors"][0]
    assert det["modules"] == {"present": [1, 2, 4], "missing": [3], "of": 4}
    assert det["gaps"] == {"2": {"count": 1, "trains": "10001"}}
    assert det["keys"]["data.adc"]["shape"] == [4, 3, 2, 512, 1024]
    assert "data.gain" in det["keys"]                  # --detail: every key
    assert len(doc["files"]["list"]) == 4 and doc["files"]["list"][0]["format_version"] == "1.3"
    assert doc["skipped_files"] == []


def test_info_single_file_and_old_format(tmp_path: Path) -> None:
    files = synth.write_run(tmp_path, "LPD1M", n_trains=4, frames_per_train=3, modules=[0],
                            with_control=False, format_version="0.5")
    res = cli("info", files[0])
    assert res.returncode == 0, res.stderr
    assert f"{files[0]}: run file" in res.stdout
    assert "format version 0.5 (1)" in res.stdout
    assert "LPD1M 'FXE_DET_LPD1M-1' (raw data): 1 of 16 modules" in res.stdout
    assert "frames per train 3, 12 frames" in res.stdout


def test_info_reports_an_unusable_module_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    files = synth.write_run(run, "AGIPD1M", n_trains=2, frames_per_train=2, with_control=False)
    bad = next(f for f in files if "AGIPD03" in f.name)
    bad.write_bytes(bad.read_bytes()[:2000])
    doc = cli_json("info", run)
    assert doc["detectors"][0]["modules"]["missing"] == [3]
    assert [s["path"] for s in doc["skipped_files"]] == [str(bad)]
    res = cli("info", run)
    assert "15 of 16 modules; missing: 3" in res.stdout
    assert f"SKIPPED: Skipping unusable file: {bad}" in res.stdout
    assert res.stderr.count("detstack: warning: Skipping unusable file") == 1


def test_info_on_views(tmp_path: Path) -> None:
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", n_trains=3, frames_per_train=2, modules=[0, 5],
                    with_control=False)
    det = AGIPD1M(RunDirectory(run), raw=True)
    convert.to_vds(det, tmp_path / "view.h5")
    convert.to_manifest(det, run / "view.parq")
    res = cli("info", tmp_path / "view.h5")
    assert res.returncode == 0, res.stderr
    assert "detstack view (vds)" in res.stdout
    assert f"made from proposal 700000 run 1 in {run}" in res.stdout
    assert "source files: all 2 present" in res.stdout
    assert "2 of 16 modules" in res.stdout
    doc = cli_json("info", run / "view.parq")
    assert doc["view"]["form"] == "manifest" and doc["view"]["sources"]["missing"] == 0
    assert doc["detectors"][0]["keys"]["image.data"]["shape"] == [16, 3, 2, 2, 512, 128]
    next(run.glob("*AGIPD05*.h5")).unlink()
    gone = cli("info", tmp_path / "view.h5")
    assert "source files: 2, 1 MISSING, 0 CHANGED" in gone.stdout


def test_info_on_an_interrupted_zarr_store(tmp_path: Path) -> None:
    run = tmp_path / "run"
    synth.write_run(run, "DSSC1M", n_trains=4, frames_per_train=2, modules=[0, 1, 2],
                    with_control=False)
    store = tmp_path / "r.zarr"

    def stop_after_first(done: int, total: int) -> None:
        if done >= 1:
            raise KeyboardInterrupt

    from detstack.detectors import DSSC1M
    with pytest.raises(KeyboardInterrupt):
        convert.to_zarr(DSSC1M(RunDirectory(run), raw=True), store, progress=stop_after_first,
                        threads=1)
    res = cli("info", store)
    assert res.returncode == 1
    done = int(res.stdout.split("incomplete: ")[1].split(" of ")[0])
    assert 1 <= done < 3
    assert f"of 3 blocks written; resume with `detstack convert {run} {store} --to zarr " \
        "--resume`" in res.stdout
    doc = cli_json("info", store, status=1)
    assert doc["complete"] is False and doc["blocks"] == 3


def test_info_errors_are_one_line(tmp_path: Path) -> None:
    one_line_error(cli("info", tmp_path / "nothing"), "no such file or folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(cli("info", empty), "No .h5 files")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    one_line_error(cli("info", junk), "junk.h5")


def test_info_on_a_detector_that_cannot_be_read(tmp_path: Path) -> None:
    import h5py

    files = synth.write_run(tmp_path, "AGIPD1M", n_trains=3, frames_per_train=2, modules=[0, 1],
                            with_control=False)
    with h5py.File(files[1], "r+") as f:
        f["INDEX/SPB_DET_AGIPD1M-1/DET/1CH0:xtdf/image/count"][1] = 1
    res = cli("info", tmp_path)
    assert res.returncode == 1
    line = next(ln for ln in res.stdout.splitlines() if "CANNOT BE READ" in ln)
    assert "Inconsistent frame counts for train 10001" in line and "(--modules LIST)" in line
