"""The frame map: where every (module, train) of one detector keeps its rows.

It is the one intermediate representation of detstack: scanning a run builds
it once, and every reader and writer works from it instead of the files' own
indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

ROWS_DTYPES = (np.uint32, np.uint64)   # counts and first of a scanned map: the first that fits
ROWS_LIMIT = int(np.iinfo(np.uint32).max)
FILE_DTYPE = np.int32


@dataclass(frozen=True)
class Run:
    """A maximal block of rows that is contiguous in one file and in the output."""

    file: int
    src_start: int
    dst_start: int
    length: int


def shared(array: np.ndarray, pool: list[np.ndarray]) -> np.ndarray:
    """An array of ``pool`` equal to ``array`` (same dtype, shape and values), else
    ``array``, added to ``pool``; either way read-only, as shared arrays must be."""
    for other in pool:
        if other is array or (other.dtype == array.dtype and other.shape == array.shape
                              and np.array_equal(other, array)):
            return other
    array.flags.writeable = False
    pool.append(array)
    return array


@dataclass(frozen=True)
class FrameMap:
    """Rows of one index group for each module and train.

    ``counts[m, t]`` rows of module ``m`` for train ``t`` start at row
    ``first[m, t]`` of file ``file[m, t]`` (``-1``: the module has no data).
    Within a train every module with data holds the same number of rows.
    """

    sources: tuple[str, ...]
    modules: np.ndarray      # (M,) module numbers
    train_ids: np.ndarray    # (T,) uint64
    counts: np.ndarray       # (M, T) unsigned (uint32 where rows fit, else uint64)
    file: np.ndarray         # (M, T) signed (int32 from a scan)
    first: np.ndarray        # (M, T) unsigned, like counts (first + count fits)
    files: tuple[Any, ...]   # RunFile-like: .h5, .path, .dataset_path(source, key)

    @classmethod
    def from_tables(cls, sources: list[str], modules: list[int], train_ids: np.ndarray,
                    tables: Iterable[Any], files: list[Any]) -> FrameMap:
        """Align per-source index tables (sorted by train ID) to ``train_ids`` (an
        iterable: each table may be dropped once aligned). The arrays are read-only.

        The (module, train) arrays are the map's memory, and a long run's: uint32 rows
        and int32 file numbers (12 bytes per pair, not 24) whenever every ``first +
        count`` fits, else uint64 (``ROWS_DTYPES``). Convert to int64 before arithmetic
        that could leave that range (row offsets times bytes...)."""
        tids = np.asarray(train_ids, dtype=np.uint64)
        shape = (len(sources), len(tids))
        counts = np.zeros(shape, ROWS_DTYPES[0])
        file = np.full(shape, -1, FILE_DTYPE if len(files) < 2**31 else np.int64)
        first = np.zeros(shape, ROWS_DTYPES[0])
        for m, table in enumerate(tables):
            pos = np.searchsorted(tids, table.train_ids)
            ok = pos < len(tids)
            ok[ok] = tids[pos[ok]] == table.train_ids[ok]
            ok &= table.count > 0
            c, f = table.count[ok], table.first[ok]
            if len(c) and counts.dtype != np.uint64 and \
                    int((f.astype(np.uint64) + c.astype(np.uint64)).max()) > ROWS_LIMIT:
                counts, first = counts.astype(np.uint64), first.astype(np.uint64)
            counts[m, pos[ok]] = c
            file[m, pos[ok]] = table.file[ok]
            first[m, pos[ok]] = f
        for a in (counts, file, first):
            a.flags.writeable = False
        return cls(tuple(sources), np.asarray(modules), tids, counts, file, first, tuple(files))

    # -- derived per-train facts ---------------------------------------------

    @property
    def n_modules(self) -> int:
        return len(self.sources)

    @property
    def present(self) -> np.ndarray:
        """(M, T) True where a module has rows for a train."""
        return self.counts > 0

    def train_counts(self) -> np.ndarray:
        """Rows per train (the same for every module that has the train)."""
        if not self.n_modules:
            return np.zeros(len(self.train_ids), np.uint64)
        return self.counts.max(axis=0).astype(np.uint64, copy=False)

    def inconsistent_train(self) -> tuple[int, set[int]] | None:
        """The first train whose modules disagree on the row count, if any."""
        nz = np.where(self.present, self.counts, self.train_counts()[None, :])
        bad = np.flatnonzero((nz != self.train_counts()[None, :]).any(axis=0))
        if not len(bad):
            return None
        t = int(bad[0])
        return int(self.train_ids[t]), {int(c) for c in self.counts[:, t] if c}

    def offsets(self, per_train: bool = False) -> np.ndarray:
        """(T+1,) first output row of each train; ``per_train``: one row per train."""
        if per_train:
            return np.arange(len(self.train_ids) + 1, dtype=np.int64)
        return np.concatenate([[0], np.cumsum(self.train_counts(), dtype=np.int64)])

    def n_frames(self) -> int:
        return int(self.train_counts().sum())

    def train_ids_perframe(self) -> np.ndarray:
        return np.repeat(self.train_ids, self.train_counts().astype(np.int64))

    # -- sharing ---------------------------------------------------------------

    def sharing(self, others: Iterable[FrameMap]) -> FrameMap:
        """This map with each (module, train) array that equals one of ``others`` replaced
        by that array (read-only): the index groups of a detector mostly agree (every
        per-train group has the same counts and rows, and all groups the same files), so a
        detector keeps each distinct array once, not once per group."""
        pool = [a for o in others for a in (o.counts, o.file, o.first)]
        return replace(self, counts=shared(self.counts, pool), file=shared(self.file, pool),
                       first=shared(self.first, pool))

    # -- selections -----------------------------------------------------------

    def select_trains(self, keep: np.ndarray,
                      memo: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> FrameMap:
        """Keep the trains where ``keep`` (bool over trains) is True; ``memo`` (shared by
        the maps of one detector) selects an array they share only once."""
        keep = np.asarray(keep)
        if keep.dtype == bool and len(keep) == len(self.train_ids) and keep.all():
            return self
        memo = {} if memo is None else memo

        def pick(a: np.ndarray) -> np.ndarray:
            hit = memo.get(id(a))
            if hit is None or hit[0] is not a:
                picked = a[:, keep]
                picked.flags.writeable = False
                hit = memo[id(a)] = (a, picked)
            return hit[1]
        return replace(self, train_ids=self.train_ids[keep], counts=pick(self.counts),
                       file=pick(self.file), first=pick(self.first))

    def select_modules(self, rows: list[int]) -> FrameMap:
        return replace(self, sources=tuple(self.sources[r] for r in rows),
                       modules=self.modules[rows], counts=self.counts[rows],
                       file=self.file[rows], first=self.first[rows])

    # -- reading plans --------------------------------------------------------

    def frame_sources(self, m: int, per_train: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per output row: (file index or -1, source row) for module ``m``.

        ``per_train`` maps only the first row of each train, one output row per
        train (keys with one entry per train).
        """
        offsets = self.offsets(per_train)
        n = int(offsets[-1])
        file = np.full(n, -1, np.int64)
        row = np.zeros(n, np.int64)
        c = self.counts[m].astype(np.int64)
        if per_train:
            c = np.minimum(c, 1)
        have = np.flatnonzero(c)
        if len(have):
            lengths = c[have]
            starts = np.repeat(offsets[:-1][have], lengths)
            within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            frames = starts + within
            file[frames] = np.repeat(self.file[m, have], lengths)
            row[frames] = np.repeat(self.first[m, have].astype(np.int64), lengths) + within
        return file, row

    def runs(self, m: int, selected: np.ndarray | None = None,
             per_train: bool = False) -> list[Run]:
        """Blocks to copy for module ``m``; destination rows count selected rows only."""
        file, row = self.frame_sources(m, per_train)
        if selected is None:
            frames = np.flatnonzero(file >= 0)
            dst = frames
        else:
            rank = np.cumsum(selected) - 1
            frames = np.flatnonzero((file >= 0) & selected)
            dst = rank[frames]
        if not len(frames):
            return []
        f, r = file[frames], row[frames]
        breaks = np.flatnonzero((np.diff(dst) != 1) | (np.diff(r) != 1) | (np.diff(f) != 0)) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(frames)]])
        return [Run(int(f[s]), int(r[s]), int(dst[s]), int(e - s)) for s, e in zip(starts, ends, strict=True)]
