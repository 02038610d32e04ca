"""Where the bytes of each dataset row live inside an HDF5 file.

For uncompressed datasets whose chunks hold whole rows (or contiguous ones),
a block of rows is a few plain byte ranges of the file. Readers can then copy
them with ``os.preadv`` straight into the output array, outside HDF5's global
lock, so threads really run in parallel; the manifest writer reuses the same
facts as chunk references.
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
        offsets = self.chunk_offsets[c0:c1 + 1]
        if (offsets < 0).any():
            return None
        pieces: list[tuple[int, int]] = []
        row = start
        end = start + count
        for c, base in zip(range(c0, c1 + 1), offsets.tolist(), strict=True):
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
