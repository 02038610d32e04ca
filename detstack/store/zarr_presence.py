"""Zarr stores: data the counts promise must be there, never read as fill.

zarr reads a missing chunk or shard as the fill value, so a deleted shard of a
(module, train) that holds frames would read as zeros. ``PresenceCheckedArray``
wraps a store's array and, before each read, checks that the stored objects
covering every touched (module slot, train) with a non-zero count exist (once
per object, cached) and, in a local folder, are regular files (a FIFO would
block the read forever). ``require_present`` is the same check for readers
with their own fast path.
"""

from __future__ import annotations

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
                 folder: str | None) -> None:
        self.array = array
        self.counts = np.asarray(counts)
        self.per_frame = per_frame
        self.url = url
        self.folder = folder
        self.unit = tuple(int(u) for u in (getattr(array, "shards", None) or array.chunks))
        self.shape = tuple(int(s) for s in array.shape)
        self._present: set[tuple[int, ...]] = set()   # objects shared by several trains
        self._checked: set[tuple[int, int]] = set()    # (slot, train) fully verified
        self.sources: dict[str, Any] | None = None     # record modules, to name sources

    def objects(self, slot: int, train: int) -> Iterator[tuple[int, ...]]:
        """Grid coordinates of the objects holding (slot, train)'s stored rows."""
        count = int(self.counts[slot, train])
        lead = [(slot // self.unit[0],), (train // self.unit[1],)]
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
            f"{self.array.metadata.encode_chunk_key(coords)} of module slot {s}, train index "
            f"{t} is missing, but the store's counts say it holds {int(self.counts[s, t])} "
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
                for coords in self.objects(s, t):
                    if coords in self._present:
                        continue
                    if not self._exists(coords):
                        raise self.missing(coords, s, t)
                    if self.unit[1] > 1:
                        self._present.add(coords)
                self._checked.add((s, t))


def require_present(objects: StoredObjects, index: Any) -> None:
    """Check the objects an index into (slot, train, ...) touches (see StoredObjects)."""
    index = index if isinstance(index, tuple) else (index,)
    index = index + (slice(None),) * max(0, 2 - len(index))
    objects.require(_span(index[0], objects.shape[0]), _span(index[1], objects.shape[1]))


class PresenceCheckedArray:
    """A zarr array whose reads first check that promised data exists."""

    def __init__(self, array: Any, objects: StoredObjects) -> None:
        self.array = array
        self.objects = objects
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    def __getitem__(self, index: Any) -> Any:
        require_present(self.objects, index)
        try:
            return self.array[index]
        except DetstackError:
            raise
        except Exception as exc:  # noqa: BLE001 - codecs raise anything; named here
            raise corrupt_store_chunk(self.array, index, exc, self.objects.url,
                                      self.objects.sources) from None


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
        objects = StoredObjects(array, group_counts, bool(info["per_frame"]), url, folder)
        objects.sources = record["detector"]["modules"]
        out[key] = PresenceCheckedArray(array, objects)
    return out
