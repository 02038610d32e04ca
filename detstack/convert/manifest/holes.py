"""Chunks the counts promise but the source file never allocated: the writer's marker.

A DAQ may write a train's INDEX counts and never the chunk itself; HDF5 reads that
as the dataset's fill value, and a manifest without a reference for the chunk
reads the same. A reader cannot tell such a chunk from a reference someone
deleted (which must be an error), so the writer lists them per key in
``record["manifest"]["unallocated"]`` as ``[start, stop)`` runs of raveled
chunk-grid indices: a run of holes costs one pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RECORD_FIELD = "unallocated"


def index_ranges(index: np.ndarray) -> list[list[int]]:
    """The integers of ``index`` as sorted ``[start, stop)`` runs."""
    values = np.unique(np.asarray(index, np.int64))
    if not len(values):
        return []
    cut = np.flatnonzero(np.diff(values) != 1) + 1
    starts = values[np.concatenate([[0], cut])]
    stops = values[np.concatenate([cut - 1, [len(values) - 1]])] + 1
    return [[int(a), int(b)] for a, b in zip(starts, stops, strict=True)]


def merged(ranges: list[list[int]]) -> list[list[int]]:
    """Runs gathered module by module, sorted and joined where they touch."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def record_holes(meta: dict[str, Any], specs: list[Any]) -> None:
    """Write every spec's unallocated runs into the record held in ``meta``'s root
    attributes (call after the references were built: that is when they are known)."""
    found = {s.name: merged(s.unallocated) for s in specs if getattr(s, "unallocated", None)}
    record = meta[".zattrs"]["detstack_record"]
    record.setdefault("manifest", {})[RECORD_FIELD] = found
