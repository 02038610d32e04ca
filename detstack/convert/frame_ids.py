"""Per-frame pulse and cell IDs of a whole run, for the frame-layout coordinates of views.

``det.frame_labels`` reads every module's IDs into one ``(modules, frames)`` int64
array and compares them: 250 MB per key at 30,000 AGIPD-1M trains, each file opened
once per key, and every read sent through HDF5's type conversion by the int64
destination. Here blocks of trains are read module by module, both keys while a file
is open, in the source's dtype (uncompressed rows are copied straight from the files),
and folded into one per-frame array per key: besides the result, memory holds one
block. Where modules disagree, ``None`` is returned and the caller asks the detector,
which raises its typed error naming the module and train.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..detectors.reading import read_rows
from ..frames import FrameMap

TRAIN_BLOCK = 1024   # trains read at a time (memory: ~1 MB per key and 100 trains of 64 frames)


def agreed_ids(fmap: FrameMap, key: str, dtype: np.dtype,
               src_index: tuple[Any, ...] = ()) -> np.ndarray | None:
    """(n_frames,) uint64 value of ``key`` per frame, the same in every module that has
    the frame; None if two modules disagree anywhere."""
    found = agreed_keys(fmap, [(key, dtype, src_index)])
    return None if found is None else found[key]


class IdsDisagree(Exception):
    """Two modules disagree on a frame's ID (internal: the caller falls back to the
    detector's labels, which raise the typed error naming module and train)."""


def agreed_key_blocks(fmap: FrameMap, keys: list[tuple[str, np.dtype, tuple[Any, ...]]]
                      ) -> Iterator[tuple[int, int, int, dict[str, np.ndarray]]]:
    """(first train, end train, first frame, {key: (frames of the block,) uint64}) per
    block of ``TRAIN_BLOCK`` trains: the values of several keys (key, source dtype, source index), read module
    by module, so that each file is opened once for all keys and memory holds one block.
    Raises ``IdsDisagree`` where two modules disagree."""
    counts = fmap.train_counts().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n_trains = len(counts)
    for t0 in range(0, n_trains, TRAIN_BLOCK):
        t1 = min(n_trains, t0 + TRAIN_BLOCK)
        keep = np.zeros(n_trains, bool)
        keep[t0:t1] = True
        part = fmap.select_trains(keep)
        base = int(offsets[t0])
        n = int(offsets[t1]) - base
        out = {key: np.zeros(n, np.uint64) for key, _, _ in keys}
        seen = np.zeros(n, bool)
        for m in range(part.n_modules):
            # the module's own frames, in order, are the block's frames of its trains
            frames = np.flatnonzero(np.repeat(part.counts[m] > 0, counts[t0:t1]))
            if not len(frames):
                continue
            one = part.select_modules([m])
            known = seen[frames]
            for key, dtype, src_index in keys:
                values = np.zeros((1, len(frames)), dtype)
                read_rows(one, key, values, [0], src_index=src_index)
                mine = values[0].astype(np.uint64, copy=False)
                agreed = out[key]
                if (agreed[frames[known]] != mine[known]).any():
                    raise IdsDisagree(key)
                agreed[frames[~known]] = mine[~known]
            seen[frames] = True
        yield t0, t1, base, out


def agreed_keys(fmap: FrameMap, keys: list[tuple[str, np.dtype, tuple[Any, ...]]]
                ) -> dict[str, np.ndarray] | None:
    """``agreed_ids`` of several keys (see ``agreed_key_blocks``), whole; None if two
    modules disagree anywhere."""
    out = {key: np.zeros(fmap.n_frames(), np.uint64) for key, _, _ in keys}
    try:
        for _, _, base, block in agreed_key_blocks(fmap, keys):
            for key, values in block.items():
                out[key][base:base + len(values)] = values
    except IdsDisagree:
        return None
    return out


def _id_keys(det: Any) -> list[tuple[str, np.dtype, tuple[Any, ...]]] | None:
    """The pulse and cell ID keys as ``agreed_key_blocks`` reads them, or None when the
    shortcut does not apply (not XTDF, LPD parallel gain)."""
    kind = det.kind
    if not kind.xtdf or getattr(det, "parallel_gain", False):
        return None
    src = next(iter(det.source_to_modno))
    keys = []
    for key in (kind.pulse_key, kind.cell_key):
        shape, dtype = det.data.key_info(src, key)
        keys.append((key, np.dtype(dtype), (0,) if tuple(shape)[:1] == (1,) else ()))
    return keys


def frame_coordinates(det: Any) -> dict[str, np.ndarray] | None:
    """``train_id``, ``pulse_id``, ``cell_id`` per frame of an XTDF detector, or None
    when this shortcut does not apply (LPD parallel gain, IDs that disagree between
    modules): ``ViewPlan.frame_coordinates`` then uses the detector's own labels."""
    keys = _id_keys(det)
    if keys is None:
        return None
    fmap = det.frame_map
    ids = agreed_keys(fmap, keys)
    if ids is None:
        return None
    kind = det.kind
    return {"train_id": np.asarray(fmap.train_ids_perframe(), np.uint64),
            "pulse_id": ids[kind.pulse_key], "cell_id": ids[kind.cell_key]}


def write_frame_coordinates(group: Any, det: Any) -> list[str] | None:
    """Write ``train_id``, ``pulse_id``, ``cell_id`` per frame into ``group`` (an h5py
    group) block of trains by block, so that memory holds one block, not three arrays
    of the whole run (24 bytes per frame); the names written, or None (nothing left
    written) when the shortcut does not apply (see ``frame_coordinates``)."""
    keys = _id_keys(det)
    if keys is None:
        return None
    fmap = det.frame_map
    n = fmap.n_frames()
    names = {"pulse_id": det.kind.pulse_key, "cell_id": det.kind.cell_key}
    out = {name: group.create_dataset(name, shape=(n,), dtype=np.uint64)
           for name in ("train_id", *names)}
    counts = fmap.train_counts().astype(np.int64)
    try:
        for t0, t1, base, block in agreed_key_blocks(fmap, keys):
            tids = np.repeat(fmap.train_ids[t0:t1], counts[t0:t1])
            out["train_id"][base:base + len(tids)] = tids
            for name, key in names.items():
                out[name][base:base + len(tids)] = block[key]
    except IdsDisagree:
        for name in out:
            del group[name]
        return None
    return list(out)
