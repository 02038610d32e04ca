"""Zarr v3 stores written by ``to_zarr``: content, layout, zip, safety and resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.storage
from zarr.codecs import ZstdCodec
from zarr_store_helpers import (
    RUNS,
    assert_same_store,
    check_arrays,
    check_reader_api,
    make_run,
    open_det,
    store_files,
    validate_record,
    view_det,
)

from detstack import synth
from detstack.cli import main as cli_main
from detstack.convert import to_zarr
from detstack.convert.plan import ViewPlan
from detstack.store import open_view
from detstack.store.zarr_store import IncompleteStoreError

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("zarr_runs")
    return {name: make_run(base / name, name) for name in RUNS}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_round_trip_every_kind(runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    det = open_det(runs[name], name)
    plan = ViewPlan(det)
    url = str(tmp_path / "run.zarr")
    calls: list[tuple[int, int]] = []
    assert to_zarr(det, url, progress=lambda d, t: calls.append((d, t))) == url
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] > 0

    # plain xarray: named dims, coordinates, every key equal to the run (h5py oracle)
    ds = xr.open_zarr(url)
    check_arrays(plan, ds)
    main = ds[det.kind.main_key]
    cell = "pulse" if det.kind.xtdf else "cell"
    assert main.dims[:3] == ("module", "train", cell)
    assert main.dims[-2:] == ("slow_scan", "fast_scan")
    np.testing.assert_array_equal(ds["train"], det.train_ids)
    np.testing.assert_array_equal(ds["module"], np.arange(det.n_modules) + det.kind.modno_base)
    group = det.kind.index_group
    np.testing.assert_array_equal(main[f"count.{group}"], plan.counts(group))
    if det.kind.xtdf:   # pulse IDs per (train, frame) from the run: frame i has pulseId i
        pid = ds["pulse_id"].values
        counts = plan.counts(group).max(axis=0)
        for t, c in enumerate(counts):
            np.testing.assert_array_equal(pid[t, :c], np.arange(c))

    # plain zarr-python: shards of up to 8 trains per module, an inner chunk per pulse
    # (cell) of those trains, stored train axis innermost
    arr = zarr.open_group(url, mode="r")[det.kind.main_key]
    trains = min(8, arr.shape[1])
    assert arr.shards == (1, trains) + arr.shape[2:]
    assert arr.chunks == (1, trains, 1) + arr.shape[3:]
    assert arr.metadata.dimension_names == main.dims
    assert [c.to_dict() for c in arr.filters] == [
        {"name": "transpose", "configuration": {"order": (0, *range(2, arr.ndim), 1)}}]
    assert [c.to_dict()["name"] for c in arr.compressors] == ["blosc", "crc32c"]

    # detstack reader API on the view, and the record
    dv = view_det(det, url)
    check_reader_api(det, dv)
    record = dict(open_view(url).record)
    validate_record(record)
    assert record["form"] == "zarr"
    assert not (tmp_path / "run.zarr" / ".detstack-progress").exists()


def test_shards_are_what_zarr_python_writes(runs: dict[str, Path], tmp_path: Path) -> None:
    """Our own shard encoder produces the very bytes zarr-python writes for the same values."""
    det = open_det(runs["AGIPD1M-raw"], "AGIPD1M-raw")
    url = tmp_path / "ours.zarr"
    to_zarr(det, url, keys=["image.data", "image.pulseId", "header.trainId"])
    ours = zarr.open_group(str(url), mode="r")
    for key in ["image.data", "image.pulseId", "header.trainId"]:
        a = ours[key]
        ref = zarr.create_array(str(tmp_path / "ref" / key), shape=a.shape, dtype=a.dtype,
                                chunks=a.chunks, shards=a.shards, filters=a.filters,
                                compressors=a.compressors,
                                fill_value=a.fill_value)
        ref[...] = a[...]
        mine = {k: v for k, v in store_files(url / key).items() if k != "zarr.json"}
        theirs = {k: v for k, v in store_files(tmp_path / "ref" / key).items()
                  if k != "zarr.json"}
        assert mine.keys() == theirs.keys() and mine, key
        assert mine == theirs, key


def test_layout_options(runs: dict[str, Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture) -> None:
    det = open_det(runs["AGIPD1M-raw"], "AGIPD1M-raw")
    plan = ViewPlan(det)
    url = str(tmp_path / "custom.zarr")
    to_zarr(det, url, keys=["image.data", "image.cellId"], compressor=ZstdCodec(level=3),
            shards=2, chunks={"image.data": (1, 1, 2, 1, 512, 128)}, threads=1, progress=True)
    shown = capsys.readouterr().err           # a tqdm bar on stderr, counting trains x modules
    assert "to_zarr:" in shown and "/12 " in shown
    g = zarr.open_group(url, mode="r")
    arr = g["image.data"]
    assert arr.shards == (1, 2, 6, 2, 512, 128) and arr.chunks == (1, 1, 2, 1, 512, 128)
    assert [c.to_dict()["name"] for c in arr.compressors] == ["zstd", "crc32c"]
    check_arrays(plan, xr.open_zarr(url), ["image.data", "image.cellId"])

    url2 = str(tmp_path / "plain.zarr")
    to_zarr(det, url2, keys=["image.data"], compressor=False, shards=False)
    arr = zarr.open_group(url2, mode="r")["image.data"]
    assert arr.shards is None and arr.chunks == (1, min(8, arr.shape[1]), 1, 2, 512, 128)
    assert arr.compressors == ()
    check_arrays(plan, xr.open_zarr(url2), ["image.data"])

    with pytest.raises(ValueError, match="one module slot"):
        to_zarr(det, str(tmp_path / "bad.zarr"), shards={"image.data": (2, 1, 6, 2, 512, 128)})


def test_zip_store(runs: dict[str, Path], tmp_path: Path) -> None:
    det = open_det(runs["LPD1M-corr"], "LPD1M-corr")
    url = str(tmp_path / "run.zarr.zip")
    to_zarr(det, url)
    assert sorted(os.listdir(tmp_path)) == ["run.zarr.zip"]     # staging folder removed
    with zipfile.ZipFile(url) as zf:
        assert "zarr.json" in zf.namelist()
        assert not any(n.startswith(".detstack-progress") for n in zf.namelist())
    ds = xr.open_zarr(zarr.storage.ZipStore(url, mode="r"))
    check_arrays(ViewPlan(det), ds)
    check_reader_api(det, view_det(det, url))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_zarr(det, url)
    to_zarr(det, url, overwrite=True, keys=["image.data"])
    assert list(open_view(url).record["keys"]) == ["image.data"]


def test_existing_targets(runs: dict[str, Path], tmp_path: Path) -> None:
    det = open_det(runs["DSSC1M-raw"], "DSSC1M-raw")
    url = tmp_path / "run.zarr"
    to_zarr(det, url, keys=["image.data"])
    before = store_files(url)
    with pytest.raises(FileExistsError, match="complete detstack zarr store"):
        to_zarr(det, url, keys=["image.data"])
    assert store_files(url) == before
    to_zarr(det, url, keys=["image.data"], resume=True)        # already complete: no-op
    assert store_files(url) == before
    to_zarr(det, url, keys=["image.pulseId"], overwrite=True)
    assert list(open_view(str(url)).record["keys"]) == ["image.pulseId"]

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a detstack zarr store"):
        to_zarr(det, other)
    with pytest.raises(FileExistsError, match="refusing to delete"):
        to_zarr(det, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "precious"

    foreign = tmp_path / "foreign.zarr"
    zarr.create_group(str(foreign))
    with pytest.raises(FileExistsError):
        to_zarr(det, foreign)
    with pytest.raises(Exception, match="not a detstack view"):
        open_view(str(foreign))
    to_zarr(det, foreign, overwrite=True, keys=["image.data"])
    assert open_view(str(foreign)).record["form"] == "zarr"
    with pytest.raises(FileNotFoundError):
        open_view(str(tmp_path / "missing.zarr"))


class _Stop(Exception):
    pass


def test_interrupted_then_resumed(runs: dict[str, Path], tmp_path: Path) -> None:
    """A conversion stopped by an error (e.g. a lost connection) is refused by readers,
    resumed only with the same settings, and then equals an uninterrupted one."""
    det = open_det(runs["JUNGFRAU"], "JUNGFRAU")
    url = tmp_path / "cut.zarr"

    def stop_after_first(done: int, total: int) -> None:
        if done > 0:
            raise _Stop
    with pytest.raises(_Stop):
        to_zarr(det, url, threads=1, progress=stop_after_first)
    assert not (url / "zarr.json").exists()
    with pytest.raises(IncompleteStoreError, match="resume=True"):
        open_view(str(url))
    with pytest.raises(Exception):  # noqa: B017 - plain readers see no zarr group at all
        xr.open_zarr(url)
    with pytest.raises(FileExistsError, match="interrupted"):
        to_zarr(det, url)
    with pytest.raises(ValueError, match="other settings"):
        to_zarr(det, url, resume=True, compressor=ZstdCodec())

    seen: list[tuple[int, int]] = []
    to_zarr(det, url, resume=True, progress=lambda d, t: seen.append((d, t)))
    assert 0 < seen[0][0] < seen[0][1]          # started with the finished tasks counted
    to_zarr(det, tmp_path / "whole.zarr")
    assert_same_store(url, tmp_path / "whole.zarr")
    check_reader_api(det, view_det(det, str(url)))


# 6 trains, one without frames: 5 trains in the view
KILLED_RUN = dict(kind="AGIPD1M", raw=True, n_trains=6, frames_per_train=[8, 3, 0, 8, 5, 8],
                  modules=[0, 1, 2, 4, 5, 7], missing_trains={2: [10003]})


def test_kill_and_resume(tmp_path: Path) -> None:
    """SIGKILL a converting process mid-way: the store is refused as incomplete, and
    resuming yields the same bytes as an uninterrupted conversion."""
    run = tmp_path / "run"
    synth.write_run(run, **KILLED_RUN)
    url = tmp_path / "killed.zarr"
    script = textwrap.dedent(f"""
        import sys, time, warnings
        warnings.simplefilter("ignore")
        import detstack
        from detstack.convert import to_zarr
        det = detstack.AGIPD1M(detstack.RunDirectory({str(run)!r}), raw=True)
        def slow(done, total):
            print(done, total, flush=True)
            time.sleep(0.5)
        to_zarr(det, {str(url)!r}, threads=1, progress=slow)
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            done, total = map(int, line.split())
            if done >= 2 * 5:          # two modules' tasks (5 trains each) are finished
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_markers = os.listdir(url / ".detstack-progress" / "done")
    assert 2 <= len(done_markers) < 6
    assert not (url / "zarr.json").exists()
    with pytest.raises(IncompleteStoreError, match="interrupted"):
        open_view(str(url))

    det = synth_det(run)
    seen: list[int] = []
    to_zarr(det, url, resume=True, progress=lambda d, t: seen.append(d))
    assert seen[0] == 5 * len(done_markers)      # finished tasks were skipped
    to_zarr(det, tmp_path / "whole.zarr")
    assert_same_store(url, tmp_path / "whole.zarr")
    check_reader_api(det, view_det(det, str(url)))


def synth_det(run: Path):  # noqa: ANN201
    import detstack
    return detstack.AGIPD1M(detstack.RunDirectory(str(run)), raw=True)


@pytest.mark.filterwarnings("ignore:Falling back to raw data")
def test_cli_convert(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
                     ) -> None:
    out = str(tmp_path / "cli.zarr")
    assert cli_main(["convert", str(runs["JUNGFRAU"]), out, "--to", "zarr"]) == 0
    assert cli_main(["convert", str(runs["JUNGFRAU"]), out, "--to", "zarr"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert cli_main(["convert", str(runs["JUNGFRAU"]), out, "--to", "zarr", "--overwrite"]) == 0
    det = open_det(runs["JUNGFRAU"], "JUNGFRAU")
    check_reader_api(det, view_det(det, out))
    record = json.loads((tmp_path / "cli.zarr" / "zarr.json").read_text())
    validate_record(record["attributes"]["detstack_record"])
    assert cli_main(["verify", out]) == 0          # source files recorded relative to the store
    assert "source files checked: OK" in capsys.readouterr().out
