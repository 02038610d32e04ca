"""Memory for conversion tasks without page faults: per-thread buffers, malloc tuning.

A fresh 100 MiB numpy array costs a page fault per 4 KiB page on first touch (the
kernel zeroes each page), which on a busy machine is as much CPU time as copying the
data into it; a task reuses its thread's buffers instead (contents are whatever the
last user left: callers overwrite what they use). The compressor's outputs (one
``bytes`` per inner chunk, ~1 MiB, a shard's worth alive until it is written) are
glibc allocations: see ``tune_malloc``.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import numpy as np

from ..heap import glibc, release_free_memory

_local = threading.local()


def thread_buffer(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype``, reused by this thread for ``name``."""
    cache: dict[str, np.ndarray] | None = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buf = cache.get(name)
    if buf is None or buf.nbytes < nbytes:
        cache[name] = buf = np.empty(max(nbytes, 1), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def release_buffers() -> None:
    """Drop this thread's buffers (e.g. a long-lived dask worker thread after a task)."""
    _local.buffers = None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_malloc_tuned = False
log = logging.getLogger(__name__)


def tune_malloc() -> None:
    """Keep the compressor's buffers on the heap, once per process (glibc only).

    By default glibc maps every allocation above its (adaptive) mmap threshold afresh
    and unmaps it on free: each encoded inner chunk then costs ~250 page faults, a
    third of a conversion's system time. Allocations up to 4 MiB stay on the heap
    and up to 128 MiB of free heap is kept for the next shard; ``trim_malloc`` gives
    it back when a conversion ends. dask.distributed's workers set
    ``MALLOC_TRIM_THRESHOLD_=65536``, which made blosc twice as slow: this undoes it.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    libc = glibc()
    if libc is None:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    log.debug("malloc tuned for conversion (pid %d)", os.getpid())


def trim_malloc() -> None:
    """Return free heap memory to the system (after a conversion, glibc only)."""
    if _malloc_tuned:
        release_free_memory()
