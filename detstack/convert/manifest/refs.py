"""Chunk references of one key, built module by module in bounded memory.

A 30 000-train AGIPD-1M run has about 30 million chunks per pixel key. The references
are built per module (about 2 million), in the order of the view's chunk grid, so a
writer can stream them into bounded record files: memory depends on the length of a
module's data, never on holding the whole key. Each source dataset's chunk index is read
once, in bulk (``chunk_index``); everything per row is vectorised.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import DetstackError
from ..chunk_index import ChunkTable
from ..chunk_index import chunk_table as chunk_index_table
from ..plan import KeyPlan, ViewPlan


@dataclass(frozen=True)
class RefBatch:
    """References of some chunks: raveled chunk-grid index (ascending), url number,
    byte offset and size."""

    index: np.ndarray
    url: np.ndarray
    offset: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Rows:
    """Stored rows of one key, with their place in the view and in the files."""

    view_row: np.ndarray   # flat index over the view's leading axes (ViewPlan.view_rows)
    fmap_file: np.ndarray  # index into the frame map's files
    module: np.ndarray     # index into the frame map's sources
    src_row: np.ndarray


def key_rows(plan: ViewPlan, kp: KeyPlan, modules: list[int] | None = None,
             trains: tuple[int, int] | None = None) -> tuple[Rows, Any]:
    """The rows of ``kp`` (of the frame-map modules ``modules`` and the trains
    ``trains[0]:trains[1]`` only, if given)."""
    fmap = plan.frame_map(kp)
    mods = (np.arange(len(fmap.counts)) if modules is None
            else np.unique(np.asarray(modules, np.int64)))
    t0, t1 = (0, fmap.counts.shape[1]) if trains is None else trains
    counts = fmap.counts[mods, t0:t1].astype(np.int64)   # only the block asked for
    if not kp.per_frame:
        counts = np.minimum(counts, 1)
    mi, ti = np.nonzero(counts)
    c = counts[mi, ti]
    m, t = mods[mi], ti + t0
    within = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
    slots = np.asarray(plan.slots, np.int64)[m]
    view_row = plan.view_rows(kp, np.repeat(slots, c), np.repeat(t, c), within)
    rows = Rows(view_row, np.repeat(fmap.file[m, t], c), np.repeat(m, c),
                np.repeat(fmap.first[m, t].astype(np.int64), c) + within)
    return rows, fmap


def row_groups(rows: Rows) -> Iterator[tuple[int, int, np.ndarray]]:
    """(file index, module index, positions) for each source dataset holding rows."""
    pair = rows.fmap_file * (int(rows.module.max(initial=0)) + 1) + rows.module
    order = np.argsort(pair, kind="stable")
    bounds = np.flatnonzero(np.diff(pair[order])) + 1
    for sel in np.split(order, bounds):
        if len(sel):
            yield int(rows.fmap_file[sel[0]]), int(rows.module[sel[0]]), sel


def source_datasets(plan: ViewPlan, kp: KeyPlan) -> list[tuple[int, int]]:
    """(file index, module index) of every source dataset holding rows of ``kp``."""
    fmap = plan.frame_map(kp)
    out = []
    for m in range(fmap.n_modules):
        files = fmap.file[m][fmap.counts[m] > 0]
        out += [(int(f), m) for f in np.unique(files)]
    return out


def dataset_id(fmap: Any, fi: int, m: int, key: str) -> h5py.h5d.DatasetID:
    f = fmap.files[fi]
    h5 = getattr(f, "h5", None)
    if not isinstance(h5, h5py.File):
        raise DetstackError(f"{f.path} is not an EuXFEL HDF5 file (a view?); build manifests "
                            "from the run's own files")
    return h5py.h5d.open(h5.id, f.dataset_path(fmap.sources[m], key).encode())


def dataset(fmap: Any, fi: int, m: int, key: str) -> h5py.Dataset:
    return h5py.Dataset(dataset_id(fmap, fi, m, key))


def chunk_table(ds: h5py.Dataset, rows_per_chunk: int, filtered: bool,
                contiguous_offset: int | None, entry_grid: tuple[int, ...],
                n_row_chunks: int, table: ChunkTable | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offset (-1: not allocated), size, filter_mask) of every HDF5 chunk of ``ds``, as
    (row chunk, entry chunk) tables, from one read of its chunk index (``table``, if it
    was read already)."""
    n_e = math.prod(entry_grid)
    offset = np.full((n_row_chunks, n_e), -1, np.int64)
    size = np.zeros((n_row_chunks, n_e), np.int64)
    mask = np.zeros((n_row_chunks, n_e), np.int64)
    if contiguous_offset is not None:
        if contiguous_offset >= 0:
            row_bytes = ds.dtype.itemsize * math.prod(ds.shape[1:])
            offset[:, 0] = contiguous_offset + np.arange(n_row_chunks) * row_bytes
            size[:] = row_bytes
        return offset, size, mask
    if table is None:   # the chunk index in bulk (chunk_index: fast, checked)
        table = chunk_index_table(ds)
    grid = np.array((n_row_chunks, *entry_grid), np.int64)
    if len(table) == n_row_chunks * n_e and len(table) and bool((table.coords < grid).all()):
        # strictly increasing coordinates (chunk_index checks it), inside the grid and as
        # many as it has: every chunk, in raveled order (an allocated DAQ file's case)
        return (table.addr.reshape(n_row_chunks, n_e), table.size.reshape(n_row_chunks, n_e),
                table.mask.reshape(n_row_chunks, n_e))
    if len(table):
        rows = table.coords[:, 0]
        keep = rows < n_row_chunks
        ent = (np.ravel_multi_index(tuple(table.coords[keep, 1:].T), entry_grid)
               if entry_grid else np.zeros(int(keep.sum()), np.int64))
        offset[rows[keep], ent] = table.addr[keep]
        size[rows[keep], ent] = table.size[keep]
        mask[rows[keep], ent] = table.mask[keep]
    return offset, size, mask


def concat(batches: list[RefBatch]) -> RefBatch:
    """One batch of several, sorted by chunk index."""
    if not batches:
        z = np.zeros(0, np.int64)
        return RefBatch(z, np.zeros(0, np.int32), z, z)
    index = np.concatenate([b.index for b in batches])
    if len(index) < 2 or bool((index[1:] >= index[:-1]).all()):   # in order already (usual)
        return RefBatch(index, np.concatenate([b.url for b in batches]),
                        np.concatenate([b.offset for b in batches]),
                        np.concatenate([b.size for b in batches]))
    order = np.argsort(index, kind="stable")
    return RefBatch(index[order], np.concatenate([b.url for b in batches])[order],
                    np.concatenate([b.offset for b in batches])[order],
                    np.concatenate([b.size for b in batches])[order])


def url_numbers(fmap: Any, url_of: dict[Path, int]) -> dict[int, int]:
    """Frame-map file index -> url number. ``url_of`` also holds the run's own (unresolved)
    paths, so a path is resolved only if it is not one of those (~1 ms each)."""
    out = {}
    for fi, f in enumerate(fmap.files):
        url = url_of.get(Path(f.path))
        if url is None:
            url = url_of.get(Path(f.path).resolve())
        if url is not None:
            out[fi] = url
    return out
