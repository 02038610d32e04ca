"""Train and pulse selections: ``by_id[...]``, ``by_index[...]`` and plain indexing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ById:
    """Select by train (or pulse) ID."""

    value: Any


@dataclass(frozen=True)
class ByIndex:
    """Select by position."""

    value: Any


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
    """Apply a train selection to a sorted train-ID array, returning the kept IDs."""
    tids = np.asarray(train_ids, dtype=np.uint64)
    if isinstance(sel, ById):
        return _select_by_id(tids, sel.value)
    if isinstance(sel, ByIndex):
        sel = sel.value
    if _is_xarray(sel):
        return _select_by_id(tids, np.asarray(sel.coords["trainId"].values)[np.asarray(sel)])
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
    if arr.dtype.kind in "iu":
        return np.sort(tids[arr.ravel()])
    raise TypeError(f"Cannot select trains with {type(sel).__name__}: use a slice, int, "
                    "list/array of positions, boolean mask, by_id[...] or by_index[...]")


def _select_by_id(tids: np.ndarray, value: Any) -> np.ndarray:
    if isinstance(value, slice):
        start, stop = value.start, value.stop
        for name, v in (("start", start), ("stop", stop)):
            if v is not None and int(v) < 0:
                raise ValueError(f"by_id slice {name} {v} is negative: train IDs are positive")
        i0 = 0 if start is None else int(np.searchsorted(tids, np.uint64(start)))
        i1 = len(tids) if stop is None else int(np.searchsorted(tids, np.uint64(stop)))
        result = tids[i0:i1:value.step]
        if not len(result) and len(tids):
            if start is not None and int(start) > int(tids[-1]):
                warnings.warn(f"Train ID {start} is after the end of the data "
                              f"(last train {int(tids[-1])}); nothing selected", stacklevel=4)
            elif stop is not None and int(stop) <= int(tids[0]):
                warnings.warn(f"Train ID {stop} is before the start of the data "
                              f"(first train {int(tids[0])}); nothing selected", stacklevel=4)
            else:
                warnings.warn("No trains selected", stacklevel=4)
        return result
    wanted = np.atleast_1d(np.asarray(value))
    if wanted.dtype.kind not in "iu":
        raise TypeError(f"by_id needs integer train IDs, not {wanted.dtype}")
    if wanted.size and wanted.min() < 0:
        raise ValueError(f"by_id got negative train ID {int(wanted.min())}: train IDs are positive")
    result = np.intersect1d(tids, wanted.astype(np.uint64))
    if not len(result):
        warnings.warn(f"None of the {wanted.size} requested train IDs are in the data",
                      stacklevel=4)
    return result


def _is_xarray(obj: Any) -> bool:
    return hasattr(obj, "coords") and hasattr(obj, "dims") and "trainId" in getattr(obj, "coords", {})
