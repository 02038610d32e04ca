"""Zarr stores: data the counts promise must be there, never read as fill.

zarr reads a missing chunk or shard as the fill value, so a deleted shard of a
(module, train) that holds frames would read as zeros. ``PresenceCheckedArray`` (a
``CheckedArray``, the base shared with manifests and Icechunk views) wraps a store's
array and, before each read, checks that the stored objects
covering every touched (module slot, train) with a non-zero count exist (once
per object, cached) and, in a local folder, are regular files (a FIFO would
block the read forever). ``require_present`` is the same check for readers
with their own fast path. In the frame layout, axis 1 counts frames: the check
is then per (module slot, stored object along the frame axis) holding any of the
module's frames.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from itertools import product
from typing import Any

import numpy as np

from ..errors import DetstackError, MissingDataError
from ..safety import require_regular_file
from .zarr_decode import corrupt_store_chunk


def _span(index: Any, n: int) -> range:
    if isinstance(index, (int, np.integer)):
        i = int(index) + (n if index < 0 else 0)
        return range(i, i + 1)
    if isinstance(index, slice):
        return range(*index.indices(n))
    return range(n)   # anything else: assume the whole axis


class StoredObjects:
    """Which stored objects (shards, or chunks if unsharded) of one array hold the
    rows of a (slot, train), and whether each exists in the store."""

    def __init__(self, array: Any, counts: np.ndarray, per_frame: bool, url: str,
                 folder: str | None, frame_axis: bool = False) -> None:
        self.array = array
        self.per_frame = per_frame and not frame_axis
        self.url = url
        self.folder = folder
        self.unit = tuple(int(u) for u in (getattr(array, "shards", None) or array.chunks))
        self.shape = tuple(int(s) for s in array.shape)
        self.frame_axis = frame_axis
        # frame layout: frames the module has per stored object along the frame axis
        self.counts = _block_counts(np.asarray(counts), self.shape[1], self.unit[1]) \
            if frame_axis else np.asarray(counts)
        self._present: set[tuple[int, ...]] = set()   # objects shared by several trains
        self._checked: set[tuple[int, int]] = set()    # (slot, train) fully verified
        self.sources: dict[str, Any] | None = None     # record modules, to name sources

    def objects(self, slot: int, train: int) -> Iterator[tuple[int, ...]]:
        """Grid coordinates of the objects holding (slot, train)'s stored rows."""
        count = int(self.counts[slot, train])
        block = train if self.frame_axis else train // self.unit[1]
        lead = [(slot // self.unit[0],), (block,)]
        rest = []
        for axis in range(2, len(self.shape)):
            n = count if (self.per_frame and axis == 2) else self.shape[axis]
            rest.append(range(0, -(-n // self.unit[axis])) if n else range(0))
        return product(*lead, *rest)

    def _exists(self, coords: tuple[int, ...]) -> bool:
        key = self.array.metadata.encode_chunk_key(coords)
        if self.folder is not None:
            path = os.path.join(self.folder, self.array.path, *key.split("/"))
            try:
                require_regular_file(path, f"stored object of {self.url}")
            except FileNotFoundError:
                return False
            return True
        from zarr.core.sync import sync
        store = self.array.store_path.store
        return bool(sync(store.exists(f"{self.array.path}/{key}")))

    def missing(self, coords: tuple[int, ...], s: int, t: int) -> MissingDataError:
        return MissingDataError(
            self.url, f"array {self.array.path}: the stored object "
            f"{self.array.metadata.encode_chunk_key(coords)} of module slot {s}, "
            f"{self._where(t)} is missing, but the store's counts say it holds {int(self.counts[s, t])} "
            "rows", "zarr would read it as fill values. The store is damaged: convert the "
            "run again (overwrite=True)")

    def require(self, slots: range, trains: range) -> None:
        """MissingDataError if an object holding rows of these slots and trains is gone."""
        n_slots, n_trains = self.counts.shape
        for s in slots:
            if s >= n_slots:
                continue
            for t in trains:
                if t >= n_trains or not self.counts[s, t] or (s, t) in self._checked:
                    continue
                todo = [c for c in self.objects(s, t) if c not in self._present]
                absent = self._first_missing(todo)
                if absent is not None:
                    raise self.missing(absent, s, t)
                if self.unit[1] > 1 and not self.frame_axis:
                    self._present.update(todo)
                self._checked.add((s, t))

    def _first_missing(self, coords: list[tuple[int, ...]]) -> tuple[int, ...] | None:
        """The first of these objects that does not exist, or None."""
        return next((c for c in coords if not self._exists(c)), None)

    def _where(self, t: int) -> str:
        if self.frame_axis:
            return f"frames {t * self.unit[1]}-{(t + 1) * self.unit[1] - 1}"
        return f"train index {t}"

    def require_rows(self, slots: range, rows: range) -> None:
        """``require`` for an index along axis 1 (trains, or frames in the frame layout)."""
        if self.frame_axis and len(rows):
            u = self.unit[1]
            lo, hi = min(rows[0], rows[-1]), max(rows[0], rows[-1])
            rows = range(lo // u, hi // u + 1)   # the objects spanned (every one, if strided)
        self.require(slots, rows)


def _block_counts(counts: np.ndarray, n_frames: int, unit: int) -> np.ndarray:
    """(n_slots, n_objects) frames each module has in each ``unit``-frame stretch of a
    frame axis whose trains are laid out by ``counts`` (see ``frame_offsets``)."""
    from .view_collection import frame_offsets
    offsets = frame_offsets(counts)
    n_blocks = -(-n_frames // unit) if n_frames else 0
    out = np.zeros((counts.shape[0], n_blocks), np.int64)
    for s in range(counts.shape[0]):
        have = np.flatnonzero(counts[s])
        if not len(have):
            continue
        edges = np.zeros(n_frames + 1, np.int64)
        np.add.at(edges, offsets[have], 1)
        np.add.at(edges, offsets[have] + counts[s, have].astype(np.int64), -1)
        present = np.cumsum(edges[:-1]) > 0
        out[s] = np.add.reduceat(present, np.arange(0, n_frames, unit)) if n_frames else 0
    return out


def require_present(objects: StoredObjects, index: Any) -> None:
    """Check the objects an index into (slot, train, ...) touches (see StoredObjects)."""
    index = index if isinstance(index, tuple) else (index,)
    index = index + (slice(None),) * max(0, 2 - len(index))
    objects.require_rows(_span(index[0], objects.shape[0]), _span(index[1], objects.shape[1]))


class CheckedArray(abc.ABC):
    """A zarr array whose reads first check that the data the counts promise exists, and
    whose decode failures become typed errors: subclasses say how (``_explain``). The
    base of zarr store (``PresenceCheckedArray``), manifest (``manifest_reads``) and
    Icechunk (``icechunk_reads``) arrays."""

    def __init__(self, array: Any, objects: StoredObjects) -> None:
        self.array = array
        self.objects = objects
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("array", "objects"):   # e.g. while unpickling
            raise AttributeError(name)
        return getattr(self.array, name)

    def __getitem__(self, index: Any) -> Any:
        require_present(self.objects, index)
        try:
            return self.array[index]
        except DetstackError:
            raise
        except Exception as exc:  # noqa: BLE001 - codecs raise anything; named by _explain
            raise self._explain(index, exc) from None

    @abc.abstractmethod
    def _explain(self, index: Any, exc: Exception) -> Exception:
        """The typed error for a read of ``index`` that failed with ``exc``."""


class PresenceCheckedArray(CheckedArray):
    """A zarr store's array: a chunk that cannot be decoded names the store, module and
    train (``corrupt_store_chunk``)."""

    def _explain(self, index: Any, exc: Exception) -> Exception:
        return corrupt_store_chunk(self.array, index, exc, self.objects.url,
                                   self.objects.sources)


def checked_arrays(arrays: dict[str, Any], record: dict[str, Any],
                   counts: dict[str, np.ndarray], url: str, folder: str | None
                   ) -> dict[str, Any]:
    """Wrap every key's array of a store in a presence check."""
    out = {}
    for key, array in arrays.items():
        info = record["keys"][key]
        group_counts = counts.get(info["group"])
        if group_counts is None or not hasattr(array, "metadata"):
            out[key] = array
            continue
        from .view_collection import key_layout
        frame_axis = bool(info["per_frame"]) and key_layout(record, key) == "frames"
        objects = StoredObjects(array, group_counts, bool(info["per_frame"]), url, folder,
                                frame_axis)
        objects.sources = record["detector"]["modules"]
        out[key] = PresenceCheckedArray(array, objects)
    return out
