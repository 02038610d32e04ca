"""CPU seconds of a benchmark process, its worker processes included."""

from __future__ import annotations

import os


def cpu_seconds() -> float:
    """User + system seconds of this process and of its children that have ended
    (``to_zarr``'s forked workers end with the conversion): ``time.process_time`` alone
    would leave out the workers' CPU."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
