"""The tasks of a Parquet manifest, run side by side in forked worker processes.

Building references is CPU work in Python and numpy (chunk indexes, record files), one
module of one key at a time, and so is copying the small keys into the sidecar; the
tasks are independent (each writes its own files). So with more than one core, tasks go
to forked worker processes (they inherit the opened run; nothing is pickled but the
task's number and its small result), and the parent only waits. Errors come back as they
were raised; an error that cannot travel is raised as ``DetstackError`` with its
message. ``DETSTACK_MANIFEST_WORKERS`` overrides the number of processes (1: all in this
process, when the results are asked for). Without ``fork`` (not Linux/macOS) or inside a
daemon process (a worker of a process pool), tasks run here, one after another. Workers
die with the parent (``die_with_parent``): a killed build leaves no process behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any

from ..forked import Reported, can_fork, cores, fork_pool, run_reporting, unpack

log = logging.getLogger(__name__)

_TASK: list[Callable[[int], Any]] = []   # the forked workers' task (inherited, not pickled)


def workers() -> int:
    env = os.environ.get("DETSTACK_MANIFEST_WORKERS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return min(2, cores())


def _run(i: int) -> Reported:
    return run_reporting(_TASK[0], i)


class Tasks:
    """``task(0), ..., task(n - 1)``, started in worker processes where that helps;
    ``results()`` waits for them (or runs them here). Use as a context manager: leaving
    it stops the workers, also when the parent fails first."""

    def __init__(self, task: Callable[[int], Any], n: int) -> None:
        self.task, self.n = task, n
        self.pool: ProcessPoolExecutor | None = None
        self.futures: list[Future[tuple[str, Any, str]]] = []
        k = min(workers(), n)
        if k <= 1 or not can_fork():
            return
        _TASK[:] = [task]
        self.pool = fork_pool(k)
        self.futures = [self.pool.submit(_run, i) for i in range(n)]   # forks here

    def results(self) -> list[Any]:
        if self.pool is None:
            return [self.task(i) for i in range(self.n)]
        out = []
        for fut in self.futures:
            out.append(unpack(fut.result()))
        return out

    def __enter__(self) -> Tasks:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        _TASK.clear()


def map_tasks(task: Callable[[int], Any], n: int) -> list[Any]:
    """``[task(0), ..., task(n - 1)]``, in worker processes where that helps."""
    with Tasks(task, n) as tasks:
        return tasks.results()
