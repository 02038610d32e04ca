"""Where the bytes of each dataset row live inside an HDF5 file.

For uncompressed datasets whose chunks hold whole rows (or contiguous ones),
a block of rows is a few plain byte ranges of the file. Readers can then copy
them with ``os.preadv`` straight into the output array, outside HDF5's global
lock, so threads really run in parallel; the manifest writer reuses the same
facts as chunk references. For filtered (compressed) datasets the same facts,
one byte range and filter mask per chunk (``chunk_table``), let readers fetch
and decode chunks in parallel outside HDF5 too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import h5py
import numpy as np


@dataclass(frozen=True)
class RowLayout:
    """Byte location of rows of one dataset: ``rows_per_chunk`` rows per stored chunk."""

    row_bytes: int
    rows_per_chunk: int
    chunk_offsets: np.ndarray   # file offset of chunk i, -1 where not allocated
    n_rows: int

    def extents(self, start: int, count: int) -> list[tuple[int, int]] | None:
        """(file offset, nbytes) pieces covering rows [start, start+count), merged
        where adjacent; None if any needed chunk is unallocated."""
        if count <= 0:
            return []
        if start + count > self.n_rows:
            return None
        k = self.rows_per_chunk
        c0, c1 = start // k, (start + count - 1) // k
        offsets = self.chunk_offsets[c0:c1 + 1].tolist()
        if min(offsets) < 0:
            return None
        pieces: list[tuple[int, int]] = []
        row = start
        end = start + count
        for c, base in zip(range(c0, c1 + 1), offsets, strict=True):
            lo = max(row, c * k)
            hi = min(end, (c + 1) * k)
            off = base + (lo - c * k) * self.row_bytes
            n = (hi - lo) * self.row_bytes
            if pieces and pieces[-1][0] + pieces[-1][1] == off:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + n)
            else:
                pieces.append((off, n))
            row = hi
        return pieces


def _native(dtype: np.dtype) -> bool:
    order = dtype.byteorder
    return order in ("=", "|") or (order == "<") == (sys.byteorder == "little")


def row_layout(ds: h5py.Dataset) -> RowLayout | None:
    """The byte layout of ``ds`` rows, or None when rows are not plain byte ranges
    (filters, partial-row chunks, non-native or non-numeric dtypes, external storage)."""
    if not ds.shape or ds.dtype.kind not in "iufb" or not _native(ds.dtype):
        return None
    dcpl = ds.id.get_create_plist()
    if dcpl.get_nfilters() or dcpl.get_external_count():
        return None
    if ds.is_virtual:
        return None
    row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64))
    n_rows = ds.shape[0]
    if ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is None:
            return None
        return RowLayout(row_bytes, max(n_rows, 1), np.array([offset], np.int64), n_rows)
    if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
        return None
    k = ds.chunks[0]
    n_chunks = -(-n_rows // k)
    offsets = np.full(n_chunks, -1, np.int64)

    def visit(info: h5py.h5d.StoreInfo) -> None:
        i = info.chunk_offset[0] // k
        if i < n_chunks:
            offsets[i] = info.byte_offset

    ds.id.chunk_iter(visit)
    return RowLayout(row_bytes, k, offsets, n_rows)


@dataclass(frozen=True)
class ChunkTable:
    """Stored chunks of a dataset whose chunks hold whole rows, in row order."""

    rows_per_chunk: int
    chunk_shape: tuple[int, ...]
    offsets: np.ndarray      # (n_chunks,) file offset; -1 where not allocated
    sizes: np.ndarray        # (n_chunks,) stored bytes
    masks: np.ndarray        # (n_chunks,) HDF5 filter mask (bit i set: filter i skipped)
    filters: tuple[int, ...]  # HDF5 filter IDs in pipeline (write) order
    n_rows: int

    def chunks_of(self, start: int, count: int) -> range:
        """Chunk numbers holding rows [start, start+count)."""
        k = self.rows_per_chunk
        return range(start // k, (start + count - 1) // k + 1) if count > 0 else range(0)


def chunk_table(ds: h5py.Dataset) -> ChunkTable | None:
    """Where each chunk of ``ds`` is stored, or None when chunks do not hold whole
    rows (or the data is virtual, external, contiguous or of a non-numeric dtype)."""
    if (not ds.shape or ds.chunks is None or ds.is_virtual or ds.dtype.kind not in "iufb"
            or not _native(ds.dtype) or tuple(ds.chunks[1:]) != tuple(ds.shape[1:])):
        return None
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count():
        return None
    filters = tuple(int(dcpl.get_filter(i)[0]) for i in range(dcpl.get_nfilters()))
    k = ds.chunks[0]
    n_chunks = -(-ds.shape[0] // k)
    offsets = np.full(n_chunks, -1, np.int64)
    sizes = np.zeros(n_chunks, np.int64)
    masks = np.zeros(n_chunks, np.int64)

    def visit(info: h5py.h5d.StoreInfo) -> None:
        i = info.chunk_offset[0] // k
        if i < n_chunks:
            offsets[i], sizes[i], masks[i] = info.byte_offset, info.size, info.filter_mask

    ds.id.chunk_iter(visit)
    return ChunkTable(k, tuple(ds.chunks), offsets, sizes, masks, filters, ds.shape[0])
