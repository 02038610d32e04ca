"""One chunk of an HDF5 dataset, found in its chunk index a few nodes at a time.

The manifest guard must know that a reference is a stored chunk of the dataset it names.
Reading the whole chunk index (``chunk_index.chunk_table``) reads every node of the
version-1 B-tree: ~250 nodes for the 16,000 chunks of a 250-train AGIPD sequence file,
~7 ms from the page cache and ~50 ms from disk per file; HDF5's own lookup by
coordinate (``get_chunk_info_by_coord``) iterates the index up to the chunk. Going down
from the root reads one node per level (three for such a file), as HDF5 does when it
reads a chunk. A reference gives an address, not coordinates, so ``find_address``
searches the chunk grid for it, a leaf at a time (``_search``); whatever path the search
takes, a chunk it returns is an entry of a leaf of the dataset's own index, reached from
the root its layout message names. Every node is checked (signature, node type, the
level one below its parent's, keys strictly increasing, on the chunk grid, inside the
file); anything else is ``Unrecognised`` and the caller reads the whole index instead.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ..convert.chunk_index import (
    Unrecognised,
    btree_root,
    layout_message,
    node_format,
    superblock,
    whole_node,
)

MAX_LEVELS = 32          # deeper than any B-tree of 2**62 chunks: not an index we trust
CACHED_NODES = 64        # upper nodes and searched leaves are shared by later lookups
MAX_PROBES = 24          # leaves read to find a chunk by address before giving up
Chunk = tuple[int, int, int]   # (address, stored size, filter mask)


@dataclass
class _Node:
    level: int
    keys: list[list[int]]        # internal nodes: one more than entries, the last bounds it
    entries: np.ndarray
    cells: np.ndarray | None = None     # leaves: C-order chunk numbers of the entries
    addrs: np.ndarray | None = None     # leaves: their addresses


class PointIndex:
    """The version-1 B-tree chunk index of one dataset, read a node at a time through
    ``fd`` (the file's descriptor). ``Unrecognised`` if the dataset's storage is not
    such an index (version-2 object headers, HDF5 1.10+ indexes...)."""

    def __init__(self, fd: int, ds: h5py.Dataset) -> None:
        dcpl = ds.id.get_create_plist()
        if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_external_count():
            raise Unrecognised("not chunked storage")
        self.fd = fd
        self.rank = ds.ndim
        self.file_size = os.fstat(fd).st_size
        so, sl = superblock(fd)
        header = h5py.h5g.get_objinfo(ds.id, b".").objno[0]
        self.root = btree_root(layout_message(fd, header, so, sl, self.file_size), ds, so)
        self.entry, self.head, self.key_bytes, self.node_bytes = node_format(self.rank, so)
        self.chunks = np.array(ds.chunks, np.int64)
        self.grid = tuple(-(-int(n) // int(c)) for n, c in zip(ds.shape, ds.chunks,
                                                               strict=True))
        self.grid_array = np.array(self.grid, np.int64)
        self.strides = np.array([int(np.prod(self.grid[i + 1:])) for i in range(self.rank)],
                                np.int64)     # chunk number = cell coordinates @ strides
        self._nodes: dict[int, _Node] = {}

    # -- nodes ----------------------------------------------------------------------------

    def _node(self, addr: int) -> _Node:
        hit = self._nodes.get(addr)
        if hit is not None:
            return hit
        if addr <= 0 or addr + self.head > self.file_size:
            raise Unrecognised("B-tree node outside the file")
        level, n, buf = whole_node(self.fd, addr, os.pread(self.fd, self.node_bytes, addr),
                                   self.entry, self.head, self.key_bytes)
        if n == 0:
            raise Unrecognised("empty B-tree node")
        entries = np.frombuffer(buf, self.entry, count=n, offset=self.head)
        if level == 0:     # keys as C-order chunk numbers, which must increase
            offsets = entries["offset"][:, :self.rank].astype(np.int64)
            if (offsets % self.chunks).any():
                raise Unrecognised("chunk coordinates off the chunk grid")
            cells = offsets // self.chunks
            if (cells >= self.grid_array).any():
                raise Unrecognised("chunk coordinates outside the dataset")
            numbers = cells @ self.strides
            if (np.diff(numbers) <= 0).any():
                raise Unrecognised("B-tree keys not increasing")
            node = _Node(0, [], entries, numbers, entries["addr"].astype(np.int64))
        else:
            last = np.frombuffer(buf, "<u8", count=self.rank + 1,
                                 offset=self.head + n * self.entry.itemsize + 8)
            keys = entries["offset"][:, :self.rank].tolist() + [last[:self.rank].tolist()]
            if any(a >= b for a, b in zip(keys[:-1], keys[1:], strict=True)):
                raise Unrecognised("B-tree keys not increasing")
            node = _Node(level, keys, entries)
        if len(self._nodes) >= CACHED_NODES:
            self._nodes.pop(next(iter(self._nodes)))
        self._nodes[addr] = node
        return node

    def _leaf(self, coord: list[int]) -> _Node:
        """The leaf whose key range holds ``coord``, or the nearest one (the first or
        last leaf) if no range does."""
        addr, expect = self.root, None
        for _ in range(MAX_LEVELS):
            node = self._node(addr)
            if expect is not None and node.level != expect:
                raise Unrecognised("B-tree levels disagree")
            if node.level == 0:
                return node
            n = len(node.entries)
            i = min(max(bisect.bisect_right(node.keys, coord, 0, n) - 1, 0), n - 1)
            addr, expect = int(node.entries[i]["addr"]), node.level - 1
        raise Unrecognised("B-tree deeper than any chunk index")

    def _chunk(self, node: _Node, i: int) -> Chunk:
        start, size = int(node.entries[i]["addr"]), int(node.entries[i]["size"])
        if start <= 0 or size <= 0 or start + size > self.file_size:
            raise Unrecognised("chunk outside the file")
        return start, size, int(node.entries[i]["mask"])

    # -- lookups --------------------------------------------------------------------------

    def find(self, offset: Sequence[int]) -> Chunk | None:
        """The chunk whose first element is at ``offset`` (element coordinates); None if
        the index holds no such chunk, or has a node this reader does not recognise."""
        if self.root is None or len(offset) != self.rank:
            return None
        coord = [int(v) for v in offset]
        if any(v < 0 or v % c for v, c in zip(coord, self.chunks.tolist(), strict=True)) \
                or any(v // c >= g for v, c, g in zip(coord, self.chunks.tolist(), self.grid,
                                                      strict=True)):
            return None
        cell = sum(v // c * s for v, c, s in zip(coord, self.chunks.tolist(),
                                                 self.strides.tolist(), strict=True))
        try:
            leaf = self._leaf(coord)
            assert leaf.cells is not None
            i = int(np.searchsorted(leaf.cells, cell))
            return self._chunk(leaf, i) if i < len(leaf.cells) and leaf.cells[i] == cell \
                else None
        except (Unrecognised, OSError, ValueError):
            return None

    def find_address(self, addr: int) -> Chunk | None:
        """The chunk stored at byte ``addr``; None if the search does not find it (no
        such chunk, chunks not in the file in coordinate order, more than
        ``MAX_PROBES`` leaves, or a node this reader does not recognise)."""
        if self.root is None or not 0 < addr < self.file_size:
            return None
        try:
            return self._search(addr)
        except (Unrecognised, OSError, ValueError):
            return None

    def _probe(self, cell: int) -> _Node:
        """The leaf holding (or nearest to) chunk number ``cell``."""
        coord = []
        for stride, chunk in zip(self.strides.tolist(), self.chunks.tolist(), strict=True):
            coord.append(cell // stride * chunk)
            cell %= stride
        return self._leaf(coord)

    def _search(self, addr: int) -> Chunk | None:
        """Search the chunk numbers for ``addr``, assuming that chunks lie in the file in
        the order of their coordinates (as writers that append rows leave them): first
        the first and last leaves (kept for the next lookup), then by interpolation
        between the addresses known so far, halving where that shrinks the range too
        little. A leaf whose addresses are not increasing ends the search."""
        lo, hi = 0, int(np.prod(self.grid)) - 1    # the chunk numbers it may have
        lo_addr = hi_addr = 0                       # addresses of chunks lo-1 and hi+1
        halve = False
        for probe in range(MAX_PROBES):
            if probe < 2:
                cell = lo if probe == 0 else hi
            elif halve:
                cell = (lo + hi) // 2
            else:
                cell = lo - 1 + (hi - lo + 2) * (addr - lo_addr) // max(hi_addr - lo_addr, 1)
            leaf = self._probe(min(max(cell, lo), hi))
            cells, addrs = leaf.cells, leaf.addrs
            assert cells is not None and addrs is not None
            i = int(np.searchsorted(addrs, addr))
            if i < len(addrs) and addrs[i] == addr:
                return self._chunk(leaf, i)
            if len(addrs) > 1 and (np.diff(addrs) <= 0).any():
                return None                          # not in coordinate order
            if 0 < i < len(addrs):
                return None                          # between two chunks of this leaf
            width = hi - lo
            if i == 0:
                hi, hi_addr = min(hi, int(cells[0]) - 1), int(addrs[0])
            else:
                lo, lo_addr = max(lo, int(cells[-1]) + 1), int(addrs[-1])
            if lo > hi:
                return None
            halve = probe >= 2 and not halve and 2 * (hi - lo) > width
        return None


def point_index(fd: int, ds: Any) -> PointIndex | None:
    """The dataset's index for single lookups, or None where it is not a version-1
    B-tree we recognise (the caller then reads the whole index)."""
    try:
        return PointIndex(fd, ds)
    except (Unrecognised, OSError, ValueError):
        return None
