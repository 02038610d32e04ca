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

from typing import Any

import numpy as np

from ..detectors.reading import read_rows
from ..frames import FrameMap

TRAIN_BLOCK = 4096   # trains read at a time: every file of a block stays in the handle pool


def agreed_ids(fmap: FrameMap, key: str, dtype: np.dtype,
               src_index: tuple[Any, ...] = ()) -> np.ndarray | None:
    """(n_frames,) uint64 value of ``key`` per frame, the same in every module that has
    the frame; None if two modules disagree anywhere."""
    found = agreed_keys(fmap, [(key, dtype, src_index)])
    return None if found is None else found[key]


def agreed_keys(fmap: FrameMap, keys: list[tuple[str, np.dtype, tuple[Any, ...]]]
                ) -> dict[str, np.ndarray] | None:
    """``agreed_ids`` of several keys (key, source dtype, source index), read block of
    trains by block and module by module, so that each file is opened once for all keys
    and the temporary arrays hold one block."""
    counts = fmap.train_counts().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out = {key: np.zeros(int(offsets[-1]), np.uint64) for key, _, _ in keys}
    n_trains = len(counts)
    for t0 in range(0, n_trains, TRAIN_BLOCK):
        t1 = min(n_trains, t0 + TRAIN_BLOCK)
        keep = np.zeros(n_trains, bool)
        keep[t0:t1] = True
        part = fmap.select_trains(keep)
        base = int(offsets[t0])
        seen = np.zeros(int(offsets[t1]) - base, bool)
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
                agreed = out[key][base:base + len(seen)]
                if (agreed[frames[known]] != mine[known]).any():
                    return None
                agreed[frames[~known]] = mine[~known]
            seen[frames] = True
    return out


def frame_coordinates(det: Any) -> dict[str, np.ndarray] | None:
    """``train_id``, ``pulse_id``, ``cell_id`` per frame of an XTDF detector, or None
    when this shortcut does not apply (LPD parallel gain, IDs that disagree between
    modules): ``ViewPlan.frame_coordinates`` then uses the detector's own labels."""
    kind = det.kind
    if not kind.xtdf or getattr(det, "parallel_gain", False):
        return None
    fmap = det.frame_map
    src = next(iter(det.source_to_modno))
    keys = []
    for key in (kind.pulse_key, kind.cell_key):
        shape, dtype = det.data.key_info(src, key)
        keys.append((key, np.dtype(dtype), (0,) if tuple(shape)[:1] == (1,) else ()))
    ids = agreed_keys(fmap, keys)
    if ids is None:
        return None
    return {"train_id": np.asarray(fmap.train_ids_perframe(), np.uint64),
            "pulse_id": ids[kind.pulse_key], "cell_id": ids[kind.cell_key]}
