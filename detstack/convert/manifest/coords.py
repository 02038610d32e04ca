"""The view's coordinates for a manifest's sidecar, a window of trains at a time.

``ViewPlan.coordinates`` defines them; read whole, the (train, pulse) pulse and cell IDs
of a 30,000-train AGIPD-1M run take every module's IDs at once (16 x 1.9 million
int64, several copies while they are checked) and the row counts one array per index
group. The sidecar writes them train window by train window instead, with the same
values and the same consistency check (modules disagreeing on an ID raise
``InconsistentModulesError`` naming module, file and train), so memory depends on the
window, not on the run. Other coordinates (module numbers, train IDs, the frame
layout's per-frame IDs) are small or per frame and are read whole when written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ...detectors.pulses import frame_positions, label_frames, read_inner_ids
from ...detectors.reading import read_rows
from ..plan import Coordinate, KeyPlan, ViewPlan

Window = Callable[[int, int], np.ndarray]   # (t0, t1) -> the values of trains t0:t1


def coordinate_window(plan: ViewPlan, name: str, c: Coordinate) -> Window | None:
    """How to compute coordinate ``name`` of ``plan.coordinates()`` by train windows
    (along its ``train`` axis), or None if it is read whole."""
    if name.startswith("count.") and c.dims == ("module", "train"):
        return functools.partial(counts_window, plan, name[len("count."):])
    kind = plan.det.kind
    key = {"pulse_id": kind.pulse_key, "cell_id": kind.cell_key}.get(name)
    if key is not None and len(c.dims) == 2 and c.dims[0] == "train":
        return functools.partial(frame_ids_window, plan, plan.key(key))
    return None


def counts_window(plan: ViewPlan, group: str, t0: int, t1: int) -> np.ndarray:
    """``ViewPlan.counts(group)[:, t0:t1]``: rows per slot and train (0: absent)."""
    fmap = plan.det.group_map(group)
    out = np.zeros((plan.n_slots, t1 - t0), np.uint64)
    out[plan.slots] = fmap.counts[:, t0:t1]
    return out


def frame_ids_window(plan: ViewPlan, kp: KeyPlan, t0: int, t1: int) -> np.ndarray:
    """The (train, pulse|cell) coordinate of ID key ``kp`` for trains t0:t1: the IDs of
    the modules having each train (checked to agree), 0 where none has it."""
    det = plan.det
    n_inner = int(np.prod(plan.shape(kp)[2:]))
    keep = np.zeros(len(plan.train_ids), bool)
    keep[t0:t1] = True
    fmap = plan.frame_map(kp).select_trains(keep)
    out = np.zeros((t1 - t0, n_inner), kp.dtype)
    if det.kind.xtdf and kp.per_frame:
        field = "pulseId" if kp.key == det.kind.pulse_key else "cellId"
        entry, _ = det.data.key_info(next(iter(det.source_to_modno)), kp.key)
        src_index = (0,) if tuple(entry)[:1] == (1,) else ()
        labels = label_frames(fmap, read_inner_ids(fmap, kp.key, field, src_index),
                              bool(getattr(det, "parallel_gain", False)))
        train = np.repeat(np.arange(t1 - t0), fmap.train_counts().astype(np.int64))
        out[train, frame_positions(fmap)] = labels.inner
        return out
    rows = np.zeros((fmap.n_modules, t1 - t0) + kp.entry_shape, kp.dtype)
    read_rows(fmap, kp.key, rows, list(range(fmap.n_modules)), per_train=True,
              threads=1)   # in this thread: a forked worker has no reading pool threads
    rows = rows.reshape(fmap.n_modules, t1 - t0, -1)[:, :, :n_inner]
    have = fmap.counts > 0
    values = rows[np.argmax(have, axis=0), np.arange(t1 - t0)]
    values[~have.any(axis=0)] = 0
    out[:, :values.shape[1]] = values
    return out
