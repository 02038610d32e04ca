"""The chunk references of one referenced key, module by module, window by window.

A module's references cover one contiguous range of the view's chunk grid (its slot),
so modules are independent tasks: a writer can build them in parallel, each task
streaming into its own record files. Within a module the references are built a window
of trains at a time (``WINDOW_TRAINS``, cut where a new source file starts, so each
file's chunk index is read once): memory depends on the window, not on the run.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..chunk_index import AHEAD, TablesAhead
from ..plan import KeyPlan, ViewPlan
from .holes import index_ranges
from .refs import (
    RefBatch,
    Rows,
    chunk_table,
    concat,
    dataset,
    key_rows,
    row_groups,
    url_numbers,
)
from .storage import Storage, UnsupportedKeyError, same_fill

WINDOW_TRAINS = 1024   # trains per window (cut at file starts): ~4 sequence files


@dataclass
class KeyReferences:
    """How to build the references of ``kp``: its checked storages (one per source
    dataset), the HDF5 chunk shape, and the url number of every file."""

    plan: ViewPlan
    kp: KeyPlan
    storages: dict[tuple[int, int], Storage]
    chunk: tuple[int, ...]
    url_of: dict[Path, int]
    unallocated: list[list[int]]    # the spec's holes (filled by a full stream)
    last_chunk: int                 # raveled index of the array's last chunk
    fill_ref: RefBatch | None = None  # its reference if no chunk is there (the sidecar's)

    @functools.cached_property
    def urls(self) -> dict[int, int]:
        """Frame-map file index -> url number (each path resolved once)."""
        return url_numbers(self.plan.frame_map(self.kp), self.url_of)

    @property
    def entry_grid(self) -> tuple[int, ...]:
        return tuple(-(-e // c) for e, c in zip(self.kp.entry_shape, self.chunk, strict=True))

    def modules(self) -> list[int]:
        """Frame-map modules in the order of their slots (the chunk grid's order)."""
        return np.argsort(self.plan.slots, kind="stable").tolist()

    def span(self, m: int) -> tuple[int, int]:
        """[start, stop) of the raveled chunk indices module ``m``'s references lie in."""
        slot = np.array([self.plan.slots[m]], np.int64)
        n_trains = len(self.plan.train_ids)
        start, stop = (int(self.plan.view_rows(self.kp, slot, np.array([t]),
                                                 np.zeros(1, np.int64))[0])
                       for t in (0, n_trains))
        n_e = math.prod(self.entry_grid)
        return start * n_e, stop * n_e

    def windows(self, m: int) -> list[tuple[int, int]]:
        """Train windows of module ``m`` holding data, each starting where a file starts
        (a window longer than 4x ``WINDOW_TRAINS`` is cut inside a file)."""
        fmap = self.plan.frame_map(self.kp)
        present = np.flatnonzero(fmap.counts[m] > 0)
        if not len(present):
            return []
        files = fmap.file[m, present]
        starts = present[np.flatnonzero(np.diff(files)) + 1].tolist()
        cuts = [int(present[0])]
        for t in starts + [int(present[-1]) + 1]:
            while t - cuts[-1] > 4 * WINDOW_TRAINS:
                cuts.append(cuts[-1] + WINDOW_TRAINS)
            if t - cuts[-1] >= WINDOW_TRAINS or t == int(present[-1]) + 1:
                cuts.append(t)
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    def _groups(self, m: int) -> Iterator[tuple[int, Rows, int, int, np.ndarray]]:
        """(window number, its rows, file index, module index, positions) of every source
        dataset of module ``m``, in the order the references are built."""
        for w, (t0, t1) in enumerate(self.windows(m)):
            rows, _ = key_rows(self.plan, self.kp, [m], (t0, t1))
            for fi, mi, sel in row_groups(rows):
                yield w, rows, fi, mi, sel

    def batches(self, m: int, holes: list[list[int]]) -> Iterator[RefBatch]:
        """Module ``m``'s references, window by window in chunk order; ``holes`` receives
        the chunks the counts promise but the files never allocated (holes.py). The chunk
        indexes of the next few datasets are read while one is used (``TablesAhead``)."""
        fmap = self.plan.frame_map(self.kp)
        groups = self._groups(m)
        ahead = TablesAhead()
        queue: collections.deque[tuple[tuple[int, Rows, int, int, np.ndarray],
                                       h5py.Dataset]] = collections.deque()

        def announce() -> None:
            while len(queue) <= AHEAD:
                group = next(groups, None)
                if group is None:
                    return
                ds = dataset(fmap, group[2], group[3], self.kp.key)
                if self.storages[group[2], group[3]].contiguous_offset is None:
                    ahead.add(ds)
                queue.append((group, ds))

        parts: list[RefBatch] = []
        window = -1
        try:
            announce()
            while queue:
                (w, rows, fi, mi, sel), ds = queue.popleft()
                announce()
                if w != window and parts:
                    yield concat(parts)
                    parts = []
                window = w
                if not ds.id.valid:   # its file was closed by the pool of open files
                    ds = dataset(fmap, fi, mi, self.kp.key)
                part = self._references(rows, fi, mi, sel, ds, holes, ahead)
                if part is not None:
                    parts.append(part)
            if parts:
                yield concat(parts)
        finally:
            ahead.close()

    def _references(self, rows: Rows, fi: int, mi: int, sel: np.ndarray, ds: h5py.Dataset,
                    holes: list[list[int]], ahead: TablesAhead) -> RefBatch | None:
        """The references of the rows ``sel`` of one source dataset."""
        kp = self.kp
        entry_grid = self.entry_grid
        n_e = math.prod(entry_grid)
        part_bytes = kp.dtype.itemsize * math.prod(self.chunk)
        st = self.storages[fi, mi]
        src = rows.src_row[sel]
        k = st.rows_per_chunk
        n_row_chunks = -(-ds.shape[0] // k) if ds.shape[0] else 0
        table = ahead.next(ds) if st.contiguous_offset is None else None
        if len(src) and int(src.max()) >= ds.shape[0]:
            raise UnsupportedKeyError(kp.key, f"INDEX of {ds.file.filename} points "
                                      f"past the end of {ds.name}")
        t_off, t_size, t_mask = chunk_table(ds, k, bool(st.filters), st.contiguous_offset,
                                            entry_grid, n_row_chunks, table)
        rc, within = src // k, src % k
        off = t_off[rc]                             # (n rows, n_e)
        if st.filters:
            size = t_size[rc]
            if (t_mask[rc][off >= 0] != 0).any():
                raise UnsupportedKeyError(kp.key, f"some chunks of {ds.file.filename}:"
                                          f"{ds.name} skip HDF5 filters (filter_mask != 0)")
        else:
            off = np.where(off >= 0, off + (within * part_bytes)[:, None], -1)
            size = np.full(off.shape, part_bytes, np.int64)
        have = off >= 0
        cidx = rows.view_row[sel][:, None] * n_e + np.arange(n_e)[None, :]
        url = self.urls[fi]
        if have.all():   # every chunk allocated (the usual case): no selection
            return RefBatch(cidx.ravel(), np.full(cidx.size, url, np.int32), off.ravel(),
                            size.ravel())
        if not same_fill(ds, kp):
            raise UnsupportedKeyError(kp.key, f"rows of {ds.file.filename}:{ds.name} are not "
                                      f"allocated and read as {ds.fillvalue!r}, not the "
                                      f"view's fill value {kp.fill_value!r}")
        holes += index_ranges(cidx[~have])
        return RefBatch(cidx[have], np.full(int(have.sum()), url, np.int32), off[have],
                        size[have])

    def __call__(self) -> Iterator[RefBatch]:
        """Every reference of the key in chunk order, module by module (bounded memory),
        then ``fill_ref`` if the last chunk has none; the holes are in ``unallocated``
        once the stream ends."""
        self.unallocated.clear()
        top = -1
        for m in self.modules():
            for batch in self.batches(m, self.unallocated):
                if len(batch):
                    top = int(batch.index[-1])
                yield batch
        if self.fill_ref is not None and top < self.last_chunk:
            yield self.fill_ref
