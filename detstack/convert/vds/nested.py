"""Virtual datasets whose mappings stay few: beyond ``NEST_MAPPINGS`` they nest in blocks.

HDF5 holds every mapping of a virtual dataset being created in memory, ~25 KB each
(measured with HDF5 2.0: ~6.4 KB in the creation property list, the two selections of
~2.6 KB each since a hyperslab keeps fixed arrays for 32 dimensions whatever the rank,
then ~19 KB more while ``H5Dcreate`` copies and encodes the list), and glibc keeps the
freed memory in the process. That is inherent to HDF5; what we choose is how many
mappings one dataset holds. A key mapped per (module, sequence file) holds ~2,000 of
them at 30,000 AGIPD-1M trains: 50 MB, growing with run length.

``NestedBuilder`` collects the mappings of one dataset; ``create`` writes them into the
dataset itself when there are at most ``NEST_MAPPINGS`` (short runs: as before), else
cuts the dataset along its train or frame axis into blocks of at most ``NEST_MAPPINGS``
mappings each, written as virtual datasets of the same file (``/_blocks/<path>/<start>``,
as blocked pixel keys) and mapped whole by the dataset (same shape on both sides: HDF5's
fast path). Each block is created and closed before the next, so HDF5 holds one block's
mappings at a time, and the dataset itself one per block. A mapping crossing a cut is
split in two at the cut; the data read is the same element for element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .keys import BLOCK_GROUP
from .mappings import MappingBuilder, SourceRef

NEST_MAPPINGS = 128     # mappings a dataset holds itself; more go into nested blocks


@dataclass(frozen=True)
class _Mapping:
    vstart: tuple[int, ...]
    vcount: tuple[int, ...]
    src: SourceRef
    sstart: tuple[int, ...]
    scount: tuple[int, ...]


def map_whole(top: MappingBuilder, grp: h5py.Group, name: str, shape: tuple[int, ...],
              at: tuple[int, ...]) -> None:
    """Map dataset ``grp/name`` of this file whole at ``at`` of ``top``."""
    ref = SourceRef(b".", f"/{grp.name.strip('/')}/{name}".encode(), h5py.h5s.create_simple(shape))
    top.add(at, shape, ref, (0,) * len(shape), shape)


class NestedBuilder:
    """Collects the mappings of one virtual dataset (``MappingBuilder.add``'s arguments);
    ``create`` nests them along ``axis`` (the train or frame axis) when there are many.

    Every mapping's virtual selection must be a box whose first axis longer than one is
    ``axis`` (or has length one there): elements pair in row-major order, so cutting the
    box along ``axis`` cuts the source rows at the matching row.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, fillvalue: Any,
                 axis: int) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.fillvalue = fillvalue
        self.axis = axis
        self._maps: list[_Mapping] = []
        self.count = 0        # mappings written (nested: the blocks' and the dataset's)
        self.blocks = 0       # nested blocks written (0: the mappings are in the dataset)

    def add(self, vstart: tuple[int, ...], vcount: tuple[int, ...], src: SourceRef,
            sstart: tuple[int, ...], scount: tuple[int, ...]) -> None:
        self._maps.append(_Mapping(tuple(vstart), tuple(vcount), src, tuple(sstart),
                                   tuple(scount)))

    def create(self, group: h5py.Group, name: str, limit: int | None = None) -> h5py.Dataset:
        """The virtual dataset ``group/name`` (see the module docstring)."""
        limit = NEST_MAPPINGS if limit is None else int(limit)
        maps, self._maps = self._maps, []
        if len(maps) <= limit:
            builder = MappingBuilder(self.shape, self.dtype, self.fillvalue)
            for m in maps:
                builder.add(m.vstart, m.vcount, m.src, m.sstart, m.scount)
            self.count = builder.count
            return builder.create(group, name)
        maps.sort(key=lambda m: m.vstart[self.axis])
        cuts = _cuts(maps, self.axis, limit)
        path = f"{group.name.rstrip('/')}/{name}".lstrip("/")
        grp = group.file.require_group(f"{BLOCK_GROUP}/{path}")
        top = MappingBuilder(self.shape, self.dtype, self.fillvalue)
        edges = [0, *cuts, self.shape[self.axis]]
        first = 0          # the first mapping that may reach into the block
        total = 0
        for c0, c1 in zip(edges[:-1], edges[1:], strict=True):
            shape = self.shape[:self.axis] + (c1 - c0,) + self.shape[self.axis + 1:]
            part = MappingBuilder(shape, self.dtype, self.fillvalue)
            while first < len(maps) and _end(maps[first], self.axis) <= c0:
                first += 1
            for m in maps[first:]:
                if m.vstart[self.axis] >= c1:
                    break
                piece = _piece(m, self.axis, c0, c1)
                if piece is not None:
                    part.add(*piece)
            if not part.count:
                continue
            block = f"{c0:09d}"
            part.create(grp, block).id.close()
            total += part.count + 1
            at = (0,) * self.axis + (c0,) + (0,) * (len(shape) - self.axis - 1)
            map_whole(top, grp, block, shape, at)
            self.blocks += 1
            del part
        self.count = total
        return top.create(group, name)


def _end(m: _Mapping, axis: int) -> int:
    return m.vstart[axis] + m.vcount[axis]


def _cuts(maps: list[_Mapping], axis: int, limit: int) -> list[int]:
    """Positions along ``axis`` cutting ``maps`` (sorted by start) into blocks of at most
    ``limit`` pieces: a block is cut at the start of the mapping that would exceed it;
    the mappings crossing the cut (at most one per module) continue in the next block."""
    cuts: list[int] = []
    ends: list[int] = []      # ends of the mappings of the current block
    start = 0
    for m in maps:
        v0 = m.vstart[axis]
        if len(ends) >= limit and v0 > start:
            cuts.append(v0)
            start = v0
            ends = [e for e in ends if e > v0]
        ends.append(_end(m, axis))
    return cuts


def _piece(m: _Mapping, axis: int, c0: int, c1: int
           ) -> tuple[tuple[int, ...], tuple[int, ...], SourceRef, tuple[int, ...],
                      tuple[int, ...]] | None:
    """The part of mapping ``m`` inside ``[c0, c1)`` along ``axis``, placed in the block
    starting at ``c0``: (vstart, vcount, source, sstart, scount), or None if outside."""
    v0, vn = m.vstart[axis], m.vcount[axis]
    a, b = max(v0, c0), min(v0 + vn, c1)
    if a >= b:
        return None
    if any(n != 1 for n in m.vcount[:axis]):
        raise RuntimeError(f"internal: a mapping {m.vcount} spans more than one element "
                           f"before axis {axis}; it cannot be cut there")
    rows = m.scount[0]
    lo, hi = (a - v0) * rows, (b - v0) * rows
    if lo % vn or hi % vn:
        raise RuntimeError(f"internal: cutting a mapping of {vn} virtual positions over "
                           f"{rows} source rows at {a - v0}:{b - v0} splits a source row")
    vstart = m.vstart[:axis] + (a - c0,) + m.vstart[axis + 1:]
    vcount = m.vcount[:axis] + (b - a,) + m.vcount[axis + 1:]
    sstart = (m.sstart[0] + lo // vn,) + m.sstart[1:]
    scount = ((hi - lo) // vn,) + m.scount[1:]
    return vstart, vcount, m.src, sstart, scount
