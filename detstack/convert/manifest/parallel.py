"""The referenced keys of a Parquet manifest written side by side, one process per key.

Building references is CPU work in Python and numpy (chunk indexes, record files),
one key at a time; the keys are independent (each has its own folder of record files).
So with more than one core, keys go to forked worker processes (they inherit the
opened run; nothing is pickled but the key's number and its result). Errors come back
as they were raised; an error that cannot travel is raised as ``DetstackError`` with
its message. ``DETSTACK_MANIFEST_WORKERS`` overrides the number of processes (1: all in
this process). Without ``fork`` (not Linux/macOS) or inside a daemon process (a worker
of a process pool), keys are written here, one after another.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ...errors import DetstackError

log = logging.getLogger(__name__)

_TASK: list[Callable[[int], Any]] = []   # the forked workers' task (inherited, not pickled)


def workers() -> int:
    env = os.environ.get("DETSTACK_MANIFEST_WORKERS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _run(i: int) -> tuple[str, Any, str]:
    try:
        return "ok", _TASK[0](i), ""
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent
        try:
            blob: bytes | None = pickle.dumps(exc)
            pickle.loads(blob)
        except Exception:  # noqa: BLE001 - unpicklable: its message travels
            blob = None
        return "error", blob, f"{type(exc).__name__}: {exc}"


def map_tasks(task: Callable[[int], Any], n: int) -> list[Any]:
    """``[task(0), ..., task(n - 1)]``, in worker processes where that helps."""
    k = min(workers(), n)
    if (k <= 1 or "fork" not in multiprocessing.get_all_start_methods()
            or multiprocessing.current_process().daemon):
        return [task(i) for i in range(n)]
    _TASK[:] = [task]
    try:
        with ProcessPoolExecutor(k, mp_context=multiprocessing.get_context("fork")) as pool:
            outcomes = list(pool.map(_run, range(n)))
    finally:
        _TASK.clear()
    out = []
    for status, value, message in outcomes:
        if status == "error":
            if value is not None:
                raise pickle.loads(value)
            raise DetstackError(message)
        out.append(value)
    return out
