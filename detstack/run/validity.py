"""Which train IDs to trust when the file carries no time-server flag."""

from __future__ import annotations

import numpy as np


def guess_valid(train_ids: np.ndarray) -> np.ndarray:
    """Mark the fewest IDs invalid so that the rest strictly increase.

    At each place where the sequence fails to increase, either the earlier IDs
    that are too high or the later IDs that are too low are blamed, whichever
    are fewer (ties blame the later ones): one corrupted ID marks exactly itself.
    """
    tids = np.asarray(train_ids, dtype=np.uint64)
    valid = np.ones(len(tids), dtype=bool)
    for i in np.flatnonzero(tids[1:] <= tids[:-1]):
        before, after = tids[: i + 1], tids[i + 1 :]
        too_high = before >= tids[i + 1]
        too_low = after <= tids[i]
        if too_high.sum() < too_low.sum():
            valid[: i + 1] &= ~too_high
        else:
            valid[i + 1 :] &= ~too_low
    return valid
