"""Read compressed HDF5 chunks in parallel: fetch bytes with ``pread``, decode in threads.

The frame map says which rows go where; this module turns that into one job per
stored chunk (a chunk needed by several blocks of rows is decoded once), each of
which reads the chunk's bytes and decodes them outside HDF5's global lock. A chunk
that cannot be decoded is a ``CorruptChunkError`` naming module, file, dataset and
train, never zeros.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ..errors import CorruptChunkError
from ..layout import ChunkTable, chunk_table
from .deflate import DECODABLE, ChunkDecodeError, ChunkDecoder

Describe = Callable[[int], str]   # source row -> "module 3 (source ...), train 10004"

DAMAGED_HINT = ("The file is damaged: copy it again from the archive, or leave this module "
                "out (modules=[...])")


def corrupt_chunk(path: str, dset: str, rows: tuple[int, int], where: str,
                  reason: str) -> CorruptChunkError:
    return CorruptChunkError(path, f"dataset {dset}, rows {rows[0]}-{rows[1] - 1} ({where}) "
                             f"cannot be read: {reason}", DAMAGED_HINT)


@dataclass
class _Source:
    """One dataset whose chunks we decode ourselves."""

    path: str
    dset: str
    table: ChunkTable
    decoder: ChunkDecoder
    dtype: np.dtype
    fill: Any


@dataclass
class _Target:
    lo: int                 # first row inside the chunk
    hi: int
    dest: np.ndarray        # output rows (the first one receives chunk row ``lo``)
    src_index: tuple[Any, ...]
    whole_rows: bool        # ``src_index`` keeps every byte of a row


@dataclass
class _ChunkJob:
    source: _Source
    chunk: int
    describe: Describe
    targets: list[_Target] = field(default_factory=list)


def _plain_slices(src_index: tuple[Any, ...]) -> bool:
    return all(isinstance(i, slice) and (i.step or 1) > 0 for i in src_index)


class CompressedReader:
    """Collects chunk jobs for filtered datasets we can decode; runs them in a pool."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str], _Source | None] = {}
        self._jobs: dict[tuple[str, str, int], _ChunkJob] = {}
        self._fds: dict[str, int] = {}

    def source(self, path: str, dset: str, ds: h5py.Dataset, out_dtype: np.dtype,
               src_index: tuple[Any, ...]) -> _Source | None:
        """The dataset as a source of decodable chunks, or None (leave it to HDF5)."""
        if not _plain_slices(src_index) or out_dtype.kind not in "iufb":
            return None
        key = (path, dset)
        if key not in self._sources:
            table = chunk_table(ds) if isinstance(ds, h5py.Dataset) else None
            src = None
            if table is not None and table.filters in DECODABLE and table.filters:
                nbytes = ds.dtype.itemsize * int(np.prod(table.chunk_shape, dtype=np.int64))
                decoder = ChunkDecoder(table.filters, nbytes, ds.dtype.itemsize)
                fill = ds.fillvalue if ds.fillvalue is not None else 0
                src = _Source(path, dset, table, decoder, ds.dtype, fill)
            self._sources[key] = src
        return self._sources[key]

    def plan(self, src: _Source, start: int, count: int, dest: np.ndarray,
             src_index: tuple[Any, ...], whole_rows: bool, describe: Describe) -> None:
        """Rows ``start:start+count`` of ``src`` into ``dest`` (``count`` rows);
        ``whole_rows``: ``src_index`` selects every element of a row."""
        k = src.table.rows_per_chunk
        for c in src.table.chunks_of(start, count):
            lo, hi = max(start, c * k), min(start + count, (c + 1) * k)
            job = self._jobs.get((src.path, src.dset, c))
            if job is None:
                job = self._jobs[(src.path, src.dset, c)] = _ChunkJob(src, c, describe)
            job.targets.append(_Target(lo - c * k, hi - c * k, dest[lo - start:hi - start],
                                       src_index, whole_rows))

    def jobs(self) -> list[Callable[[], None]]:
        return [lambda job=job: self._run(job) for job in self._jobs.values()]

    def clear(self) -> None:
        """Forget the planned jobs (files stay open for the next plan)."""
        self._jobs.clear()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def open_files(self) -> None:
        """Open every file once, before the jobs run in threads."""
        for job in self._jobs.values():
            if job.source.path not in self._fds:
                self._fds[job.source.path] = os.open(job.source.path, os.O_RDONLY)

    def _run(self, job: _ChunkJob) -> None:
        src, c = job.source, job.chunk
        table = src.table
        k = table.rows_per_chunk
        offset, size = int(table.offsets[c]), int(table.sizes[c])
        if offset < 0:             # never written: HDF5 reads the dataset's fill value
            for t in job.targets:
                t.dest[...] = src.fill
            return
        raw = os.pread(self._fds[src.path], size, offset)
        try:
            if len(raw) != size:
                raise ChunkDecodeError(f"the file ends inside it (byte {offset + len(raw)}, "
                                       "the file is truncated)")
            first_target = job.targets[0]
            if (len(job.targets) == 1 and first_target.whole_rows
                    and first_target.dest.dtype == src.dtype
                    and first_target.dest.flags.c_contiguous
                    and first_target.dest.nbytes == src.decoder.nbytes):
                src.decoder.decode(raw, int(table.masks[c]), first_target.dest)
                return      # decoded straight into the output
            tmp = np.empty(table.chunk_shape, src.dtype)
            src.decoder.decode(raw, int(table.masks[c]), tmp)
        except ChunkDecodeError as exc:
            rows = (c * k, min((c + 1) * k, table.n_rows))
            first = c * k + min(t.lo for t in job.targets)
            raise corrupt_chunk(src.path, src.dset, rows, job.describe(first), str(exc)) from None
        for t in job.targets:
            part = tmp[t.lo:t.hi][(slice(None),) + t.src_index]
            if np.can_cast(src.dtype, t.dest.dtype, "safe"):
                t.dest[...] = part
            else:
                t.dest[...] = hdf5_convert(part, t.dest.dtype)


def hdf5_convert(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` as ``dtype`` the way HDF5 converts on read (saturating, NaN -> 0), so
    results do not depend on who decoded the chunk."""
    n = values.size
    buf = np.empty(n * max(values.itemsize, dtype.itemsize), np.uint8)
    buf[:values.nbytes] = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    h5py.h5t.convert(h5py.h5t.py_create(values.dtype), h5py.h5t.py_create(dtype), n, buf)
    return buf[:n * dtype.itemsize].view(dtype).reshape(values.shape)
