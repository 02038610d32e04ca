"""Forked worker processes: their results and errors, and their end with the parent.

A worker's exception must reach the parent as the same typed error (a ``DetstackError``
naming file and key, not a pool's generic failure). Exceptions that cannot be pickled
travel as their message. A worker outliving a killed parent would wait for tasks forever
(holding the run's files open): ``die_with_parent`` is the initializer of every pool. A
forked worker has none of its parent's threads: the modules owning thread pools
(``detectors.reading``, ``chunk_index``) forget them at every fork themselves.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..errors import DetstackError

Reported = tuple[str, Any, str]   # ("ok", result, "") or ("error", pickled exception, text)
PR_SET_PDEATHSIG = 1   # prctl option: a signal for this process when its parent dies


def die_with_parent(parent: int | None = None) -> None:
    """Worker initializer (Linux): SIGKILL this process when its parent dies. ``parent``
    (the parent's pid, passed as ``initargs``) closes the gap of a parent that died
    before this ran."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1


def can_fork() -> bool:
    """Whether worker processes can be forked here: ``fork`` exists (Linux, macOS) and
    this is not itself a pool's daemon worker (which may not have children)."""
    return ("fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)


def fork_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes that die with this one. They inherit this
    process's memory at the fork: a module global set before the first ``submit`` is
    how they get their job without pickling it."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def run_reporting(task: Callable[[int], Any], i: int) -> Reported:
    """``task(i)`` in a worker: its result, or its exception packed for the parent."""
    try:
        return "ok", task(i), ""
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent
        try:
            blob: bytes | None = _own_pickle(exc)
            pickle.loads(blob)
        except Exception:  # noqa: BLE001 - unpicklable: its message travels
            blob = None
        return "error", blob, f"{type(exc).__name__}: {exc}"


def _own_pickle(exc: BaseException) -> bytes:
    """``exc`` pickled by its own ``__reduce__``: ``tblib`` (imported with dask.distributed)
    registers every exception class with ``copyreg`` to pickle its whole chain, and a
    cause raised by a C library (isal's ``IsalError``) cannot be pickled."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {}        # not copyreg's: every class reduces itself
    pickler.dump(exc)
    return buf.getvalue()


def unpack(reported: Reported) -> Any:
    """The result of a ``run_reporting`` call, or its exception raised here."""
    status, value, message = reported
    if status == "error":
        if value is not None:
            raise pickle.loads(value)
        raise DetstackError(message)
    return value
