"""to_zarr's forked worker processes (``convert.zarr.runners``): the tasks run in other
processes, the store equals a one-process conversion byte for byte, and a worker killed
mid-conversion fails it with ``WorkerDiedError``, leaving a store that resumes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from zarr_store_helpers import assert_same_store, check_reader_api, make_run, open_det, view_det

from detstack.convert import to_zarr
from detstack.convert.zarr import runners
from detstack.errors import WorkerDiedError
from detstack.store import open_view
from detstack.store.zarr_store import IncompleteStoreError

NAME = "AGIPD1M-raw"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("workers") / "run", NAME)


def _recording(log: Path, kill_task: str | None = None) -> Any:
    """``run_task`` that appends "pid task" to ``log`` (and kills its own process when it
    gets ``kill_task``, once: a marker file beside the log remembers)."""
    real = runners.run_task

    def run_task(task: Any, target: Any, keep: bool = False) -> int:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {task.task_id}\n")
        marker = log.with_suffix(".killed")
        if task.task_id == kill_task and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(task, target, keep)
    return run_task


def test_workers_run_elsewhere_and_write_the_same_store(run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    det = open_det(run, NAME)
    log = tmp_path / "tasks.log"
    monkeypatch.setattr(runners, "run_task", _recording(log))
    # one process first: its staging buffers of direct writes exist when the workers fork
    # (shared memory would let the workers write into each other's: wrong chunks)
    to_zarr(det, tmp_path / "one.zarr", workers=1, shards=1)
    assert {int(line.split()[0]) for line in log.read_text().splitlines()} == {os.getpid()}
    log.unlink()
    to_zarr(det, tmp_path / "two.zarr", workers=2, shards=1)
    lines = [line.split() for line in log.read_text().splitlines()]
    pids = {int(pid) for pid, _ in lines}
    assert os.getpid() not in pids and len(pids) == 2
    assert len({task for _, task in lines}) == len(lines) > 2     # every task once
    assert_same_store(tmp_path / "two.zarr", tmp_path / "one.zarr")
    check_reader_api(det, view_det(det, str(tmp_path / "two.zarr")))


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
