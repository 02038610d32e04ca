"""Encode stored objects of a zarr conversion with as few copies as the codecs allow.

A conversion task turns each shard's source rows into encoded inner chunks; what is
not encoding is overhead, kept small here:

* buffers are reused per thread (``buffers``): a task's slab of source rows, and the
  transposed inner chunk, which stays in the CPU cache for the compressor;
* a shard is written as its list of encoded chunks and index (``os.writev``), never
  joined into one buffer; the default layout's shards are written chunk by chunk as
  they are encoded (``ObjectFile``), while each chunk is still in the CPU's cache;
* large objects go to disk past the page cache where the file system allows it
  (``direct_file``): no copy into the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from . import direct_file
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


PREALLOCATE_BYTES = 1 << 20     # files from this size on get their blocks reserved
RESERVE_AHEAD = 8 << 20         # a streamed object reserves this much beyond its end
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


def _preallocate(fd: int, nbytes: int, path: str) -> bool:
    """Reserve the file's first ``nbytes`` blocks (the file grows to that size): ext4
    then maps them in one call instead of page by page as the write goes (measured:
    about half the CPU of writing a 64 MiB shard into the page cache), and a full disk
    fails here, before the bytes are written. False on file systems that cannot
    reserve blocks (they are written as before)."""
    fallocate = _fallocate()
    if fallocate is None:
        return False
    err = fallocate(fd, nbytes)
    if err in _NO_SPACE:
        raise OSError(err, os.strerror(err), path)
    return err == 0


class ObjectFile:
    """A stored object written to a local file piece by piece, as its inner chunks are
    encoded (created or truncated; ``close`` cuts off the blocks reserved beyond the end).

    Each encoded chunk goes to the page cache straight from the compressor, while it is
    still in the CPU's cache: copying a whole shard's chunks at the end (64 MiB, long
    evicted to memory) cost 2-5x the system time (``benchmarks/bench_paths.py``,
    part ``zwrite``). ``ahead``: bytes reserved beyond what is written each time the
    reservation runs out (0: exactly what each ``write`` needs). ``direct``: write past
    the page cache where the file system allows it (``direct_file``); ``settle_later``:
    ``close`` leaves the direct writes' end to the writer thread (the object is whole once
    ``direct_file.settle()`` returns in this thread).
    """

    def __init__(self, path: str, ahead: int = RESERVE_AHEAD, direct: bool = True,
                 settle_later: bool = False) -> None:
        self.path = path
        self.ahead = ahead
        self.settle_later = settle_later
        self.size = 0                       # bytes written
        self.reserved = 0 if PREALLOCATE else -1    # -1: no reserving
        fd = direct_file.open_direct(path) if direct and direct_file.enabled() else None
        self.direct = None if fd is None else direct_file.DirectFile(fd, path, self._reserve)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666) \
            if fd is None else fd

    def _reserve(self, end: int) -> None:
        """Reserve blocks up to ``end`` + ``ahead`` when ``end`` passes the reservation."""
        if 0 <= self.reserved < end and end >= PREALLOCATE_BYTES:
            want = end + self.ahead
            self.reserved = want if _preallocate(self.fd, want, self.path) else -1

    def write(self, parts: Parts) -> int:
        """Append ``parts`` (bytes-like pieces, in order); returns the bytes written."""
        with direct_file.naming(self.path):
            if self.direct is not None:
                return self.direct.write(parts)
            views = [memoryview(p).cast("B") for p in parts]
            n = sum(v.nbytes for v in views)
            self._reserve(self.size + n)
            _writev_all(self.fd, views, self.path)
            self.size += n
            return n

    def close(self) -> None:
        with direct_file.naming(self.path):
            if self.direct is not None:
                self.direct.close(wait=not self.settle_later)
                return
            try:
                if self.reserved > self.size:
                    os.ftruncate(self.fd, self.size)
            finally:
                os.close(self.fd)

    def __enter__(self) -> ObjectFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _writev_all(fd: int, views: list[memoryview], path: str) -> None:
    """Write every byte of ``views`` at the file offset (short writes continued)."""
    iov_max = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i:i + iov_max])
        if n == 0 and any(v.nbytes for v in views[i:]):
            raise OSError(errno.EIO, "the file system accepted no bytes", path)
        while i < len(views) and n >= views[i].nbytes:     # whole pieces written
            n -= views[i].nbytes
            i += 1
        if n:                                              # a short write mid-piece
            views[i] = views[i][n:]


def write_parts(path: str, parts: Parts) -> None:
    """Write ``parts`` as the whole content of the file ``path`` (created or truncated);
    small objects go through the page cache (a direct write would wait on the disk)."""
    nbytes = sum(memoryview(p).nbytes for p in parts)
    with ObjectFile(path, ahead=0, direct=nbytes >= PREALLOCATE_BYTES) as f:
        f.write(parts)
