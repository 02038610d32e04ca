"""Where ``to_zarr``'s tasks run: forked worker processes, threads, or dask workers.

A task spends most of its time in the compressor and the transposition (C code, no
GIL), but its loop over inner chunks, its reads and the staging of its direct writes
are Python holding the GIL: on threads, two cores' tasks queue for it (py-spy: ~14 %
of the samples). Forked worker processes, one per core, share no lock; they inherit
the tasks and the target at the fork (nothing is pickled but a task's number and the
trains it wrote) and each writes only its own shards, as a thread would.

Processes are used for local targets when there is more than one worker and ``fork``
exists; remote targets (fsspec's event loop must not be forked) and single workers
run on threads (by default one more than the cores: a remote target's writes wait on
the network). A worker killed by a signal (the OOM killer, ``kill``) fails the
conversion with ``WorkerDiedError``; the store stays resumable, as after any
interruption.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...errors import WorkerDiedError
from ..forked import Reported, can_fork, cores, fork_pool, run_reporting, unpack
from .target import Target
from .tasks import TaskSpec, run_task

OnDone = Callable[[int], None]
_JOB: list[Any] = []     # (tasks, target) of the forked workers (inherited, not pickled)


def run_local(tasks: list[TaskSpec], target: Target, workers: int | None,
              on_done: OnDone) -> None:
    """Run ``tasks`` on ``workers`` forked processes (default one per core, at most 8:
    beyond that the disk, not the compressor, limits), or threads where processes
    cannot be used (see the module's docstring); ``on_done(trains)`` after each task."""
    forked = (workers or cores()) > 1 and len(tasks) > 1 and target.is_local and can_fork()
    if forked:
        _run_forked(tasks, target, min(workers or min(8, cores()), len(tasks)), on_done)
    else:
        _run_threads(tasks, target, workers or min(8, cores() + 1), on_done)


def _run_forked(tasks: list[TaskSpec], target: Target, workers: int, on_done: OnDone) -> None:
    _JOB[:] = [tasks, target]
    try:
        with fork_pool(workers) as pool:
            try:
                _drain(pool, _forked_task, range(len(tasks)), workers,
                       lambda reported: on_done(unpack(reported)))
            except BrokenProcessPool as exc:
                raise WorkerDiedError(
                    f"{target.url}: a to_zarr worker process died (killed by a signal, e.g. "
                    "out of memory); the store is resumable: run again with resume=True "
                    "(--resume)") from exc
    finally:
        _JOB.clear()


def _task_in_worker(i: int) -> int:
    tasks, target = _JOB
    return run_task(tasks[i], target, True, map_rows=True)


def _forked_task(i: int) -> Reported:
    return run_reporting(_task_in_worker, i)


def _run_threads(tasks: list[TaskSpec], target: Target, threads: int, on_done: OnDone) -> None:
    with ThreadPoolExecutor(threads, thread_name_prefix="to_zarr") as pool:
        _drain(pool, lambda task: run_task(task, target, True), tasks, threads, on_done)


def _drain(pool: Executor, fn: Callable[[Any], Any], items: Any, workers: int,
           on_result: Callable[[Any], None]) -> None:
    """``fn(item)`` for every item on ``pool`` with at most ``workers + 1`` in flight
    (bounded memory; a slow progress callback slows submission rather than piling up),
    ``on_result`` in this thread as each finishes; on any error, nothing more starts."""
    pending: set[Future[Any]] = set()

    def take_finished() -> None:
        nonlocal pending
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            on_result(fut.result())
    try:
        for item in items:
            pending.add(pool.submit(fn, item))
            if len(pending) > workers:
                take_finished()
        while pending:
            take_finished()
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


def run_distributed(client: Any, tasks: list[TaskSpec], target: Target, on_done: OnDone) -> None:
    """One dask task per conversion task; each writes only the shards it owns."""
    from distributed import as_completed
    if not tasks:
        return
    token = uuid.uuid4().hex[:8]
    futures = client.map(run_task, tasks, target=target, pure=False,
                         key=[f"detstack-to-zarr-{token}-{t.task_id}" for t in tasks])
    try:
        for fut in as_completed(futures):
            on_done(fut.result())
    except BaseException:
        client.cancel(futures)
        raise
