"""The oracle for every view form: a key's full view array built from the run with h5py."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from detstack.convert.plan import ViewPlan


def expected_array(plan: ViewPlan, key: str) -> np.ndarray:
    """Follow ``plan.blocks`` with plain h5py reads; gaps keep the key's fill value."""
    kp = plan.key(key)
    out = np.full(plan.shape(kp), kp.fill_value, kp.dtype)
    files: dict[Path, h5py.File] = {}
    try:
        for b in plan.blocks(kp):
            if b.file not in files:
                files[b.file] = h5py.File(b.file, "r")
            rows = kp.stored_rows(files[b.file][b.dataset][b.src_start:b.src_start + b.count])
            out[b.index] = rows if kp.per_frame else rows[0]
    finally:
        for f in files.values():
            f.close()
    return out
