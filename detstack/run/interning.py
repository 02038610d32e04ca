"""Equal per-file facts held once: a source's keys are the same in each of its files.

A 30,000-train AGIPD-1M run has 120 sequence files per module, and each file's dict of
keys (shape, dtype) and of HDF5 paths would otherwise be a copy: megabytes that grow with
run length. Dicts are shared only when their keys and values are equal and every dtype is
a plain number or byte type (compared exactly by ``dtype.str``); the table keeps the most
recently used ones, so it is bounded whatever the runs opened. Shared dicts must not be
changed: the files only read them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
SIZE = 256


def plain(dtype: np.dtype) -> bool:
    """Is a dtype described exactly by its ``.str`` (numbers, fixed bytes; no h5py
    metadata, no fields)?"""
    return dtype.kind in "biufcS" and dtype.fields is None and dtype.metadata is None \
        and dtype.subdtype is None


class Interner:
    """The ``SIZE`` most recently interned values, by a key describing them exactly."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, value: T) -> T:
        """The value interned under ``key``, else ``value`` (interned now)."""
        have = self._values.get(key)
        if have is not None:
            self._values.move_to_end(key)
            return have
        self._values[key] = value
        while len(self._values) > self.size:
            self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)


_TABLE = Interner()

Keys = dict[str, tuple[tuple[int, ...], np.dtype]]


def keys(value: Keys) -> Keys:
    """``value`` or an equal dict of keys seen before (see module docstring)."""
    if not all(plain(np.dtype(dt)) for _, dt in value.values()):
        return value
    key = ("keys",) + tuple((k, tuple(int(n) for n in shape), np.dtype(dt).str)
                            for k, (shape, dt) in value.items())
    return _TABLE.get(key, value)


def paths(value: dict[str, str]) -> dict[str, str]:
    """``value`` or an equal dict of HDF5 paths seen before."""
    return _TABLE.get(("paths",) + tuple(value.items()), value)


def names(value: frozenset[str]) -> frozenset[str]:
    """A set of source names, or an equal one seen before."""
    return _TABLE.get(("names", value), value)
