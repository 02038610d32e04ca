"""How trains are cut into parts for ``split_trains`` and dask chunks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import MultimodDetectorBase


def even_parts(n: int, parts: int | None, trains_per_part: int | None) -> Iterator[slice]:
    """Near-equal positional slices; ``parts`` is a minimum when both are given."""
    if trains_per_part is not None:
        n_parts = math.ceil(n / trains_per_part)
        if parts is not None:
            n_parts = max(n_parts, min(parts, n))
    elif parts is not None:
        n_parts = min(parts, n)
    else:
        raise ValueError("One of parts, trains_per_part must be specified")
    for i in range(n_parts):
        yield slice(i * n // n_parts, (i + 1) * n // n_parts)


def split_train_ranges(det: MultimodDetectorBase, parts: int | None,
                       trains_per_part: int | None,
                       frames_per_part: int | None) -> Iterator[slice]:
    """Positional train slices with whole trains, honouring every given limit."""
    if parts is None and trains_per_part is None and frames_per_part is None:
        raise ValueError("One of parts, trains_per_part, frames_per_part must be specified")
    counts = [int(c) for c in det.frame_map.train_counts()]
    n = len(counts)
    if not n:
        return
    if frames_per_part is not None:
        try:
            per_train = det.frames_per_train
        except ValueError:
            per_train = 0
        if per_train:
            ntpp = max(1, frames_per_part // per_train)
            trains_per_part = min(ntpp, trains_per_part or ntpp)
            frames_per_part = None
    if frames_per_part is None:
        yield from even_parts(n, parts, trains_per_part)
        return
    limit = math.inf if trains_per_part is None else trains_per_part
    if parts is not None:
        limit = min(limit, n // parts)
    per_entry = det._frames_per_entry
    start, n_trains, n_entries = 0, 1, counts[0]
    for i in range(1, n):
        n_trains += 1
        n_entries += counts[i]
        if n_trains > limit or n_entries * per_entry > frames_per_part:
            yield slice(start, i)
            start, n_trains, n_entries = i, 1, counts[i]
    yield slice(start, n)
