"""to_zarr's forked worker processes (``convert.zarr.runners``): the tasks run in other
processes, the store equals a one-process conversion byte for byte, and a worker killed
mid-conversion fails it with ``WorkerDiedError``, leaving a store that resumes."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from zarr_store_helpers import assert_same_store, check_reader_api, make_run, open_det, view_det

from detstack.convert import to_zarr
from detstack.convert.zarr import direct_file, runners
from detstack.convert.zarr.encode import ObjectFile
from detstack.errors import WorkerDiedError
from detstack.store import open_view
from detstack.store.zarr_store import IncompleteStoreError

NAME = "AGIPD1M-raw"
BLOCK = direct_file.BLOCK


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("workers") / "run", NAME)


def _recording(log: Path, kill_task: str | None = None) -> Any:
    """``run_task`` that appends "pid task" to ``log`` (and kills its own process when it
    gets ``kill_task``, once: a marker file beside the log remembers)."""
    real = runners.run_task

    def run_task(task: Any, target: Any, *args: Any, **kwargs: Any) -> int:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {task.task_id}\n")
        marker = log.with_suffix(".killed")
        if task.task_id == kill_task and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(task, target, *args, **kwargs)
    return run_task


def test_workers_run_elsewhere_and_write_the_same_store(run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    det = open_det(run, NAME)
    log = tmp_path / "tasks.log"
    monkeypatch.setattr(runners, "run_task", _recording(log))
    to_zarr(det, tmp_path / "one.zarr", workers=1, shards=1)
    _direct_write_here(tmp_path / "before-the-fork")
    assert {int(line.split()[0]) for line in log.read_text().splitlines()} == {os.getpid()}
    log.unlink()
    to_zarr(det, tmp_path / "two.zarr", workers=2, shards=1)
    lines = [line.split() for line in log.read_text().splitlines()]
    pids = {int(pid) for pid, _ in lines}
    assert os.getpid() not in pids and len(pids) == 2
    assert len({task for _, task in lines}) == len(lines) > 2     # every task once
    assert_same_store(tmp_path / "two.zarr", tmp_path / "one.zarr")
    check_reader_api(det, view_det(det, str(tmp_path / "two.zarr")))


def _direct_write_here(path: Path) -> None:
    """A direct write on this (the main) thread: its staging buffers stay with the thread,
    so the workers forked next inherit them (shared memory there let the workers write
    into each other's and into their parent's: wrong chunks)."""
    with ObjectFile(str(path)) as f:
        f.write([bytes(range(256)) * 64])
    assert path.read_bytes() == bytes(range(256)) * 64


def test_staging_buffers_are_private_to_a_forked_worker(tmp_path: Path) -> None:
    _direct_write_here(tmp_path / "obj")
    mine = direct_file._stages()
    before = [bytes(b[:BLOCK]) for b in mine.free]
    pid = os.fork()
    if pid == 0:        # the child fills the buffers it inherited, then writes its own object
        code = 1
        try:
            for b in mine.free:
                b[:] = 0xAB
            assert direct_file._stages() is not mine        # its own buffers and writer
            _direct_write_here(tmp_path / "child")
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert direct_file._stages() is mine
    assert [bytes(b[:BLOCK]) for b in mine.free] == before
    assert not any((b == 0xAB).all() for b in mine.free)
    assert (tmp_path / "child").read_bytes() == bytes(range(256)) * 64


def test_killed_worker_fails_typed_and_the_store_resumes(run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    det = open_det(run, NAME)
    url = tmp_path / "cut.zarr"
    log = tmp_path / "tasks.log"
    monkeypatch.setattr(runners, "run_task", _recording(log, kill_task="003-000000000"))
    with pytest.raises(WorkerDiedError, match="resume=True") as err:
        to_zarr(det, url, workers=2, shards=1)
    assert str(url) in str(err.value)
    assert (tmp_path / "tasks.killed").exists()
    with pytest.raises(IncompleteStoreError):
        open_view(str(url))
    to_zarr(det, url, workers=2, shards=1, resume=True)
    to_zarr(det, tmp_path / "whole.zarr", workers=1, shards=1)
    assert_same_store(url, tmp_path / "whole.zarr")
    check_reader_api(det, view_det(det, str(url)))


def test_source_cut_short_under_a_mapping_fails_typed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A source file truncated while a worker reads it through a mapping (SIGBUS there)
    ends that worker only: the conversion fails with ``WorkerDiedError``, this process
    lives on, and the store stays incomplete (never reads as whole)."""
    from detstack.convert.zarr import tasks
    run = make_run(tmp_path / "run", NAME)
    det = open_det(run, NAME)
    real = tasks._Sources.mapped

    def mapped_then_cut(self: Any, j: int, dset: str, start: int, count: int) -> Any:
        """The rows mapped from a copy of the file, which is then cut short (the other
        tasks read the intact source: this worker's SIGBUS is the only failure)."""
        if not self.map_rows:
            return None
        copy = tmp_path / f"copy-{os.getpid()}-{j}-{start}.h5"
        shutil.copy(self.paths[j], copy)
        rows = real(tasks._Sources((str(copy),), map_rows=True), 0, dset, start, count)
        os.truncate(copy, 4096)
        return rows
    monkeypatch.setattr(tasks._Sources, "mapped", mapped_then_cut)
    url = tmp_path / "cut.zarr"
    with pytest.raises(WorkerDiedError, match="resume=True"):
        to_zarr(det, url, workers=2)    # (default shards: inner chunks of several trains)
    with pytest.raises(IncompleteStoreError):
        open_view(str(url))
