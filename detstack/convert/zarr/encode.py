"""Encode stored objects of a zarr conversion with as few copies as the codecs allow.

A conversion task turns each shard's source rows into encoded inner chunks; what is
not encoding is overhead, kept small here:

* buffers are reused per thread (``buffers``): a task's slab of source rows, and the
  transposed inner chunk, which stays in the CPU cache for the compressor;
* a shard is written as its list of encoded chunks and index (``os.writev``), never
  joined into one buffer.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .layout import EMPTY, ArrayLayout, shard_index

Parts = list[Any]    # bytes-like pieces of one stored object, in order


def shard_parts(unit: np.ndarray, valid: np.ndarray, lay: ArrayLayout,
                encode: Callable[[np.ndarray], Parts]) -> Parts:
    """One shard from its values ``unit`` (the unit shape, module axis first): its encoded
    inner chunks and index, as pieces to write in order.

    ``valid`` (trains[, frames]) marks entries that have source rows; inner chunks
    without any are left out of the shard (they read as the fill value). ``encode``
    gives each inner chunk as its pieces (``chunk_encoder(..., parts=True)``).
    """
    grid = tuple(u // c for u, c in zip(lay.unit, lay.chunk, strict=True))
    index = np.full(grid + (2,), EMPTY, np.uint64)
    parts: Parts = []
    offset = 0
    for pos in np.ndindex(*grid):
        sel = tuple(slice(p * c, (p + 1) * c) for p, c in zip(pos, lay.chunk, strict=True))
        if not valid[sel[1:1 + valid.ndim]].any():
            continue
        pieces = encode(unit[sel])
        n = sum(memoryview(p).nbytes for p in pieces)
        index[pos] = (offset, n)
        parts.extend(pieces)
        offset += n
    parts.append(shard_index(index))
    return parts


def write_parts(path: str, parts: Parts) -> None:
    """Write ``parts`` as the whole content of the file ``path`` (created or truncated)."""
    iov_max = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        views = [memoryview(p).cast("B") for p in parts]
        i = 0
        while i < len(views):
            n = os.writev(fd, views[i:i + iov_max])
            if n == 0 and any(v.nbytes for v in views[i:]):
                raise OSError(errno.EIO, f"{path}: the file system accepted no bytes")
            while i < len(views) and n >= views[i].nbytes:     # whole pieces written
                n -= views[i].nbytes
                i += 1
            if n:                                              # a short write mid-piece
                views[i] = views[i][n:]
    finally:
        os.close(fd)
