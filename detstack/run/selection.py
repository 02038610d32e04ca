"""Train and pulse selections: ``by_id[...]``, ``by_index[...]`` and plain indexing."""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


def _index_repr(value: Any) -> str:
    """One indexing element written as it is typed: ``2:10:2``, ``...``, ``[1, 2]``."""
    if value is Ellipsis:
        return "..."
    if isinstance(value, slice):
        start = "" if value.start is None else value.start
        stop = "" if value.stop is None else value.stop
        step = "" if value.step is None else f":{value.step}"
        return f"{start}:{stop}{step}"
    return repr(value)


@dataclass(frozen=True, repr=False)
class _Selector:
    value: Any

    def __repr__(self) -> str:
        parts = self.value if isinstance(self.value, tuple) else (self.value,)
        name = "by_id" if isinstance(self, ById) else "by_index"
        return f"{name}[{', '.join(_index_repr(v) for v in parts)}]"


@dataclass(frozen=True, repr=False)
class ById(_Selector):
    """Select by train (or pulse) ID."""


@dataclass(frozen=True, repr=False)
class ByIndex(_Selector):
    """Select by position."""


class _Maker:
    def __init__(self, cls: type) -> None:
        self._cls = cls

    def __getitem__(self, value: Any) -> Any:
        return self._cls(value)

    def __repr__(self) -> str:
        return f"by_{'id' if self._cls is ById else 'index'}"


by_id = _Maker(ById)
by_index = _Maker(ByIndex)


def select_train_ids(train_ids: np.ndarray, sel: Any) -> np.ndarray:
    """Apply a train selection to a sorted train-ID array, returning the kept IDs.

    The result is always sorted and free of repeats, whatever the order or step asked
    for: a collection's train list stays ascending.
    """
    tids = np.asarray(train_ids, dtype=np.uint64)
    return np.unique(_select(tids, sel))


def _select(tids: np.ndarray, sel: Any) -> np.ndarray:
    if isinstance(sel, ById):
        return _select_by_id(tids, sel.value)
    if isinstance(sel, ByIndex):
        sel = sel.value
    if _is_xarray(sel):
        mask = np.asarray(sel)
        if mask.dtype != bool:
            raise TypeError(f"An xarray train selection must be boolean, not {mask.dtype}")
        return _select_by_id(tids, np.asarray(sel.coords["trainId"].values)[mask])
    if isinstance(sel, slice):
        return tids[sel]
    if isinstance(sel, (int, np.integer)):
        return tids[[int(sel)]]
    arr = np.asarray(sel)
    if arr.dtype == bool:
        if arr.shape != tids.shape:
            raise ValueError(f"Boolean train selection has length {arr.shape}, "
                             f"but there are {len(tids)} trains")
        return tids[arr]
    if arr.dtype.kind in "iu" or (arr.size == 0 and arr.ndim == 1):
        return tids[arr.ravel().astype(np.intp)]
    raise TypeError(f"Cannot select trains with {type(sel).__name__}: use a slice, int, "
                    "list/array of positions, boolean mask, by_id[...] or by_index[...]")


def _select_by_id(tids: np.ndarray, value: Any) -> np.ndarray:
    if isinstance(value, slice):
        start, stop = (None if v is None else _train_id(v, name)
                       for v, name in ((value.start, "start"), (value.stop, "stop")))
        i0 = 0 if start is None else int(np.searchsorted(tids, np.uint64(start)))
        i1 = len(tids) if stop is None else int(np.searchsorted(tids, np.uint64(stop)))
        result = tids[i0:i1:value.step]
        if not len(result) and len(tids):
            first, last = int(tids[0]), int(tids[-1])
            if start is not None and start > last:
                msg = f"by_id start {start} is after the last train ({last})"
            elif stop is not None and stop <= first:
                msg = f"by_id stop {stop} is at or before the first train ({first})"
            else:
                msg = f"by_id[{start}:{stop}] matches none of the trains ({first}-{last})"
            warnings.warn(f"{msg}; nothing selected", stacklevel=5)
        return result
    wanted = np.atleast_1d(np.asarray(value))
    if not wanted.size:
        return tids[:0]
    if wanted.dtype.kind not in "iu":
        raise TypeError(f"by_id needs integer train IDs, not {wanted.dtype}")
    if wanted.min() < 0:
        raise ValueError(f"by_id got negative train ID {int(wanted.min())}: train IDs are positive")
    result = np.intersect1d(tids, wanted.astype(np.uint64))
    if not len(result):
        warnings.warn(f"None of the {wanted.size} requested train IDs are in the data",
                      stacklevel=5)
    return result


def _train_id(value: Any, what: str) -> int:
    try:
        tid = operator.index(value)
    except TypeError:
        raise TypeError(f"by_id slice {what} must be an integer train ID, "
                        f"not {type(value).__name__}") from None
    if tid < 0:
        raise ValueError(f"by_id slice {what} {tid} is negative: train IDs are positive")
    return tid


def _is_xarray(obj: Any) -> bool:
    return hasattr(obj, "coords") and hasattr(obj, "dims") and "trainId" in getattr(obj, "coords", {})
