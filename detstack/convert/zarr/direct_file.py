"""Stored objects written past the page cache (``O_DIRECT``), from a small aligned buffer.

A buffered write copies every encoded byte into the page cache, and the kernel later
writes it out: measured on raw AGIPD (``benchmarks/bench_paths.py``, part ``zwrite``),
that copy was 12-15 % of ``to_zarr``'s CPU, the largest cost after the compressor, and a
long conversion fills the page cache with a store nobody reads while evicting the run
it reads. With ``O_DIRECT`` the disk reads the bytes from our memory: each encoded
chunk is copied once into one of this thread's two staging buffers (4 MiB each,
cache-resident) and whole blocks of it go to the file, written by a writer thread while
the other buffer fills; the end is padded to a block and cut back with ``ftruncate``.
The bytes on disk are the same.

File systems without direct I/O (tmpfs, some FUSE and overlay mounts) refuse the flag
at ``open``; a file whose ``write`` refuses aligned blocks drops the flag and goes on
buffered. ``DETSTACK_DIRECT_WRITES=0`` turns it off (then every object is buffered).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

BLOCK = 4096                    # alignment of address, offset and length (any device's)
STAGE_BYTES = 4 << 20           # one of a thread's two staging buffers: a direct write's unit
_local = threading.local()


def enabled() -> bool:
    """Whether local chunk objects are written with ``O_DIRECT`` (the default on Linux)."""
    return hasattr(os, "O_DIRECT") and os.environ.get("DETSTACK_DIRECT_WRITES", "1") != "0"


def _take_stages() -> list[np.ndarray]:
    """Two staging buffers, page-aligned (``mmap``): this thread's, reused across objects,
    unless an object still open in this thread holds them (then new ones)."""
    bufs = getattr(_local, "stages", None)
    _local.stages = None
    if bufs is None:
        # private: ``mmap(-1, n)`` alone is MAP_SHARED, and a forked worker (``runners``)
        # would write into the very buffers of its parent and of its siblings
        flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        bufs = [np.frombuffer(mmap.mmap(-1, STAGE_BYTES + BLOCK, flags=flags) if flags else
                              mmap.mmap(-1, STAGE_BYTES + BLOCK), np.uint8) for _ in range(2)]
    return bufs


def _give_back(bufs: list[np.ndarray]) -> None:
    _local.stages = bufs


def open_direct(path: str) -> int | None:
    """``path`` created or truncated for direct writing, or None where the file system
    does not support it."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


class DirectFile:
    """Appends pieces to a file opened by ``open_direct``; ``reserve(end)`` is called
    before each write that extends the file to ``end`` (block reservation).

    A direct write returns once the disk has the bytes (~2 ms per 4 MiB here, 30 ms per
    shard): a full staging buffer is written by a writer thread while the caller fills
    the other one and encodes on. At most one write is in flight; its error is raised
    by the next ``write`` or by ``close``, which waits for it.
    """

    def __init__(self, fd: int, path: str, reserve: Callable[[int], None]) -> None:
        self.fd = fd
        self.path = path
        self.reserve = reserve
        self.stages = _take_stages()
        self.stage = self.stages[0]     # the one being filled (numpy: copies release the GIL)
        self.staged = 0             # bytes in the staging buffer, not yet written
        self.written = 0            # bytes given to the file (whole blocks, until closed)
        self.size = 0               # bytes appended
        self.writer: ThreadPoolExecutor | None = None
        self.pending: Future[None] | None = None

    def write(self, parts: list[Any]) -> int:
        """Append ``parts`` (bytes-like pieces, in order); returns the bytes appended."""
        n = 0
        for part in parts:
            # numpy's copy, not a memoryview's: that one holds the GIL (measured: ~10 % of
            # a conversion's wall time, the other threads waiting)
            view = np.frombuffer(part, np.uint8)
            pos = 0
            while pos < view.nbytes:
                k = min(view.nbytes - pos, STAGE_BYTES - self.staged)
                self.stage[self.staged:self.staged + k] = view[pos:pos + k]
                self.staged += k
                pos += k
                if self.staged == STAGE_BYTES:
                    self._flush()
            n += view.nbytes
        self.size += n
        return n

    def _flush(self, last: bool = False) -> None:
        """Hand the staged whole blocks to the writer (``last``: everything, padded to a
        block, written by this thread) and go on in the other buffer."""
        whole = self.staged // BLOCK * BLOCK
        tail = self.staged - whole
        if last and tail:
            pad = BLOCK - tail
            self.stage[self.staged:self.staged + pad] = 0
            whole, tail = whole + BLOCK, 0
        self._wait()
        if not whole:
            return
        self.reserve(self.written + whole)
        full, offset = self.stage, self.written
        if last:
            self._write_all(full[:whole], offset)
        else:
            if self.writer is None:
                self.writer = ThreadPoolExecutor(1, thread_name_prefix="direct-write")
            self.pending = self.writer.submit(self._write_all, full[:whole], offset)
            self.stage = self.stages[1] if full is self.stages[0] else self.stages[0]
        self.written += whole
        if tail:
            self.stage[:tail] = full[whole:whole + tail]
        self.staged = tail

    def _wait(self) -> None:
        """Wait for the write in flight; its error is raised here."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def _write_all(self, view: np.ndarray, offset: int) -> None:
        done = 0
        while done < view.nbytes:
            done += self._write(view[done:], offset + done)

    def _write(self, view: np.ndarray, offset: int) -> int:
        try:
            n = os.pwrite(self.fd, view, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # the device wants a larger alignment: the rest of this file goes buffered
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
            n = os.pwrite(self.fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "the file system accepted no bytes", self.path)
        return n

    def close(self) -> None:
        """Write what is staged and cut the file to the bytes appended (reserved blocks
        and the last block's padding go)."""
        try:
            self._flush(last=True)
            os.ftruncate(self.fd, self.size)
        finally:
            try:
                self._wait()            # (after an error: no write may outlive the file)
            finally:
                if self.writer is not None:
                    self.writer.shutdown()
                os.close(self.fd)
                _give_back(self.stages)
