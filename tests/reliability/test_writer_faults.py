"""Faults while writing: writers killed (SIGKILL) at random points, a full disk,
concurrent writers and readers during writes. Nothing ever reads as complete unless it
is, resuming finishes a store identical to an uninterrupted one, and leftovers of dead
writers are cleaned by the next write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.convert import to_vds, to_zarr
from detstack.convert.atomic import HOST
from detstack.errors import TargetLockedError
from detstack.store import open_view
from detstack.store.verify import verify_view
from detstack.store.zarr_store import IncompleteStoreError

HERE = Path(__file__).parent
RUN = dict(kind="AGIPD1M", raw=True, n_trains=6, frames_per_train=[4, 3, 0, 4, 2, 4],
           modules=[0, 1, 2, 5], missing_trains={2: [10003]}, with_control=False)
ENV = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "run"
    synth.write_run(folder, **RUN)
    to_vds(det_of(folder), folder / "view.h5")      # what `materialize` copies
    return folder


@pytest.fixture(scope="module")
def whole(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted conversion every resumed one must equal."""
    out = tmp_path_factory.mktemp("whole") / "whole.zarr"
    to_zarr(det_of(run), out, threads=1)
    return out


def det_of(run: Path) -> detstack.AGIPD1M:
    return detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)


def start_writer(writer: str, run: Path, out: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE / "relsuite_writer.py"), writer,
                             str(run), str(out), *flags], stdout=subprocess.PIPE, text=True,
                            env=ENV)


def shard_count(store: Path) -> int:
    return sum(len(f) for d, _, f in os.walk(store) if "/c" in d.replace(str(store), ""))


def kill_after(proc: subprocess.Popen[str], store: Path, shards: int, limit: float = 60
               ) -> None:
    """SIGKILL ``proc`` once ``store`` holds ``shards`` shard files (or it finished)."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    t0 = time.monotonic()
    while proc.poll() is None and shard_count(store) < shards:
        assert time.monotonic() - t0 < limit, "writer hung"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    count("faults")


def same_objects(a: Path, b: Path) -> None:
    """Two folder stores with the same objects and bytes (the record's creation time and
    nothing else may differ)."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name == "zarr.json":
            ra, rb = json.loads(fa[name]), json.loads(fb[name])
            for r in (ra, rb):
                r["attributes"]["detstack_record"].pop("created")
                r["consolidated_metadata"] = None
            assert ra == rb
        else:
            assert fa[name] == fb[name], name


@pytest.mark.parametrize("seed", [1, 2])
def test_zarr_killed_at_random_then_resumed(run: Path, whole: Path, tmp_path: Path,
                                            seed: int) -> None:
    store = tmp_path / "killed.zarr"
    n = random.Random(seed).randint(1, shard_count(whole) - 1)
    kill_after(start_writer("zarr", run, store, "slow"), store, n)
    if (store / "zarr.json").exists() and not (store / ".detstack-progress").exists():
        pytest.fail("the writer finished before the kill; slow it down")
    with pytest.raises(IncompleteStoreError, match="resume=True"):
        open_view(str(store))
    zarr.open_group(str(store), mode="a")       # a plain zarr tool touches it: still refused
    with pytest.raises(IncompleteStoreError):
        open_view(str(store))
    to_zarr(det_of(run), store, resume=True)
    same_objects(store, whole)
    assert verify_view(str(store), full=True).ok


@pytest.mark.parametrize("seed", [4, 5])
def test_zarr_overwrite_killed_never_looks_complete(run: Path, tmp_path: Path,
                                                    seed: int) -> None:
    """Killing ``overwrite=True`` while it replaces a complete store leaves either the
    old complete store, or a store every reader and ``resume`` refuses: never shards of
    zeros under a complete-looking root."""
    store = tmp_path / "old.zarr"
    to_zarr(det_of(run), store)
    want = np.asarray(det_of(run).get_array("image.data").values)
    delay = random.Random(seed).uniform(0.0, 1.5)
    proc = start_writer("zarr", run, store, "overwrite", "slow")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    count("faults")
    try:
        view = open_view(str(store))
    except (IncompleteStoreError, FileNotFoundError):
        to_zarr(det_of(run), store, resume=True)
        view = open_view(str(store))
    got = np.asarray(detstack.AGIPD1M(view, raw=True).get_array("image.data").values)
    np.testing.assert_array_equal(got, want)
    assert verify_view(str(store), full=True).ok
    to_zarr(det_of(run), store, overwrite=True)
    assert verify_view(str(store), full=True).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.zarr"]   # no leftovers


def test_concurrent_resumes_are_serialised(run: Path, whole: Path, tmp_path: Path) -> None:
    """A second resume while the first runs is refused with the first one's pid; after the
    first is killed its lock is gone (the kernel drops it) and a resume finishes."""
    store = tmp_path / "race.zarr"
    kill_after(start_writer("zarr", run, store, "slow"), store, 2)
    first = start_writer("zarr", run, store, "resume", "slow")
    assert first.stdout is not None and first.stdout.readline().strip() == "started"
    lock = tmp_path / ".race.zarr.lock"
    t0 = time.monotonic()
    while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
        assert time.monotonic() - t0 < 30
        time.sleep(0.01)
    with pytest.raises(TargetLockedError, match=f"pid {first.pid} on host {HOST}"):
        to_zarr(det_of(run), store, resume=True)
    count("faults")
    first.send_signal(signal.SIGKILL)
    first.wait()
    to_zarr(det_of(run), store, resume=True)
    same_objects(store, whole)
    assert not lock.exists()


def test_readers_during_a_conversion(run: Path, tmp_path: Path) -> None:
    """A reader polling a store while it is written sees 'incomplete' or the whole data."""
    store = tmp_path / "live.zarr"
    want = np.asarray(det_of(run).get_array("image.data").values)
    proc = start_writer("zarr", run, store, "slow")
    seen = set()
    while True:
        done = proc.poll() is not None
        try:
            view = open_view(str(store))
        except (IncompleteStoreError, FileNotFoundError):
            seen.add("incomplete")
        else:
            got = np.asarray(detstack.AGIPD1M(view, raw=True).get_array("image.data").values)
            np.testing.assert_array_equal(got, want)
            seen.add("complete")
        if done:
            break
    count("faults")
    assert proc.returncode == 0 and "complete" in seen


@pytest.mark.parametrize("writer,name", [("vds", "v.h5"), ("cxi", "v.cxi"),
                                         ("manifest", "m.json"), ("manifest", "m.parq"),
                                         ("frames", "f.h5"), ("materialize", "mat.h5")])
def test_file_writers_killed(run: Path, tmp_path: Path, writer: str, name: str) -> None:
    """A killed HDF5/manifest writer leaves nothing under the final name (or the whole
    file); its hidden temporary is removed by the next write to the same name."""
    out = run / name if writer == "manifest" else tmp_path / name
    for seed in range(2):
        proc = start_writer(writer, run, out, "overwrite")
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(random.Random(seed).uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        count("faults")
        if out.exists():
            det = detstack.AGIPD1M(open_view(str(out)), raw=True) if writer != "frames" \
                else detstack.AGIPD1M(detstack.H5File(out), raw=True)
            got = np.asarray(det.get_array("image.data").values)
            assert got.shape[0] == 4
    left = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    subprocess.run([sys.executable, str(HERE / "relsuite_writer.py"), writer, str(run),
                    str(out), "overwrite"], check=True, env=ENV, capture_output=True)
    assert not any(p.exists() for p in left)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_live_temporaries_are_kept(run: Path, tmp_path: Path) -> None:
    """Only temporaries of dead writers are removed: a live one (this process) stays."""
    out = tmp_path / "v.h5"
    dead = tmp_path / f".v.h5.{HOST}-999999999-0123abcd.partial"
    live = tmp_path / f".v.h5.{HOST}-{os.getpid()}-0123abcd.partial"
    other = tmp_path / ".v.h5.elsewhere-12-0123abcd.partial"
    for p in (dead, live, other):
        p.write_bytes(b"half")
    to_vds(det_of(run), out)
    assert not dead.exists() and live.exists() and other.exists()


def test_stale_zip_staging_is_removed(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zip"
    to_zarr(det_of(run), out)
    staging = tmp_path / "s.zip.staging"
    (staging / "image.data" / "c").mkdir(parents=True)     # no ledger: no live writer
    (staging / "image.data" / "c" / "junk").write_bytes(b"x")
    to_zarr(det_of(run), out, resume=True)                  # complete: nothing to do
    assert not staging.exists()
    assert verify_view(str(out), full=True).ok


def test_store_folder_without_metadata_while_its_writer_holds_the_lock(tmp_path: Path) -> None:
    """The moment between a writer creating the store folder and its first metadata
    object reads as 'being written' (naming the writer), not as 'not a zarr store'."""
    from detstack.convert.locks import local_lock
    from detstack.errors import FileFormatError

    store = tmp_path / "new.zarr"
    store.mkdir()
    with local_lock(str(store), str(tmp_path / ".new.zarr.lock")):
        with pytest.raises(IncompleteStoreError, match=f"being written.*pid {os.getpid()}"):
            open_view(str(store))
    with pytest.raises(FileFormatError, match="not a zarr store") as info:
        open_view(str(store))
    assert not isinstance(info.value, IncompleteStoreError)
