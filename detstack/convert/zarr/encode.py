"""Encode stored objects of a zarr conversion with as few copies as the codecs allow.

A conversion task turns each shard's source rows into encoded inner chunks; what is
not encoding is overhead, kept small here:

* buffers are reused per thread (``buffers``): a task's slab of source rows, and the
  transposed inner chunk, which stays in the CPU cache for the compressor;
* a shard is written as its list of encoded chunks and index (``os.writev``), never
  joined into one buffer.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from .layout import EMPTY, ArrayLayout, shard_index

Parts = list[Any]    # bytes-like pieces of one stored object, in order
PREALLOCATE = True   # reserve a shard's blocks before writing it (see _preallocate)


def shard_parts(unit: np.ndarray, valid: np.ndarray, lay: ArrayLayout,
                encode: Callable[[np.ndarray], Parts]) -> Parts:
    """One shard from its values ``unit`` (the unit shape, module axis first): its encoded
    inner chunks and index, as pieces to write in order.

    ``valid`` (trains[, frames]) marks entries that have source rows; inner chunks
    without any are left out of the shard (they read as the fill value). ``encode``
    gives each inner chunk as its pieces (``chunk_encoder(..., parts=True)``).
    """
    grid = tuple(u // c for u, c in zip(lay.unit, lay.chunk, strict=True))
    index = np.full(grid + (2,), EMPTY, np.uint64)
    parts: Parts = []
    offset = 0
    for pos in np.ndindex(*grid):
        sel = tuple(slice(p * c, (p + 1) * c) for p, c in zip(pos, lay.chunk, strict=True))
        if not valid[sel[1:1 + valid.ndim]].any():
            continue
        pieces = encode(unit[sel])
        n = sum(memoryview(p).nbytes for p in pieces)
        index[pos] = (offset, n)
        parts.extend(pieces)
        offset += n
    parts.append(shard_index(index))
    return parts


PREALLOCATE_BYTES = 1 << 20     # files from this size on get their blocks in one call
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@lru_cache(maxsize=1)
def _fallocate() -> Callable[[int, int], int] | None:
    """Linux ``fallocate(fd, 0, 0, n)`` (None elsewhere): unlike ``os.posix_fallocate``
    it never falls back to writing zeros on file systems that cannot reserve blocks."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return lambda fd, nbytes: 0 if fn(fd, 0, 0, nbytes) == 0 else ctypes.get_errno()


def _preallocate(fd: int, nbytes: int, path: str) -> None:
    """Reserve a shard's blocks before writing it: ext4 then maps them in one call instead
    of page by page as the write goes (measured: about half the CPU of writing a 64 MiB
    shard into the page cache), and a full disk fails here, before any byte is written.
    File systems that cannot reserve blocks are written as before."""
    fallocate = _fallocate()
    if fallocate is None or nbytes < PREALLOCATE_BYTES:
        return
    err = fallocate(fd, nbytes)
    if err in _NO_SPACE:
        raise OSError(err, os.strerror(err), path)


def write_parts(path: str, parts: Parts) -> None:
    """Write ``parts`` as the whole content of the file ``path`` (created or truncated)."""
    iov_max = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        views = [memoryview(p).cast("B") for p in parts]
        if PREALLOCATE:
            _preallocate(fd, sum(v.nbytes for v in views), path)
        i = 0
        while i < len(views):
            n = os.writev(fd, views[i:i + iov_max])
            if n == 0 and any(v.nbytes for v in views[i:]):
                raise OSError(errno.EIO, f"{path}: the file system accepted no bytes")
            while i < len(views) and n >= views[i].nbytes:     # whole pieces written
                n -= views[i].nbytes
                i += 1
            if n:                                              # a short write mid-piece
                views[i] = views[i][n:]
    finally:
        os.close(fd)
