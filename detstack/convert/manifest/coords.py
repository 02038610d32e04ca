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

from ...detectors.consistency import ids_problem
from ...detectors.pulses import MISSING, frame_positions, label_frames, read_inner_ids
from ...detectors.reading import read_rows
from ...errors import InconsistentModulesError
from ...frames import FrameMap
from ..plan import Coordinate, KeyPlan, ViewPlan

# (t0, t1[, blocks]) -> the values of trains t0:t1; ``blocks``: the copied keys' values
# of those trains (``copied.train_blocks``), used instead of reading the files again
Window = Callable[..., np.ndarray]


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


def counts_window(plan: ViewPlan, group: str, t0: int, t1: int,
                  blocks: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``ViewPlan.counts(group)[:, t0:t1]``: rows per slot and train (0: absent)."""
    fmap = plan.det.group_map(group)
    out = np.zeros((plan.n_slots, t1 - t0), np.uint64)
    out[plan.slots] = fmap.counts[:, t0:t1]
    return out


def frame_ids_window(plan: ViewPlan, kp: KeyPlan, t0: int, t1: int,
                     blocks: dict[str, np.ndarray] | None = None) -> np.ndarray:
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
        block = None if blocks is None else blocks.get(kp.key)
        inner = (read_inner_ids(fmap, kp.key, field, src_index) if block is None
                 else _agreed_ids(plan, fmap, kp, field, block))
        labels = label_frames(fmap, inner, bool(getattr(det, "parallel_gain", False)))
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


def _agreed_ids(plan: ViewPlan, fmap: FrameMap, kp: KeyPlan, field: str, block: np.ndarray
                ) -> np.ndarray:
    """``read_inner_ids`` of the window's frame map from the key's copied values
    (``block``: (slot, train, pulse, ...), fill where absent) rather than the files: one ID
    per frame, the modules having it checked to agree (the same check and error)."""
    n_w = len(fmap.train_ids)
    values = block.reshape(plan.n_slots, n_w, block.shape[2], -1)[..., 0][plan.slots]
    j = np.arange(values.shape[2])
    have = j[None, None, :] < fmap.counts.astype(np.int64)[:, :, None]
    valid = j[None, :] < fmap.train_counts().astype(np.int64)[:, None]
    ids = np.where(have, values.astype(np.int64), MISSING)[:, valid]
    missing = ids == MISSING
    if ids.shape[1] and missing.all(axis=0).any():
        train = int(fmap.train_ids_perframe()[missing.all(axis=0)][0])
        raise ValueError(f"Failed to find {field} for some data: no module has {kp.key} for "
                         f"train {train}")
    problem = ids_problem(fmap, kp.key, field, ids, missing) if ids.shape[1] else None
    if problem is not None:
        raise InconsistentModulesError(f"{problem}; frames would be mislabelled. "
                                       "Leave that module out (modules=[...])")
    return np.where(missing, MISSING, ids).min(axis=0, initial=MISSING).astype(np.uint64)
