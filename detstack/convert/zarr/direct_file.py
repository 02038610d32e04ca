"""Stored objects written past the page cache (``O_DIRECT``), from a small aligned buffer.

A buffered write copies every encoded byte into the page cache, and the kernel later
writes it out: measured on raw AGIPD (``benchmarks/bench_paths.py``, part ``zwrite``),
that copy was 12-15 % of ``to_zarr``'s CPU, the largest cost after the compressor, and a
long conversion fills the page cache with a store nobody reads while evicting the run
it reads. With ``O_DIRECT`` the disk reads the bytes from our memory: each encoded
chunk is copied once into this thread's staging buffer (a few MiB, cache-resident) and
whole blocks of it go to the file; the end is padded to a block and cut back with
``ftruncate``. The bytes on disk are the same.

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
from typing import Any

BLOCK = 4096                    # alignment of address, offset and length (any device's)
STAGE_BYTES = 4 << 20           # staging buffer per thread: the unit of a direct write
_local = threading.local()


def enabled() -> bool:
    """Whether local chunk objects are written with ``O_DIRECT`` (the default on Linux)."""
    return hasattr(os, "O_DIRECT") and os.environ.get("DETSTACK_DIRECT_WRITES", "1") != "0"


def _take_stage() -> memoryview:
    """A staging buffer, page-aligned (``mmap``): this thread's, reused across objects,
    unless an object still open in this thread holds it (then a new one)."""
    buf = getattr(_local, "stage", None)
    _local.stage = None
    return buf if buf is not None else memoryview(mmap.mmap(-1, STAGE_BYTES + BLOCK))


def _give_back(buf: memoryview) -> None:
    _local.stage = buf


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
    before each write that extends the file to ``end`` (block reservation)."""

    def __init__(self, fd: int, path: str, reserve: Callable[[int], None]) -> None:
        self.fd = fd
        self.path = path
        self.reserve = reserve
        self.stage = _take_stage()
        self.staged = 0             # bytes in the staging buffer, not yet written
        self.written = 0            # bytes in the file (whole blocks, until closed)
        self.size = 0               # bytes appended

    def write(self, parts: list[Any]) -> int:
        """Append ``parts`` (bytes-like pieces, in order); returns the bytes appended."""
        n = 0
        for part in parts:
            view = memoryview(part).cast("B")
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
        """Write the staged whole blocks (``last``: everything, padded to a block)."""
        whole = self.staged // BLOCK * BLOCK
        tail = self.staged - whole
        if last and tail:
            pad = BLOCK - tail
            self.stage[self.staged:self.staged + pad] = bytes(pad)
            whole, tail = whole + BLOCK, 0
        if not whole:
            return
        self.reserve(self.written + whole)
        view, done = self.stage[:whole], 0
        while done < whole:
            done += self._write(view[done:])
        self.written += whole
        if tail:
            self.stage[:tail] = self.stage[whole:whole + tail]
        self.staged = tail

    def _write(self, view: memoryview) -> int:
        try:
            n = os.write(self.fd, view)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # the device wants a larger alignment: the rest of this file goes buffered
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
            n = os.write(self.fd, view)
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
            os.close(self.fd)
            _give_back(self.stage)
