"""Pulse selections and the pulse/cell IDs of every frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InconsistentModulesError
from ..frames import FrameMap
from ..run.selection import ById, ByIndex
from .consistency import ids_problem
from .reading import RowReader

MAX_PULSES = 2**62  # "no stop": the reference uses 2700, too low for some IDs
MISSING = np.iinfo(np.int64).max


def normalize_pulses(pulses: Any) -> ById | ByIndex:
    """by_id/by_index with a canonical slice or uint64 array inside."""
    if not isinstance(pulses, (ById, ByIndex)):
        pulses = ByIndex(pulses)
    value = pulses.value
    if isinstance(value, slice):
        parts = (value.start, value.stop, value.step)
        if not all(v is None or isinstance(v, (int, np.integer)) for v in parts):
            raise TypeError("Pulse selection slice must use integers or None")
        start = 0 if value.start is None else int(value.start)
        stop = MAX_PULSES if value.stop is None else int(value.stop)
        step = 1 if value.step is None else int(value.step)
        if step < 1:
            raise ValueError("Pulse selection slice must have positive step")
        if start < 0 or stop < 0:
            if isinstance(pulses, ById):
                raise ValueError(f"by_id pulse IDs must be >= 0, got {value}")
            raise NotImplementedError("Negative pulse indices not supported")
        return type(pulses)(slice(start, stop, step))
    arr = np.atleast_1d(np.asarray(value))
    if arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"Pulse selection needs integers, not {arr.dtype}")
    if arr.size and arr.min() < 0:
        what = "pulse IDs" if isinstance(pulses, ById) else "pulse indices"
        raise ValueError(f"Negative {what} are not supported: {arr[arr < 0][:5].tolist()}")
    return type(pulses)(arr.astype(np.uint64).ravel())


def is_all_pulses(sel: ById | ByIndex) -> bool:
    v = sel.value
    return (isinstance(sel, ByIndex) and isinstance(v, slice) and v.start == 0
            and v.step == 1 and v.stop >= MAX_PULSES)


@dataclass(frozen=True)
class FrameLabels:
    """Per frame: the train, its position in the train, and its pulse/cell ID."""

    train: np.ndarray
    position: np.ndarray   # index within the train (within the gain stage for parallel gain)
    inner: np.ndarray      # pulse or cell ID
    gain: np.ndarray | None = None


def frame_positions(fmap: FrameMap) -> np.ndarray:
    counts = fmap.train_counts().astype(np.int64)
    offsets = fmap.offsets()
    return np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], counts)


def stage_positions(fmap: FrameMap, parallel_gain: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(position of every frame within its train, or within its gain stage with
    ``parallel_gain``; the gain stage or None): what ``by_index`` selects on, known from
    the frame map alone (no IDs read)."""
    position = frame_positions(fmap)
    if not parallel_gain:
        return position, None
    counts = fmap.train_counts().astype(np.int64)
    if (counts % 3).any():
        raise ValueError("parallel_gain=True needs the frames in each train to be divisible by 3")
    stage_len = np.repeat(counts // 3, counts)
    gain = (position // np.maximum(stage_len, 1)).astype(np.uint8)
    return position - gain * stage_len, gain


def plan_inner_ids(fmap: FrameMap, key: str, src_index: tuple[Any, ...],
                   reader: RowReader) -> np.ndarray:
    """The (modules, frames) array ``reader`` fills with every module's IDs when run
    (``MISSING`` where a module lacks the frame); check it with ``checked_inner_ids``."""
    n = fmap.n_frames()
    ids = np.full((fmap.n_modules, n), MISSING, dtype=np.int64)
    if n:
        reader.add(fmap, key, ids, list(range(fmap.n_modules)), src_index=src_index)
    return ids


def checked_inner_ids(fmap: FrameMap, key: str, field: str, ids: np.ndarray) -> np.ndarray:
    """One ID per frame from the modules' IDs, refused where the modules disagree or
    none has the frame."""
    n = ids.shape[1]
    missing = ids == MISSING
    if n and missing.all(axis=0).any():
        raise ValueError(f"Failed to find {field} for some data: no module has {key} for "
                         f"train {int(fmap.train_ids_perframe()[missing.all(axis=0)][0])}")
    lo = np.where(missing, MISSING, ids).min(axis=0) if n else np.zeros(0, np.int64)
    problem = ids_problem(fmap, key, field, ids, missing) if n else None
    if problem is not None:
        raise InconsistentModulesError(f"{problem}; frames would be mislabelled. "
                                       "Leave that module out (modules=[...])")
    return lo.astype(np.uint64)


def read_inner_ids(fmap: FrameMap, key: str, field: str, src_index: tuple[Any, ...]) -> np.ndarray:
    """One ID per frame, checked for agreement across the modules that have it."""
    reader = RowReader()
    ids = plan_inner_ids(fmap, key, src_index, reader)
    reader.run()
    return checked_inner_ids(fmap, key, field, ids)


def label_frames(fmap: FrameMap, inner: np.ndarray, parallel_gain: bool) -> FrameLabels:
    train = fmap.train_ids_perframe()
    position, gain = stage_positions(fmap, parallel_gain)
    if gain is None:
        return FrameLabels(train, position, inner)
    # only the first stage carries meaningful IDs: repeat them for the other two
    counts = fmap.train_counts().astype(np.int64)
    train_start = np.repeat(fmap.offsets()[:-1], counts)
    repaired = inner[train_start + position] if len(inner) else inner
    return FrameLabels(train, position, repaired, gain)


def select_frames(sel: ById | ByIndex, labels: FrameLabels) -> np.ndarray:
    """Boolean mask over frames for a normalised pulse selection."""
    values = labels.inner if isinstance(sel, ById) else labels.position.astype(np.uint64)
    return _mask(sel.value, values)


def select_positions(sel: ByIndex, position: np.ndarray) -> np.ndarray:
    """Boolean mask over frames for a normalised ``by_index`` selection, from the frames'
    positions (``stage_positions``): no pulse IDs needed."""
    return _mask(sel.value, position.astype(np.uint64))


def _mask(v: slice | np.ndarray, values: np.ndarray) -> np.ndarray:
    if isinstance(v, slice):
        vals = values.astype(np.int64)
        return (vals >= v.start) & (vals < v.stop) & ((vals - v.start) % v.step == 0)
    return np.isin(values, v)
