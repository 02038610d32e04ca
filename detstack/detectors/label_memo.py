"""Frame IDs already read, kept per train for a detector and its train selections.

Reading one frame (``det.select_trains(...).get_array(...)``) makes a new detector
object each time, which knows no labels yet: its pulse IDs would be read (16 small
files) and checked again for every frame of a train. The detectors made from one
another by ``select_trains`` share one memo of the checked IDs per train, so each
train's IDs are read once. The memo is bounded; it forgets everything when full.
"""

from __future__ import annotations

import threading

import numpy as np

MAX_IDS = 1 << 21      # IDs kept per field (16 MiB): ~32000 trains of 64 frames


class LabelMemo:
    """Checked per-frame IDs (``pulseId``/``cellId``) by train ID."""

    def __init__(self, max_ids: int = MAX_IDS) -> None:
        self.max_ids = max_ids
        self._ids: dict[str, dict[int, np.ndarray]] = {}
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()    # detectors may be read from several threads

    def get(self, field: str, train_ids: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
        """The IDs of every frame of these trains (``counts`` frames each), or None if
        any train is not known with that many frames."""
        with self._lock:
            known = self._ids.get(field, {})
            parts = []
            for tid, n in zip(train_ids.tolist(), counts.tolist(), strict=True):
                ids = known.get(tid)
                if ids is None or len(ids) != n:
                    return None
                parts.append(ids)
        if not parts:
            return np.zeros(0, np.uint64)
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def put(self, field: str, train_ids: np.ndarray, offsets: np.ndarray,
            inner: np.ndarray) -> None:
        """Keep the checked IDs ``inner`` of these trains (frames ``offsets[t]`` to
        ``offsets[t + 1]``), unless they alone exceed the bound."""
        if len(inner) > self.max_ids:
            return
        with self._lock:
            if self._sizes.get(field, 0) + len(inner) > self.max_ids:
                self._ids[field], self._sizes[field] = {}, 0
            known = self._ids.setdefault(field, {})
            bounds = offsets.tolist()
            for t, tid in enumerate(train_ids.tolist()):
                if tid not in known:
                    ids = inner[bounds[t]:bounds[t + 1]].copy()
                    ids.flags.writeable = False
                    known[tid] = ids
                    self._sizes[field] = self._sizes.get(field, 0) + len(ids)
