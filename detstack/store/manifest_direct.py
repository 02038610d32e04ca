"""Read a local Parquet manifest's arrays ourselves, the way the HDF5 readers read runs.

zarr-python reads each selection through its asyncio pipeline and fsspec's lazy
reference mapper, which loads (pandas) a 100,000-reference record file per chunk
it misses: seconds for one frame of a 30,000-train run. For a basic selection
(integers and step-1 slices) ``DirectReader`` looks the touched chunks' references
up in the record files (``manifest_records``), reads their bytes through the
manifest's ``SourceGuard`` (listed files only, checked descriptors, inside stored
data) and decodes them with the array's own numcodecs codecs. Every check of
the zarr path stays: a chunk without a reference goes through the same
``on_absent`` refusal (promised data is never fill), and a chunk that cannot be
decoded is the same typed error. Other selections, other orders and inline
records are read by zarr.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DetstackError, FileFormatError
from .manifest_records import ParquetRecords

Hints = Callable[[tuple[int, ...]], tuple[str, ...]]
Offset = Callable[[tuple[int, ...]], tuple[int, ...] | None]


class _Remote(Exception):
    """A reference to a remote object: zarr reads those (asynchronously)."""


def _axes(index: Any, shape: tuple[int, ...]) -> list[tuple[int, int, bool]] | None:
    """(start, stop, keep axis) per axis of a basic index, or None if not basic."""
    if not isinstance(index, tuple):
        index = (index,)
    if sum(i is Ellipsis for i in index) > 1:
        return None
    if any(i is Ellipsis for i in index):
        k = next(n for n, i in enumerate(index) if i is Ellipsis)
        index = index[:k] + (slice(None),) * (len(shape) - len(index) + 1) + index[k + 1:]
    if len(index) > len(shape):
        return None
    index = index + (slice(None),) * (len(shape) - len(index))
    out = []
    for idx, n in zip(index, shape, strict=True):
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
            i = int(idx) + (n if idx < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(idx)} is out of bounds for an axis of size {n}")
            out.append((i, i + 1, False))
        elif isinstance(idx, slice):
            start, stop, step = idx.indices(n)
            if step != 1:
                return None
            out.append((start, max(start, stop), True))
        else:
            return None
    return out


class DirectReader:
    """Basic selections of one zarr v2 array of a local Parquet manifest."""

    def __init__(self, array: Any, records: ParquetRecords, fs: Any,
                 corrupt: Callable[[tuple[int, ...], Exception], Exception],
                 hints: Hints, at: Offset | None = None) -> None:
        meta = array.metadata
        self.hints = hints
        self.at = at
        self.array = array
        self.name = array.path
        self.records = records
        self.fs = fs
        self.corrupt = corrupt
        self.shape = tuple(int(s) for s in array.shape)
        self.chunks = tuple(int(c) for c in meta.chunks)
        self.grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))
        self.dtype = np.dtype(array.dtype)
        self.codecs = ([meta.compressor] if meta.compressor is not None else []) + \
            list(reversed(meta.filters or ()))
        self.fill = np.asarray(array.fill_value if array.fill_value is not None else 0,
                               self.dtype) if self.dtype.kind != "V" else None
        self.nbytes = int(np.prod(self.chunks)) * self.dtype.itemsize

    @classmethod
    def make(cls, array: Any, records: ParquetRecords | None, fs: Any,
             corrupt: Callable[[tuple[int, ...], Exception], Exception],
             hints: Hints, at: Offset | None = None) -> DirectReader | None:
        """A reader for ``array``, or None where zarr must read it. ``corrupt``: the
        typed error of a chunk that cannot be decoded; ``hints``: the source datasets a
        chunk probably lies in (found first by the guard); ``at``: where the chunk
        starts in the first of them, where that is known."""
        meta = getattr(array, "metadata", None)
        if records is None or getattr(meta, "zarr_format", None) != 2 or meta.order != "C" \
                or np.dtype(array.dtype).hasobject:
            return None
        return cls(array, records, fs, corrupt, hints, at)

    def read(self, index: Any) -> np.ndarray | None:
        """The selection, or None if zarr must read it (not a basic index, inline data)."""
        axes = _axes(index, self.shape)
        if axes is None:
            return None
        lo = [a // c for (a, _, _), c in zip(axes, self.chunks, strict=True)]
        hi = [-(-b // c) for (_, b, _), c in zip(axes, self.chunks, strict=True)]
        out = np.empty(tuple(b - a for a, b, _ in axes), self.dtype)
        coords = list(itertools.product(*(range(a, b) for a, b in zip(lo, hi, strict=True))))
        if out.size == 0:
            return out[tuple(slice(None) if keep else 0 for _, _, keep in axes)]
        flat = np.ravel_multi_index(np.array(coords, np.int64).T, self.grid) if coords else []
        refs = self.records.lookup(self.name, np.asarray(flat))
        if refs is None:
            return None
        try:
            for chunk, ref in zip(coords, refs, strict=True):
                self._place(out, axes, chunk, ref)
        except _Remote:
            return None
        return out[tuple(slice(None) if keep else 0 for _, _, keep in axes)]

    def _place(self, out: np.ndarray, axes: list[tuple[int, int, bool]],
               chunk: tuple[int, ...], ref: tuple[str, int, int] | None) -> None:
        """Decode one chunk into its part of ``out``."""
        src, dst = [], []
        for (a, b, _), i, c in zip(axes, chunk, self.chunks, strict=True):
            c0 = i * c
            s, e = max(a, c0), min(b, c0 + c)
            src.append(slice(s - c0, e - c0))
            dst.append(slice(s - a, e - a))
        if ref is None:
            key = f"{self.name}/{'.'.join(map(str, chunk))}"
            self.fs.on_absent(key)      # MissingDataError if the counts promise rows
            if self.fill is None:
                raise FileFormatError(self.fs.view, f"chunk {key} has no reference and its "
                                      "structured dtype no fill value zarr would use",
                                      "Write the manifest again")
            out[tuple(dst)] = self.fill
            return
        url, offset, size = ref
        loc = self.fs.resolve(url)
        if "://" in loc:
            raise _Remote(loc)
        data: Any = self.fs.read_source(f"{self.name}/{'.'.join(map(str, chunk))}", loc,
                                        offset, offset + size, self.hints(chunk),
                                        self.at(chunk) if self.at else None)
        try:
            for codec in self.codecs:
                data = codec.decode(data)
            values = np.frombuffer(memoryview(data).cast("B"), self.dtype)
            if values.nbytes != self.nbytes:
                raise ValueError(f"decoded to {values.nbytes} bytes, not {self.nbytes}")
        except DetstackError:
            raise
        except Exception as exc:  # noqa: BLE001 - codecs raise anything; named by corrupt
            raise self.corrupt(chunk, exc) from None
        out[tuple(dst)] = values.reshape(self.chunks)[tuple(src)]
