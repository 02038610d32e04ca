"""Where one (source, index group) keeps each selected train across the files of a run,
and a small cache of those tables."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# tables kept (the most recent): a detector's frame maps need 16 sources x 4 groups of
# them once each, and keeping all kept 128 bytes per (module, train) for good; at most
# TABLE_CACHE_BYTES of them, so that long runs keep fewer (32 bytes per train each)
TABLE_CACHE = 8
TABLE_CACHE_BYTES = 2 << 20


@dataclass(frozen=True)
class SourceTable:
    """Where one (source, index group) keeps each selected train, sorted by train ID.

    ``file`` indexes ``DataCollection.files``; rows ``first:first+count`` of the
    group's datasets in that file belong to ``train_ids[i]``.
    """

    train_ids: np.ndarray
    file: np.ndarray
    first: np.ndarray
    count: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.train_ids, self.file, self.first, self.count))

    def counts_for(self, train_ids: np.ndarray) -> np.ndarray:
        """Entry count per requested train (0 where the source has none)."""
        out = np.zeros(len(train_ids), dtype=np.uint64)
        pos = np.searchsorted(self.train_ids, train_ids)
        pos = np.minimum(pos, max(len(self.train_ids) - 1, 0))
        hit = (self.train_ids[pos] == train_ids) if len(self.train_ids) else np.zeros(len(train_ids), bool)
        out[hit] = self.count[pos[hit]]
        return out


def build_table(files: Sequence[Any], file_numbers: Sequence[int], source: str, group: str,
                usable: Callable[[Any], np.ndarray],
                selected: Callable[[np.ndarray], np.ndarray]) -> SourceTable:
    """The table of (source, group) over the ``usable`` and ``selected`` trains of
    ``files`` (numbered ``file_numbers`` in the collection)."""
    tids, file_no, first, count = [], [], [], []
    for i, f in zip(file_numbers, files, strict=True):
        idx = f.index(source, group)
        keep = usable(f) & selected(f.train_ids)
        tids.append(f.train_ids[keep])
        file_no.append(np.full(int(keep.sum()), i, dtype=np.int64))
        first.append(idx.first[keep])
        count.append(idx.count[keep])
    t = np.concatenate(tids)
    order = np.argsort(t, kind="stable")
    return SourceTable(t[order], np.concatenate(file_no)[order],
                       np.concatenate(first)[order], np.concatenate(count)[order])


class TableCache:
    """The ``TABLE_CACHE`` most recently used tables of a collection, at most ``nbytes``
    of them (the latest is always kept)."""

    def __init__(self, size: int = TABLE_CACHE, nbytes: int = TABLE_CACHE_BYTES) -> None:
        self.size = size
        self.max_bytes = nbytes
        self._tables: OrderedDict[tuple[str, str], SourceTable] = OrderedDict()

    def get(self, key: tuple[str, str], build: Callable[[], SourceTable]) -> SourceTable:
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = build()
            held = sum(t.nbytes for t in self._tables.values())
            while len(self._tables) > 1 and (len(self._tables) > self.size
                                             or held > self.max_bytes):
                _, old = self._tables.popitem(last=False)
                held -= old.nbytes
        else:
            self._tables.move_to_end(key)
        return table

    def __len__(self) -> int:
        return len(self._tables)
