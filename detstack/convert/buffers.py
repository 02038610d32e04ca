"""Per-thread reusable buffers for conversion tasks.

A fresh 100 MiB numpy array costs a page fault per 4 KiB page on first touch (the
kernel zeroes each page), which on a busy machine is as much CPU time as copying the
data into it; a task reuses its thread's buffers instead. Contents are whatever the
last user left: callers overwrite what they use.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def thread_buffer(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype``, reused by this thread for ``name``."""
    cache: dict[str, np.ndarray] | None = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = cache.get(name)
    if buf is None or buf.nbytes < nbytes:
        cache[name] = buf = np.empty(max(nbytes, 1), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def release_buffers() -> None:
    """Drop this thread's buffers (e.g. a long-lived dask worker thread after a task)."""
    _local.buffers = None
