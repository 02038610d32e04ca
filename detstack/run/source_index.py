"""The index of one (source, index group) in one file, kept compact.

A run of 30,000 trains holds one index per (module file, group): as two uint64 arrays
that is 16-32 bytes per (module, train) for good, more than the frame map itself. Almost
every DAQ index is regular (the same count every train, rows back to back), so it is kept
as three numbers; any other index as arrays in the smallest unsigned type that holds
its values. ``first`` and ``count`` are built as uint64 when asked for (a file's worth,
a few KB): callers see exactly the arrays that were read.
"""

from __future__ import annotations

import numpy as np

from ..frames import shared

_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


def compact(values: np.ndarray) -> np.ndarray:
    """``values`` (non-negative integers) in the smallest unsigned dtype holding them,
    read-only."""
    values = np.asarray(values)
    if values.size and values.dtype.kind != "u" and int(values.min()) < 0:
        raise ValueError(f"index values must not be negative (found {int(values.min())})")
    top = int(values.max()) if values.size else 0
    dtype = next(t for t in _UNSIGNED if top <= np.iinfo(t).max)
    out = values.astype(dtype)
    out.flags.writeable = False
    return out


class SourceIndex:
    """first/count of one (source, index group), one entry per train of the file.

    Regular indexes (count ``c`` every train, ``first[i] == first[0] + i * c``) are kept
    as ``(first[0], c, n)``, others as compact arrays; equal to the arrays given.
    """

    __slots__ = ("_count", "_first", "_n", "_start", "_step")

    def __init__(self, first: np.ndarray, count: np.ndarray) -> None:
        first = np.asarray(first)
        count = np.asarray(count)
        if first.shape != count.shape or first.ndim != 1:
            raise ValueError(f"first {first.shape} and count {count.shape} must be 1-D of "
                             "one length")
        self._n = len(first)
        self._first: np.ndarray | None = None
        self._count: np.ndarray | None = None
        self._start = self._step = 0
        if self._n and _regular(first, count):
            self._start, self._step = int(first[0]), int(count[0])
        else:
            self._first, self._count = compact(first), compact(count)

    @property
    def first(self) -> np.ndarray:
        """(n,) uint64 first row of each train."""
        if self._first is not None:
            return self._first.astype(np.uint64)
        return np.arange(self._n, dtype=np.uint64) * np.uint64(self._step) + np.uint64(self._start)

    @property
    def count(self) -> np.ndarray:
        """(n,) uint64 rows of each train."""
        if self._count is not None:
            return self._count.astype(np.uint64)
        return np.full(self._n, self._step, dtype=np.uint64)

    @classmethod
    def regular(cls, start: int, step: int, n: int) -> SourceIndex:
        """The regular index of ``n`` trains: ``step`` rows each from row ``start``."""
        out = cls.__new__(cls)
        out._n, out._start, out._step = int(n), int(start), int(step)
        out._first = out._count = None
        return out

    @property
    def form(self) -> tuple[int, int] | None:
        """(first row, rows per train) of a regular index, else None."""
        return None if self._first is not None else (self._start, self._step)

    def __len__(self) -> int:
        return self._n

    def nbytes(self) -> int:
        """Bytes of the arrays kept (0 for a regular index)."""
        return sum(a.nbytes for a in (self._first, self._count) if a is not None)

    def share(self, pool: list[np.ndarray]) -> SourceIndex:
        """This index with its arrays replaced by equal ones of ``pool`` (added to it
        otherwise): the per-train groups of a source (header, trailer...) agree."""
        if self._first is not None and self._count is not None:
            self._first = shared(self._first, pool)
            self._count = shared(self._count, pool)
        return self


def _regular(first: np.ndarray, count: np.ndarray) -> bool:
    """Same count every train, rows back to back, values within uint64 arithmetic."""
    c = int(count[0])
    start = int(first[0])
    if start + c * len(first) >= 2**63 or not (count == count[0]).all():
        return False
    expected = np.arange(len(first), dtype=np.uint64) * np.uint64(c) + np.uint64(start)
    return bool((first.astype(np.uint64) == expected).all())
