"""Where every chunk of an HDF5 dataset is stored, read in bulk from its chunk index.

A zarr manifest needs the byte offset and size of every chunk: about 90 million for the
pixel keys of an hour of corrected AGIPD-1M. h5py's ``chunk_iter`` calls back into Python
once per chunk (1-2 us each). But files in HDF5's default (earliest) format, which the
DAQ and h5py write, index chunks with a version-1 B-tree whose leaf nodes hold each
chunk's size, filter mask, coordinates and address as fixed-size little-endian records,
up to 64 per node: read with numpy, one read per node and several reads in flight (the
nodes lie far apart: on a cold page cache each read waits for the disk), ~0.5 us per
chunk with the checks when the nodes are in the page cache.

`chunk_table` reads the B-tree itself when it recognises every structure on the way
(superblock, version-1 object header, version-3 chunked layout message, B-tree nodes of
type 1) and checks what HDF5 guarantees of it: node signatures and levels, chunk
coordinates strictly increasing and on the chunk grid, sizes equal to the chunk's bytes
without filters, chunks inside the file and not overlapping; it then asks HDF5 for a few chunks
(``get_chunk_info_by_coord``) and requires the same answers. Anything it does not
recognise or that fails a check is read with ``chunk_iter`` instead (version-2 object
headers, HDF5 1.10+ indexes: extensible/fixed arrays, version-2 B-trees...), so the
table is HDF5's own either way.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

log = logging.getLogger(__name__)

SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_NODES = 1 << 24      # a B-tree larger than this is not a chunk index we trust
DEFAULT_K = 32           # HDF5's default chunk B-tree K: nodes of up to 2K entries
IO_THREADS = 32          # node reads in flight at once (a cold virtio disk: 19k reads/s
                         # with 8, 29k with 32)


@dataclass(frozen=True)
class ChunkTable:
    """Stored chunks of one dataset, in chunk-coordinate order."""

    coords: np.ndarray   # (n, rank) int64 chunk grid coordinates (element offset // chunk)
    addr: np.ndarray     # (n,) int64 byte offset in the file
    size: np.ndarray     # (n,) int64 stored bytes
    mask: np.ndarray     # (n,) int64 filter mask (bit set: filter skipped)

    def __len__(self) -> int:
        return len(self.addr)


class Unrecognised(Exception):
    """The fast path does not apply (the reason is logged); chunk_iter reads instead."""


def chunk_table(ds: h5py.Dataset) -> ChunkTable:
    """Every stored chunk of the chunked dataset ``ds``."""
    try:
        return _from_btree(ds)
    except Unrecognised as why:
        log.debug("%s:%s: chunk index read with chunk_iter (%s)", ds.file.filename, ds.name, why)
    return from_chunk_iter(ds)


def from_chunk_iter(ds: h5py.Dataset) -> ChunkTable:
    """The table from HDF5's ``chunk_iter`` (one Python call per chunk)."""
    offs: list[tuple[int, ...]] = []
    addr: list[int] = []
    size: list[int] = []
    mask: list[int] = []

    def visit(i: Any) -> None:
        offs.append(i.chunk_offset)
        addr.append(i.byte_offset)
        size.append(i.size)
        mask.append(i.filter_mask)

    ds.id.chunk_iter(visit)
    coords = np.array(offs, np.int64).reshape(len(offs), ds.ndim) // np.array(ds.chunks, np.int64)
    return ChunkTable(coords, np.array(addr, np.int64), np.array(size, np.int64),
                      np.array(mask, np.int64))


# -- the fast path ------------------------------------------------------------------------

def _uint(buf: bytes, at: int, n: int) -> int:
    return int.from_bytes(buf[at:at + n], "little")


def superblock(fd: int) -> tuple[int, int]:
    """(size of offsets, size of lengths); only files whose superblock is at byte 0 with
    base address 0 (no user block), where every address is a file offset."""
    head = os.pread(fd, 48, 0)
    if head[:8] != SIGNATURE:
        raise Unrecognised("no HDF5 signature at byte 0 (user block?)")
    version = head[8]
    if version in (0, 1):
        so, sl, base_at = head[13], head[14], 24 if version == 0 else 28
    elif version in (2, 3):
        so, sl, base_at = head[9], head[10], 12
    else:
        raise Unrecognised(f"superblock version {version}")
    if so not in (2, 4, 8) or sl not in (2, 4, 8):
        raise Unrecognised(f"offset/length sizes {so}/{sl}")
    if _uint(head, base_at, so) != 0:
        raise Unrecognised("base address is not 0")
    return so, sl


def layout_message(fd: int, header: int, so: int, sl: int, file_size: int) -> bytes:
    """The data layout message of a version-1 object header (following continuations)."""
    prefix = os.pread(fd, 16, header)
    if len(prefix) < 16 or prefix[0] != 1:
        raise Unrecognised("not a version-1 object header")
    n_messages, block_size = struct.unpack_from("<H", prefix, 2)[0], _uint(prefix, 8, 4)
    blocks = [(header + 16, block_size)]
    seen = 0
    while blocks and seen < n_messages:
        start, length = blocks.pop(0)
        if start + length > file_size or length > 1 << 24:
            raise Unrecognised("object header block outside the file")
        buf = os.pread(fd, length, start)
        p = 0
        while p + 8 <= len(buf) and seen < n_messages:
            mtype, msize = struct.unpack_from("<HH", buf, p)
            data = buf[p + 8:p + 8 + msize]
            seen += 1
            if mtype == 0x0008:
                return data
            if mtype == 0x0010:
                blocks.append((_uint(data, 0, so), _uint(data, so, sl)))
            p += 8 + msize
    raise Unrecognised("no data layout message")


def btree_root(layout: bytes, ds: h5py.Dataset, so: int) -> int | None:
    """The B-tree address of a version-3 chunked layout message of ``ds`` (None: nothing
    allocated). store/manifest_btree.py uses it too."""
    return _root_address(layout, ds.ndim, tuple(ds.chunks), so)


def _root_address(layout: bytes, rank: int, chunks: tuple[int, ...], so: int) -> int | None:
    """``btree_root`` of a dataset of rank ``rank`` and chunk shape ``chunks``."""
    if len(layout) < 3 + so or layout[0] != 3 or layout[1] != 2:
        raise Unrecognised(f"layout message version {layout[0] if layout else '?'} "
                            "(not a version-1 B-tree index)")
    nd = layout[2]
    if nd != rank + 1 or len(layout) < 3 + so + 4 * nd:
        raise Unrecognised("layout rank does not match the dataset")
    dims = struct.unpack_from(f"<{nd}I", layout, 3 + so)
    if tuple(dims[:-1]) != tuple(chunks):
        raise Unrecognised("layout chunk shape does not match the dataset")
    addr = _uint(layout, 3, so)
    return None if addr == (1 << (8 * so)) - 1 else addr


def node_format(rank: int, so: int) -> tuple[np.dtype, int, int, int]:
    """The byte layout of a raw-data B-tree node of a ``rank``-dimensional dataset in a
    file of ``so``-byte addresses: (entry dtype, header bytes, key bytes, bytes of a full
    node of the default K (what the first read of a node asks for))."""
    entry = np.dtype([("size", "<u4"), ("mask", "<u4"), ("offset", "<u8", (rank + 1,)),
                      ("addr", f"<u{so}")])
    head, key = 8 + 2 * so, 8 + 8 * (rank + 1)
    return entry, head, key, head + 2 * DEFAULT_K * entry.itemsize + key


def whole_node(fd: int, addr: int, buf: bytes, entry: np.dtype, head: int, key: int
               ) -> tuple[int, int, bytes]:
    """(level, entry count, bytes) of the node at ``addr`` whose first read gave ``buf``:
    its signature checked, read again whole when it holds more than the default K."""
    if buf[:4] != b"TREE" or buf[4:5] != b"\x01":
        raise Unrecognised("not a raw-data B-tree node")
    n = _uint(buf, 6, 2)
    need = head + n * entry.itemsize + key
    if len(buf) < need:
        buf = os.pread(fd, need, addr)
        if len(buf) < need:
            raise Unrecognised("B-tree node cut short")
    return buf[5], n, buf


def _read_nodes(fd: int, addrs: list[int], size: int) -> list[bytes]:
    """``size`` bytes at each address, several reads in flight at once.

    Nodes lie far apart (a leaf every ~64 chunks, i.e. megabytes of pixel data between
    them), so on a cold page cache each read waits for the disk: concurrent reads keep
    its queue full (``os.pread`` releases the GIL). Each thread reads one contiguous
    share of the (sorted) addresses; small levels are read in order."""
    if len(addrs) < 4 * IO_THREADS:
        return [os.pread(fd, size, a) for a in addrs]
    step = -(-len(addrs) // IO_THREADS)
    shares = _pool().map(lambda lo: [os.pread(fd, size, a) for a in addrs[lo:lo + step]],
                         range(0, len(addrs), step))
    return [buf for share in shares for buf in share]


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(IO_THREADS, thread_name_prefix="detstack-btree")


if hasattr(os, "register_at_fork"):   # a forked child has none of the pool's threads
    os.register_at_fork(after_in_child=_pool.cache_clear)


def _leaf_records(fd: int, root: int, rank: int, so: int, file_size: int
                  ) -> tuple[np.ndarray, int]:
    """Every leaf entry of the B-tree, in key order, as one structured array, and the
    number of entries of the first leaf.

    Level by level, each node with one read of a full node of the default K=32 (larger
    nodes are read again whole), in ascending file order within a level, several at a
    time (``_read_nodes``). A node of the default K=32 is 3,136 bytes for ~57 chunks (55
    bytes per chunk) of a 3-D dataset and usually spans two pages, so a cold read costs
    ~140 bytes of page cache per chunk: 92 M chunks are ~13 GB read from disk (reading
    the node's own size, not a whole page, spares the second page for ~1 node in 4)."""
    entry, head, key, node_bytes = node_format(rank, so)
    nodes = [root]            # this level's nodes, in key order
    level: int | None = None  # the level they must have
    visited = 0
    while True:
        visited += len(nodes)
        if visited > MAX_NODES:
            raise Unrecognised("B-tree too large")
        if max(nodes) + head > file_size:
            raise Unrecognised("B-tree node outside the file")
        order = sorted(range(len(nodes)), key=nodes.__getitem__)
        bodies = [b""] * len(nodes)
        levels = set()
        for i, buf in zip(order, _read_nodes(fd, [nodes[i] for i in order], node_bytes),
                          strict=True):
            node_level, n, buf = whole_node(fd, nodes[i], buf, entry, head, key)
            levels.add(node_level)
            bodies[i] = buf[head:head + n * entry.itemsize]
        if len(levels) != 1 or (level is not None and levels != {level}):
            raise Unrecognised("B-tree levels disagree")
        level = levels.pop()
        if level == 0:
            return np.frombuffer(b"".join(bodies), entry), len(bodies[0]) // entry.itemsize
        nodes = np.frombuffer(b"".join(bodies), entry)["addr"].astype(np.int64).tolist()
        level -= 1


def _spot_checks(n: int, first_leaf: int, top: np.ndarray, ds: h5py.Dataset) -> list[int]:
    """The chunks whose place HDF5 must confirm: the first one and the first of the second
    leaf (field layout, the step from leaf to leaf), and the middle one unless the table
    provably holds every chunk of the dataset (coordinates strictly increasing, the
    highest ``top`` inside the chunk grid, as many as the grid has: nothing can be
    missing). HDF5 finds a chunk by iterating the index up to it
    (``get_chunk_info_by_coord``: ~4 ms for the middle of a 16,000-chunk dataset, half of
    the table's cost), so later chunks are asked only when they tell something."""
    picks = {0, first_leaf} if first_leaf < n else {0}
    grid = [-(-s // c) for s, c in zip(ds.shape, ds.chunks, strict=True)]
    complete = n == math.prod(grid) and all(int(t) < g for t, g in zip(top, grid, strict=True))
    if not complete:
        picks.add(n // 2)
    return sorted(picks)


def _grid_coords(offset: np.ndarray, chunks: tuple[int, ...]) -> np.ndarray:
    """(rank, n) chunk coordinates of the element offsets ``offset`` (rank, n), which must
    lie on the chunk grid (one pass per axis: a shift for power-of-two chunks)."""
    coords = np.empty(offset.shape, np.int64)
    for d, c in enumerate(chunks):
        if c == 1:
            coords[d] = offset[d]
            continue
        if c & (c - 1) == 0:
            off_grid, coords[d] = offset[d] & (c - 1), offset[d] >> (c.bit_length() - 1)
        else:
            coords[d], off_grid = np.divmod(offset[d], c)
        if off_grid.any():
            raise Unrecognised("chunk coordinates off the chunk grid")
    return coords


@dataclass(frozen=True)
class _Source:
    """Where a dataset's chunk index starts: all a thread needs to read it (no h5py)."""

    filename: str
    header: int        # object header address
    rank: int
    filtered: bool


def _source(ds: h5py.Dataset) -> _Source:
    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_external_count():
        raise Unrecognised("not chunked storage")
    return _Source(ds.file.filename, h5py.h5g.get_objinfo(ds.id, b".").objno[0], ds.ndim,
                   dcpl.get_nfilters() > 0)


def _read_index(src: _Source, chunks: tuple[int, ...]) -> tuple[np.ndarray, int, int]:
    """(leaf records, entries of the first leaf, file size): file reads and numpy only, so
    any thread may run it (``TablesAhead``)."""
    fd = os.open(src.filename, os.O_RDONLY)
    try:
        if hasattr(os, "posix_fadvise"):   # scattered small reads: no readahead of pixel data
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        file_size = os.fstat(fd).st_size
        so, sl = superblock(fd)
        layout = layout_message(fd, src.header, so, sl, file_size)
        root = _root_address(layout, src.rank, chunks, so)
        if root is None:
            return np.zeros(0, [("size", "<u4"), ("mask", "<u4"),
                                ("offset", "<u8", (src.rank + 1,)), ("addr", "<u8")]), 0, file_size
        rec, first_leaf = _leaf_records(fd, root, src.rank, so, file_size)
        return rec, first_leaf, file_size
    finally:
        os.close(fd)


def _from_btree(ds: h5py.Dataset) -> ChunkTable:
    src = _source(ds)
    return _checked(ds, src, *_read_index(src, tuple(ds.chunks)))


def _checked(ds: h5py.Dataset, src: _Source, rec: np.ndarray, first_leaf: int,
             file_size: int) -> ChunkTable:
    """The table of the leaf records, after every check (module docstring)."""
    rank = src.rank
    chunk_bytes = ds.dtype.itemsize * math.prod(ds.chunks)
    offset = np.array(rec["offset"].T, np.int64, order="C")   # (rank + 1, n): axis by axis
    addr, size = rec["addr"].astype(np.int64), rec["size"].astype(np.int64)
    mask = rec["mask"].astype(np.int64)
    if len(rec):
        if offset[rank].any():
            raise Unrecognised("chunk coordinates off the chunk grid")
        coords = _grid_coords(offset[:rank], tuple(int(c) for c in ds.chunks))
        if (coords < 0).any():
            raise Unrecognised("negative chunk coordinates")
        # lexicographic order of coordinates = order of their raveled index in any grid
        # that holds them all
        top = coords.max(axis=1)
        moving = np.flatnonzero(top > 0)
        if len(moving) <= 1:   # one axis of several chunks (the DAQ's): compare it alone
            flat = coords[int(moving[0])] if len(moving) else np.zeros(len(rec), np.int64)
        else:
            grid = tuple(int(g) + 1 for g in top)
            if math.prod(grid) >= 1 << 62:
                raise Unrecognised("chunk coordinates not strictly increasing")
            flat = np.ravel_multi_index(tuple(coords), grid)
        if len(rec) > 1 and not (flat[1:] > flat[:-1]).all():
            raise Unrecognised("chunk coordinates not strictly increasing")
        if (addr <= 0).any() or (addr + size > file_size).any() or (size <= 0).any():
            raise Unrecognised("chunk outside the file")
        end = addr + size
        if not (end[:-1] <= addr[1:]).all():   # not in file order: sort to compare
            by_addr = np.argsort(addr, kind="stable")
            if (end[by_addr][:-1] > addr[by_addr][1:]).any():
                raise Unrecognised("chunks overlap")
        if not src.filtered and ((size != chunk_bytes).any() or mask.any()):
            raise Unrecognised("unfiltered chunk of the wrong size")
        for i in _spot_checks(len(rec), first_leaf, top, ds):
            info = ds.id.get_chunk_info_by_coord(tuple(int(v) for v in offset[:rank, i]))
            if (info.byte_offset, info.size, info.filter_mask) != (addr[i], size[i], mask[i]):
                log.warning("%s:%s: the chunk index read directly disagrees with HDF5 at "
                            "chunk %s; reading it with chunk_iter", ds.file.filename,
                            ds.name, tuple(offset[:rank, i]))
                raise Unrecognised("spot check failed")
        table_coords = coords.T   # (n, rank), a view
    else:
        table_coords = np.zeros((0, rank), np.int64)
    return ChunkTable(table_coords, addr, size, mask)


# -- reading ahead ------------------------------------------------------------------------

AHEAD = 3   # datasets whose chunk index is read while an earlier one is used


@functools.cache
def _ahead_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(AHEAD, thread_name_prefix="detstack-index")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ahead_pool.cache_clear)


class TablesAhead:
    """``chunk_table`` of datasets asked for in a known order, each read in a thread while
    the ones before it are used: a cold page cache serves one dataset's index at a time
    (levels of the B-tree one after another); several in flight keep the disk busy.

    ``add(ds)`` announces the next dataset (h5py is called here, in this thread; the
    thread only reads the file); ``next(ds)`` returns the table of the oldest announced
    one, which must be the same dataset (``ds`` may be a new handle of it: a pool of open
    files may have closed the first). Each table passes every check of ``chunk_table``."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[_Source | None, Any]] = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, ds: h5py.Dataset) -> None:
        try:
            src = _source(ds)
        except Unrecognised as why:
            self._queue.append((None, why))
            return
        self._queue.append((src, _ahead_pool().submit(_read_index, src, tuple(ds.chunks))))

    def next(self, ds: h5py.Dataset) -> ChunkTable:
        src, job = self._queue.popleft()
        if src is not None and (src.filename != ds.file.filename
                                or src.header != h5py.h5g.get_objinfo(ds.id, b".").objno[0]):
            raise AssertionError("TablesAhead: datasets asked for out of order")
        try:
            if src is None:
                raise job
            return _checked(ds, src, *job.result())
        except Unrecognised as why:
            log.debug("%s:%s: chunk index read with chunk_iter (%s)", ds.file.filename,
                      ds.name, why)
        return from_chunk_iter(ds)

    def close(self) -> None:
        """Drop the reads still queued (waiting for those under way)."""
        while self._queue:
            src, job = self._queue.popleft()
            if src is not None and not job.cancel():
                job.exception()   # waits; a failed read of a dropped table does not matter
