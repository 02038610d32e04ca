"""Small keys (pulse and cell IDs, headers) copied out of the run, in bounded memory.

A 30,000-train AGIPD-1M run has ~30 million pulse IDs per module set (245 MB as
uint64), and a corrected run a handful of such keys. The sidecar takes them a window
of trains at a time (``train_blocks``): every source dataset of the window is read
whole (they are small) and scattered into a block of all modules, so memory depends on
the window, not on the run. Arrays without a train axis (the frame layout's
``(module, frame)``) and the compact form's inline chunks are read whole
(``whole_array``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..plan import KeyPlan, ViewPlan
from .refs import Rows, dataset_id, key_rows, row_groups
from .storage import UnsupportedKeyError

WINDOW_TRAINS = 256   # trains per block (the sidecar chunks by train: any size works)


def has_train_axis(plan: ViewPlan, kp: KeyPlan) -> bool:
    """(module, train, ...) arrays stream by trains; (module, frame, ...) do not."""
    return not (plan.frames and kp.per_frame)


def _scatter(kp: KeyPlan, out: np.ndarray, rows: Rows, fmap: Any, local: np.ndarray) -> None:
    """Read the source datasets of ``rows`` and put their rows at ``out[local]``."""
    for fi, m, sel in row_groups(rows):
        dsid = dataset_id(fmap, fi, m, kp.key)   # small: read whole, low level (fast)
        src = rows.src_row[sel]
        if not dsid.shape or int(src.max()) >= dsid.shape[0]:
            raise UnsupportedKeyError(kp.key, f"INDEX of {fmap.files[fi].path} points "
                                      "past the end of its data")
        buf = np.empty(dsid.shape, kp.dtype)
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, buf)
        out[local[sel]] = buf[src]


def whole_array(plan: ViewPlan, kp: KeyPlan) -> np.ndarray:
    """The key as one array of the view's shape, read module by module."""
    fmap = plan.frame_map(kp)
    out = np.full((math.prod(plan.lead_shape(kp)),) + kp.entry_shape, kp.fill_value, kp.dtype)
    for module in range(fmap.n_modules):   # module by module: bounded row tables
        rows, _ = key_rows(plan, kp, [module])
        _scatter(kp, out, rows, fmap, rows.view_row)
    return out.reshape(plan.shape(kp))


def train_blocks(plan: ViewPlan, kps: list[KeyPlan], window: int = WINDOW_TRAINS
                 ) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """(t0, t1, {key: its values for trains t0:t1, shape (module, t1 - t0, ...)}) for
    keys with a train axis, window by window; the window's files stay open in the
    handle pool while every key reads them."""
    n_trains = len(plan.train_ids)
    for t0 in range(0, n_trains, window):
        t1 = min(t0 + window, n_trains)
        out = {}
        for kp in kps:
            lead = plan.lead_shape(kp)
            per_train = math.prod(lead[2:])
            block = np.full((lead[0] * (t1 - t0) * per_train,) + kp.entry_shape,
                            kp.fill_value, kp.dtype)
            rows, fmap = key_rows(plan, kp, trains=(t0, t1))
            slot, rest = np.divmod(rows.view_row, n_trains * per_train)
            local = slot * ((t1 - t0) * per_train) + rest - t0 * per_train
            _scatter(kp, block, rows, fmap, local)
            shape = plan.shape(kp)
            out[kp.key] = block.reshape((shape[0], t1 - t0) + shape[2:])
        yield t0, t1, out
