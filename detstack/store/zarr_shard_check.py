"""A cheap structural check of every shard of a local zarr store (plain ``verify``).

(Unsharded arrays' chunk files count as shards of one chunk without an index: they
must exist, be regular files and not be empty where the counts promise rows.)

Reading pixels is ``verify --full``'s job; this reads only each shard's index (16
bytes per inner chunk, at the end of the file) and checks what can go wrong with
the files themselves: a shard the counts say holds rows is missing or not a
regular file; its index is shorter than it must be or fails its checksum; an
index entry points past the data part of the file, has zero length or overlaps
another; an inner chunk holding rows the counts promise is marked empty. Shard
files that no count covers are checked too (a damaged one would be read if the
counts were wrong).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import DetstackError
from .zarr_presence import _block_counts
from .zarr_shards import EMPTY, ShardedArray


def required_chunks(array: ShardedArray, counts: np.ndarray, per_frame: bool,
                    frame_axis: bool) -> np.ndarray:
    """(inner chunk grid) bool: inner chunks holding rows the counts promise."""
    inner, shape = array.inner, array.shape
    grid = tuple(-(-s // c) for s, c in zip(shape, inner, strict=True))
    counts = np.asarray(counts, np.int64)
    if frame_axis:      # axis 1 is frames: frames of each module per inner block
        cols, width = _block_counts(counts, shape[1], inner[1]), 1
    else:
        cols, width = counts, inner[1]
    n_cols = -(-cols.shape[1] // width)
    padded = np.zeros((grid[0] * inner[0], n_cols * width), np.int64)
    padded[:cols.shape[0], :cols.shape[1]] = cols
    block = padded.reshape(grid[0], inner[0], n_cols, width).max(axis=(1, 3))[:, :grid[1]]
    if per_frame and not frame_axis:      # trains layout: axis 2 is the frame in the train
        need = block[:, :, None] > np.arange(grid[2]) * inner[2]
        rest = grid[3:]
    else:
        need = block > 0
        rest = grid[2:]
    return np.broadcast_to(need.reshape(need.shape + (1,) * len(rest)), grid)


def _existing_shards(array: ShardedArray) -> set[tuple[int, ...]]:
    root = os.path.join(array.folder, "c")
    found = set()
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        parts = [] if rel == "." else rel.split(os.sep)
        for name in files:
            try:
                found.add(tuple(int(p) for p in [*parts, name]))
            except ValueError:
                continue
    return {s for s in found if len(s) == len(array.shape)}


def shard_problems(array: ShardedArray, counts: np.ndarray, per_frame: bool,
                   frame_axis: bool, limit: int = 20) -> list[str]:
    """One line per damaged shard (at most ``limit``; then a count of the rest)."""
    need = required_chunks(array, counts, per_frame, frame_axis)
    grid = array.grid
    n_shards = tuple(-(-s // n) for s, n in zip(array.shape, array.shard, strict=True))
    wanted = {tuple(int(i) for i in s) for s in np.argwhere(
        _block_any(need, grid, n_shards))}
    problems: list[str] = []
    for shard in sorted(wanted | _existing_shards(array)):
        line = _one_shard(array, shard, need)
        if line:
            problems.append(line)
    if len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more damaged shards "
                                       f"of {array.array.path}"]
    return problems


def _block_any(need: np.ndarray, grid: tuple[int, ...], n_shards: tuple[int, ...]
               ) -> np.ndarray:
    """(shard grid) bool: shards holding any required inner chunk."""
    padded = np.zeros(tuple(n * g for n, g in zip(n_shards, grid, strict=True)), bool)
    padded[tuple(slice(0, s) for s in need.shape)] = need
    split = [d for n, g in zip(n_shards, grid, strict=True) for d in (n, g)]
    return padded.reshape(split).any(axis=tuple(range(1, 2 * len(grid), 2)))


def _one_shard(array: ShardedArray, shard: tuple[int, ...], need: np.ndarray) -> str | None:
    path = array._shard_path(shard)
    try:
        index = array._index(path, shard)     # missing, not regular, short, bad checksum
        size = os.stat(path).st_size
    except DetstackError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: cannot be read ({exc})"
    # unsharded arrays (index_extra None): the file is one chunk, without an index
    data_end = size if array.index_extra is None else \
        size - 16 * math.prod(array.grid) - array.index_extra
    used = index[:, 0] != EMPTY
    offsets, sizes = index[used, 0].astype(np.int64), index[used, 1].astype(np.int64)
    where = f"{path}: shard {shard} of {array.array.path}"
    if ((offsets + sizes) > data_end).any() or (sizes <= 0).any():
        return f"{where}: its index points past the data part of the file (size {size}); " \
               "the store is damaged, convert the run again"
    order = np.argsort(offsets)
    if ((offsets[order] + sizes[order])[:-1] > offsets[order][1:]).any():
        return f"{where}: its index has overlapping inner chunks; the store is damaged, " \
               "convert the run again"
    lo = [s * g for s, g in zip(shard, array.grid, strict=True)]
    region = need[tuple(slice(a, a + g) for a, g in zip(lo, array.grid, strict=True))]
    full = np.zeros(array.grid, bool)
    full[tuple(slice(0, n) for n in region.shape)] = region
    empty = (~used).reshape(array.grid) & full
    if empty.any():
        pos = tuple(int(i) for i in np.argwhere(empty)[0])
        at = [a + p for a, p in zip(lo, pos, strict=True)]
        return f"{where}: inner chunk {pos} (module slot {at[0] * array.inner[0]}, axis-1 " \
               f"index {at[1] * array.inner[1]}) is empty, but the store's counts say it " \
               "holds rows; the store is damaged, convert the run again"
    return None


def store_shard_problems(view: Any) -> list[str]:
    """``shard_problems`` for every sharded array of a local zarr store view."""
    from .view_collection import key_layout
    record = view.record
    out: list[str] = []
    seen: set[int] = set()
    for vf in view.files:
        for key, rows in getattr(vf, "h5", {}).items():
            array = rows.array
            while not isinstance(array, ShardedArray) and hasattr(array, "array"):
                array = array.array
            if not isinstance(array, ShardedArray) or id(array) in seen:
                continue
            seen.add(id(array))
            info = record["keys"][key]
            counts = np.asarray(vf._counts[info["group"]])
            out += shard_problems(array, counts, bool(info["per_frame"]),
                                  bool(info["per_frame"]) and key_layout(record, key) == "frames")
    return out
