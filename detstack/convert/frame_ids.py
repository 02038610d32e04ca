"""Per-frame pulse and cell IDs of a whole run, for the frame-layout coordinates of views.

``det.frame_labels`` reads every module's IDs into one ``(modules, frames)`` int64
array and compares them: 250 MB per key and about 13 s at 30,000 AGIPD-1M trains,
because the int64 destination sends every read through HDF5's type conversion. Here
each module is read on its own, in the source's dtype (so uncompressed rows are copied
straight from the files), and folded into one per-frame array: memory is a few
per-frame arrays whatever the number of modules. Where modules disagree, ``None`` is
returned and the caller asks the detector, which raises its typed error naming the
module and train.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..detectors.reading import read_rows
from ..frames import FrameMap


def agreed_ids(fmap: FrameMap, key: str, dtype: np.dtype,
               src_index: tuple[Any, ...] = ()) -> np.ndarray | None:
    """(n_frames,) uint64 value of ``key`` per frame, the same in every module that has
    the frame; None if two modules disagree anywhere."""
    counts = fmap.train_counts().astype(np.int64)
    n = int(counts.sum())
    agreed = np.zeros(n, np.uint64)
    seen = np.zeros(n, bool)
    for m in range(fmap.n_modules):
        # the module's own frames, in order, are the run's frames of the trains it has
        frames = np.flatnonzero(np.repeat(fmap.counts[m] > 0, counts))
        if not len(frames):
            continue
        values = np.zeros((1, len(frames)), dtype)
        read_rows(fmap.select_modules([m]), key, values, [0], src_index=src_index)
        mine = values[0].astype(np.uint64)
        known = seen[frames]
        if (agreed[frames[known]] != mine[known]).any():
            return None
        agreed[frames[~known]] = mine[~known]
        seen[frames] = True
    return agreed


def frame_coordinates(det: Any) -> dict[str, np.ndarray] | None:
    """``train_id``, ``pulse_id``, ``cell_id`` per frame of an XTDF detector, or None
    when this shortcut does not apply (LPD parallel gain, IDs that disagree between
    modules): ``ViewPlan.frame_coordinates`` then uses the
    detector's own labels."""
    kind = det.kind
    if not kind.xtdf or getattr(det, "parallel_gain", False):
        return None
    fmap = det.frame_map
    src = next(iter(det.source_to_modno))
    out = {"train_id": np.asarray(fmap.train_ids_perframe(), np.uint64)}
    for name, key in (("pulse_id", kind.pulse_key), ("cell_id", kind.cell_key)):
        shape, dtype = det.data.key_info(src, key)
        ids = agreed_ids(fmap, key, np.dtype(dtype), (0,) if tuple(shape)[:1] == (1,) else ())
        if ids is None:
            return None
        out[name] = ids
    return out
