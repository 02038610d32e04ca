"""Stored objects written past the page cache (``O_DIRECT``), from small aligned buffers.

A buffered write copies every encoded byte into the page cache, and the kernel later
writes it out: measured on raw AGIPD (``benchmarks/bench_paths.py``, part ``zwrite``),
that copy was 12-15 % of ``to_zarr``'s CPU, the largest cost after the compressor, and a
long conversion fills the page cache with a store nobody reads while evicting the run
it reads. With ``O_DIRECT`` the disk reads the bytes from our memory: each encoded
chunk is copied once into one of this thread's staging buffers (4 MiB each, in huge
pages) and whole blocks of it go to the file, written in order by this thread's writer
thread while the next buffer fills; the end is padded to a block and cut back with
``ftruncate``. The bytes on disk are the same.

A direct write returns once the disk has the bytes (2-5 ms per 4 MiB here, but a
virtual disk stalls now and then for tens of ms): with ``STAGES`` buffers, up to
``STAGES - 1`` writes are in flight (with two, the workers waited 2-12 % of a
conversion on the disk's stalls). An object closed with ``wait=False`` is finished by
the writer (its last block, ``ftruncate``, ``close``) while the thread encodes the
next one; ``settle()`` waits for all of this thread's writes. A write's error (naming
its file) is raised by the call that waits for it: a later ``write`` or ``close``, or
``settle``.

File systems without direct I/O (tmpfs, some FUSE and overlay mounts) refuse the flag
at ``open``; a file whose ``write`` refuses aligned blocks drops the flag and goes on
buffered. ``DETSTACK_DIRECT_WRITES=0`` turns it off (then every object is buffered).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

BLOCK = 4096                    # alignment of address, offset and length (any device's)
STAGE_BYTES = 4 << 20           # one staging buffer: a direct write's unit
STAGES = 6                      # staging buffers per thread (24 MiB)
HUGE_PAGE = 2 << 20             # a transparent huge page (x86-64, arm64 with 4 KiB pages)
_local = threading.local()


def enabled() -> bool:
    """Whether local chunk objects are written with ``O_DIRECT`` (the default on Linux)."""
    return hasattr(os, "O_DIRECT") and os.environ.get("DETSTACK_DIRECT_WRITES", "1") != "0"


def open_direct(path: str) -> int | None:
    """``path`` created or truncated for direct writing, or None where the file system
    does not support it."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """OS errors of the block (a full disk, a quota) name the file ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, path) from None


def settle() -> None:
    """Wait for every direct write this thread handed to its writer (objects closed with
    ``wait=False`` are then whole on disk); the first error is raised."""
    stages = getattr(_local, "stages", None)
    if stages is not None and stages.pid == os.getpid():
        stages.settle()


class _Stages:
    """A thread's staging buffers and the writer thread that writes them in order.

    Buffers are taken by the thread's open objects in turn; a buffer handed to the
    writer comes back once its write is done. A forked process makes its own (the
    parent's writer thread does not exist there, and its buffers are the parent's)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.free = [_new_stage() for _ in range(STAGES)]
        self.pending: deque[tuple[Future[None], np.ndarray | None]] = deque()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="direct-write")

    def take(self) -> np.ndarray:
        """A free buffer: the oldest write's once it is done, if none is free."""
        while not self.free and self.pending:
            self._retire()
        return self.free.pop() if self.free else _new_stage()

    def submit(self, job: Callable[[], None], buffer: np.ndarray | None) -> None:
        """``job`` to the writer; ``buffer`` (what it writes from) is free when it is done."""
        self.pending.append((self.writer.submit(job), buffer))

    def settle(self) -> None:
        """Wait for every write; the first error is raised once all are done."""
        first: BaseException | None = None
        while self.pending:
            try:
                self._retire()
            except BaseException as exc:  # noqa: BLE001 - the first one is raised below
                first = first or exc
        if first is not None:
            raise first

    def _retire(self) -> None:
        future, buffer = self.pending.popleft()
        try:
            future.result()
        finally:
            if buffer is not None:
                self.free.append(buffer)


def _stages() -> _Stages:
    stages: _Stages | None = getattr(_local, "stages", None)
    if stages is None or stages.pid != os.getpid():
        stages = _local.stages = _Stages()
    return stages


def _new_stage() -> np.ndarray:
    """One staging buffer (a block more than a write: the last one's padding)."""
    return _huge_buffer(STAGE_BYTES + BLOCK)


def _huge_buffer(nbytes: int) -> np.ndarray:
    """``nbytes`` of private anonymous memory in transparent huge pages where the kernel
    allows them (``madvise``), aligned to one.

    The kernel pins a direct write's source pages and hands the device one segment per
    physically contiguous piece: from 4 KiB pages a 4 MiB write is 1024 pins and is split
    into several requests (virtio-blk takes 254 segments), from 2 MiB pages it is two.
    Measured here (KVM, virtio): 0.12-0.15 s of system time per GB written from 4 KiB
    pages, 0.03 s from huge pages, and twice the throughput."""
    # private: ``mmap(-1, n)`` alone is MAP_SHARED, and a forked worker (``runners``)
    # would write into the very buffers of its parent and of its siblings
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    room = nbytes + HUGE_PAGE
    memory = mmap.mmap(-1, room, flags=flags) if flags else mmap.mmap(-1, room)
    whole = np.frombuffer(memory, np.uint8)
    start = -whole.ctypes.data % HUGE_PAGE
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            memory.madvise(advice, start, room - start)
        except OSError:
            pass            # (a kernel without transparent huge pages: 4 KiB pages)
    return whole[start:start + nbytes]


class DirectFile:
    """Appends pieces to a file opened by ``open_direct``; ``reserve(end)`` is called
    before each write that extends the file to ``end`` (block reservation)."""

    def __init__(self, fd: int, path: str, reserve: Callable[[int], None]) -> None:
        self.fd = fd
        self.path = path
        self.reserve = reserve
        self.stages = _stages()
        # the buffer being filled (numpy: copies release the GIL); None once closed
        self.stage: np.ndarray | None = self.stages.take()
        self.staged = 0             # bytes in the staging buffer, not yet written
        self.written = 0            # bytes given to the file (whole blocks, until closed)
        self.size = 0               # bytes appended

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
        block, and no next buffer) and go on in a free buffer."""
        whole = self.staged // BLOCK * BLOCK
        tail = self.staged - whole
        if last and tail:
            pad = BLOCK - tail
            self.stage[self.staged:self.staged + pad] = 0
            whole, tail = whole + BLOCK, 0
        full, offset = self.stage, self.written
        self.stage, self.staged = None, 0
        if not whole:
            self.stages.free.append(full)
            return
        try:
            self.reserve(offset + whole)
        except BaseException:
            self.stages.free.append(full)
            raise
        self.written += whole
        self.stages.submit(lambda: self._write_all(full[:whole], offset), full)
        if last:
            return
        stage = self.stages.take()
        if tail:
            stage[:tail] = full[whole:whole + tail]     # (not part of the write in flight)
        self.stage, self.staged = stage, tail

    def _write_all(self, view: np.ndarray, offset: int) -> None:
        with naming(self.path):
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

    def close(self, wait: bool = True) -> None:
        """Write what is staged and cut the file to the bytes appended (reserved blocks
        and the last block's padding go), then close it; ``wait=False``: the writer does
        that after the writes before it, and ``settle`` waits for it."""
        try:
            if self.stage is not None:
                self._flush(last=True)
        finally:
            # (after an error too: the file is closed once no write of it is in flight)
            self.stages.submit(self._finish, None)
        if wait:
            self.stages.settle()

    def _finish(self) -> None:
        try:
            with naming(self.path):
                os.ftruncate(self.fd, self.size)
        finally:
            os.close(self.fd)
