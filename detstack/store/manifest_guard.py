"""Which bytes a manifest may make us read: the trust model of references.

A reference is followed only into a file the view's record lists (or one below a
prefix the caller allowed explicitly):

* local files by their real path (symlinks resolved), checked on the opened
  descriptor itself: a regular file, an HDF5 file, of the recorded size and
  content identity (``detstack.store.identity``). Reads go through that checked
  descriptor, so a symlink swapped after opening cannot redirect them; a
  descriptor reopened later is checked again;
* inside the byte ranges of that file's datasets (chunks or contiguous storage),
  never its metadata, never past its end;
* remote objects (``s3://...``) only inside the manifest's own folder or an
  allowed prefix, and within their recorded size.

So a manifest made by someone else cannot read ``/etc/passwd``, nor any file it
does not declare, while one detstack wrote opens wherever it was written.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from fsspec.core import split_protocol

from ..convert.chunk_index import chunk_table
from ..errors import FileFormatError, UnsafeReferenceError
from ..safety import open_regular
from .identity import fd_identity, is_hdf5, same_identity, stat_state
from .identity_cache import IdentityCache
from .manifest_btree import PointIndex, point_index

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 128  # source descriptors kept open
MAX_CHUNK_INDEXES = 32   # source files kept open in HDF5 to find chunks (a frame: 16)
CHECK_THREADS = 8        # source files checked at once when a manifest opens
WIDEN = ("pass allowed_prefixes=[...] (CLI: --allow PREFIX) naming that location if you "
         "trust this manifest")


def is_local(protocol: str | None) -> bool:
    return protocol in (None, "file", "local")


def normalize(url: str) -> str:
    """Canonical location: real local paths (symlinks resolved), 'proto://...' URLs."""
    protocol, rest = split_protocol(url)
    if is_local(protocol):
        return os.path.realpath(os.path.expanduser(rest))
    return f"{protocol}://{posixpath.normpath(rest)}"


def normalize_many(urls: list[str]) -> list[str]:
    """``normalize`` of many locations, resolving each folder once (a run's 2,000 files
    share one: ``realpath`` of each costs 0.25 ms); a file that is itself a symbolic
    link is resolved in full."""
    folders: dict[str, str] = {}
    out = []
    for url in urls:
        protocol, rest = split_protocol(url)
        path = os.path.expanduser(rest)
        parent, leaf = os.path.split(os.path.join(os.getcwd(), path))
        if not is_local(protocol) or leaf in ("", ".", ".."):
            out.append(normalize(url))
            continue
        if parent not in folders:
            folders[parent] = os.path.realpath(parent)
        real = os.path.join(folders[parent], leaf)
        out.append(os.path.realpath(real) if os.path.islink(real) else real)
    return out


def inside(loc: str, root: str) -> bool:
    if loc == root:
        return True
    sep = "/" if "://" in root else os.sep
    return loc.startswith(root.rstrip(sep) + sep)


@dataclass(frozen=True)
class Listed:
    """A source file as the record lists it."""

    loc: str                     # normalised location
    size: int | None
    identity: dict[str, Any] | None


def _fd_path(fd: int, fallback: str) -> str:
    """The real path of an open descriptor (Linux: /proc), else of the name used."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(fallback)


class Extents:
    """Sorted, merged byte ranges of every dataset's stored data in one HDF5 file."""

    def __init__(self, path: str) -> None:
        ranges: list[tuple[int, int]] = []
        with h5py.File(path, "r") as f:
            def visit(name: bytes, info: Any) -> None:
                if info.type != h5py.h5o.TYPE_DATASET:
                    return
                dsid = h5py.h5d.open(f.id, name)
                layout = dsid.get_create_plist().get_layout()
                if layout == h5py.h5d.CONTIGUOUS:
                    off = dsid.get_offset()
                    if off is not None:
                        ranges.append((int(off), int(off) + int(dsid.get_storage_size())))
                elif layout == h5py.h5d.CHUNKED:
                    dsid.chunk_iter(lambda c: ranges.append(
                        (int(c.byte_offset), int(c.byte_offset) + int(c.size))))
            h5py.h5o.visit(f.id, visit, info=True)
        ranges.sort()
        starts: list[int] = []
        ends: list[int] = []
        for s, e in ranges:
            if starts and s <= ends[-1]:
                ends[-1] = max(ends[-1], e)
            else:
                starts.append(s)
                ends.append(e)
        self.starts = np.asarray(starts, np.int64)
        self.ends = np.asarray(ends, np.int64)

    def contains(self, start: int, end: int) -> bool:
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        return i >= 0 and end <= int(self.ends[i])


@dataclass
class _Stored:
    """Where a dataset's data lies: a contiguous range, or chunks: looked up a few index
    nodes at a time (``point``), or their start offsets in ascending order and sizes,
    read from the whole chunk index when that does not find one."""

    dsid: Any
    contiguous: tuple[int, int] | None
    nbytes: int | None = None        # of every chunk, if unfiltered
    starts: np.ndarray | None = None
    sizes: np.ndarray | None = None
    point: PointIndex | None = None

    def chunk_at(self, start: int, size: int, at: tuple[int, ...] | None = None) -> bool:
        """Is there a stored chunk of exactly ``size`` bytes at byte ``start`` (``at``:
        the element offset it should have, if known)?"""
        if self.starts is None and self.point is not None:
            found = self.point.find(at) if at is not None else None
            if found is None or found[0] != start:
                found = self.point.find_address(start)
            if found is not None and found[:2] == (start, size):
                return True
        if self.starts is None:
            table = chunk_table(h5py.Dataset(self.dsid))
            order = np.argsort(table.addr, kind="stable")
            self.starts, self.sizes = table.addr[order], table.size[order]
        i = int(np.searchsorted(self.starts, start))
        return i < len(self.starts) and int(self.starts[i]) == start \
            and int(self.sizes[i]) == size


class ChunkIndex:
    """Is a byte range exactly one allocated chunk of a dataset (or inside a contiguous
    one) of an HDF5 file? A chunk is first looked for in the dataset's chunk B-tree a few
    nodes at a time (``manifest_btree``: ~5 node reads, where reading the whole index
    reads ~250 for a 250-train AGIPD sequence file). If that does not find it, the
    dataset's chunk index is read once, in bulk (``chunk_index.chunk_table``: ~8 ms for
    16,000 chunks, ~50 ms from disk; HDF5's own lookups iterate the index up to the
    chunk, ~2 ms each), and searched; ``Extents`` walks every chunk of the file (0.3 s).
    The datasets named as hints are searched first, then every dataset. It answers False
    when the range is no chunk; ``Extents`` then decides."""

    def __init__(self, path: str) -> None:
        self.file = h5py.File(path, "r")
        self._stored: dict[str, _Stored | None] = {}
        self._names: list[str] | None = None

    def _dataset(self, name: str) -> _Stored | None:
        if name not in self._stored:
            self._stored[name] = self._open(name)
        return self._stored[name]

    def _open(self, name: str) -> _Stored | None:
        try:
            obj = h5py.h5o.open(self.file.id, name.encode())
        except (KeyError, ValueError):
            return None
        if not isinstance(obj, h5py.h5d.DatasetID):
            return None
        plist = obj.get_create_plist()
        layout = plist.get_layout()
        if layout == h5py.h5d.CONTIGUOUS:
            off = obj.get_offset()
            if off is None:
                return None
            return _Stored(obj, (int(off), int(off) + int(obj.get_storage_size())))
        if layout != h5py.h5d.CHUNKED or not obj.shape:
            return None
        chunks = tuple(int(c) for c in plist.get_chunk())
        nbytes = None if plist.get_nfilters() else math.prod(chunks) * obj.get_type().get_size()
        point = point_index(self.file.id.get_vfd_handle(), h5py.Dataset(obj))
        return _Stored(obj, None, nbytes, point=point)

    def holds(self, start: int, end: int, hints: tuple[str, ...] = (),
              at: tuple[int, ...] | None = None) -> bool:
        """Is [start, end) a chunk of a dataset (``at``: its element offset in the first
        of ``hints``, if known)?"""
        for k, name in enumerate(hints):
            if self._in(name, start, end, at if k == 0 else None):
                return True
        if self._names is None:
            names: list[str] = []
            h5py.h5o.visit(self.file.id, lambda n, info: names.append(n.decode())
                           if info.type == h5py.h5o.TYPE_DATASET else None, info=True)
            self._names = names
        return any(self._in(name, start, end) for name in self._names if name not in hints)

    def _in(self, name: str, start: int, end: int, at: tuple[int, ...] | None = None
            ) -> bool:
        d = self._dataset(name)
        if d is None:
            return False
        if d.contiguous is not None:
            return d.contiguous[0] <= start and end <= d.contiguous[1]
        size = end - start
        if d.nbytes is not None and d.nbytes != size:
            return False
        return d.chunk_at(start, size, at)

    def close(self) -> None:
        self.file.close()


class SourceGuard:
    """Checks and opens the files a manifest's references lead to."""

    def __init__(self, view: str, listed: list[Listed], allowed: list[str], own_root: str,
                 check_content: bool = True) -> None:
        self.view = view
        self.listed = {item.loc: item for item in listed}
        self.allowed = allowed
        self.own_root = own_root
        self.check_content = check_content
        self._fds: dict[str, int] = {}
        self._extents: dict[str, Extents] = {}
        self._indexes: dict[str, ChunkIndex] = {}   # most recently used last
        # files whose content was checked, by what fstat said then: a reopen of the same
        # inode with the same size, mtime and ctime is the same file (any write changes
        # its ctime), so its identity is not hashed again
        self._checked: dict[str, tuple[int, ...]] = {}
        self.identities = IdentityCache()   # the same across processes, by folder
        self._lock = threading.Lock()

    # -- which locations ------------------------------------------------------------

    def _allowed(self, loc: str) -> bool:
        return any(inside(loc, root) for root in self.allowed)

    def check_location(self, url: str, loc: str) -> None:
        """Refuse a reference to anything but a listed file or one below an allowed root."""
        remote = "://" in loc
        if remote and not (inside(loc, self.own_root) or self._allowed(loc)):
            raise UnsafeReferenceError(
                f"{self.view}: the manifest refers to {url!r}, a remote object outside its own "
                f"folder {self.own_root}; {WIDEN}")
        if loc in self.listed or self._allowed(loc):
            return
        raise UnsafeReferenceError(
            f"{self.view}: the manifest refers to {url!r} ({loc}), which is not one of the "
            f"source files its record lists; a manifest may only read the files it declares. "
            f"If the data is really there, {WIDEN}")

    def check_range(self, loc: str, start: int | None, end: int | None) -> None:
        item = self.listed.get(loc)
        if item is None or start is None or end is None:
            return
        if item.size is not None and end > item.size:
            raise UnsafeReferenceError(f"{self.view}: a reference reads bytes {start}-{end} of "
                                       f"{loc}, past its recorded size {item.size}")

    # -- local reads -----------------------------------------------------------------

    def _verify(self, loc: str, fd: int) -> None:
        """The opened file is the listed one: real path, HDF5, size and identity."""
        real = _fd_path(fd, loc)
        if real != loc and not self._allowed(real):
            raise UnsafeReferenceError(f"{self.view}: {loc} now resolves to {real} (a symlink "
                                       f"changed?); refusing to read it. {WIDEN}")
        item = self.listed.get(loc)
        if item is None:
            return  # below an allowed prefix: the caller vouched for it
        st = os.fstat(fd)
        state = stat_state(st)
        if self._checked.get(loc) == state:
            return
        if not is_hdf5(fd, st.st_size):
            raise UnsafeReferenceError(f"{self.view}: its source file {loc} is not an HDF5 "
                                       "file; a manifest only reads HDF5 source files")
        if not self.check_content:
            return
        found = fd_identity(fd, st.st_size)
        if item.size is not None and found["size"] != item.size:
            raise FileFormatError(loc, f"is {found['size']} bytes, but the manifest {self.view} "
                                  f"was written for {item.size} bytes",
                                  "The file changed since the manifest was written: rebuild "
                                  "the manifest")
        if item.identity is not None and not same_identity(item.identity, found):
            raise FileFormatError(loc, f"has different content than when the manifest "
                                  f"{self.view} was written",
                                  "Its byte offsets would read wrong data: rebuild the manifest")
        self._checked[loc] = state
        self.identities.remember(loc, state, found)

    def _open(self, loc: str) -> int:
        try:
            fd = open_regular(loc, f"source file of {self.view}")
        except FileNotFoundError:
            raise
        try:
            self._verify(loc, fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _fd(self, loc: str) -> int:
        with self._lock:
            fd = self._fds.pop(loc, None)
            if fd is None:
                fd = self._open(loc)
                if len(self._fds) >= MAX_OPEN_FILES:
                    os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[loc] = fd  # most recently used last
        return fd

    def check_files(self, locs: list[str]) -> list[Exception | None]:
        """Check each of ``locs`` now; the error each raised, or None. A file whose
        ``stat`` is what it was when its recorded identity was last computed (here or
        by the writer: ``identity_cache``) passes at once; the others are opened and
        checked in threads (a file out of the page cache waits on the disk, not the CPU).
        Nothing is kept open: reads open and check them again."""
        def check(loc: str) -> Exception | None:
            try:
                os.close(self._open(loc))
            except Exception as exc:  # noqa: BLE001 - handed to the caller, in order
                return exc
            return None

        found: dict[str, Exception | None] = {}
        for loc in locs:
            try:
                if self._known(loc):
                    found[loc] = None
            except FileNotFoundError as exc:
                found[loc] = exc
            except OSError:
                pass          # the full check names what is wrong
        rest = [loc for loc in locs if loc not in found]
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            found.update(zip(rest, pool.map(check, rest), strict=True))
        self.identities.save()
        return [found[loc] for loc in locs]

    def _known(self, loc: str) -> bool:
        """Has the listed file ``loc`` its recorded identity by what ``stat`` says of it?"""
        item = self.listed.get(loc)
        if item is None or item.identity is None or not self.check_content:
            return False
        st = os.stat(loc)
        if not stat.S_ISREG(st.st_mode) or (item.size is not None and st.st_size != item.size):
            return False
        known = self.identities.known(loc, st)
        return known is not None and same_identity(item.identity, known)

    def verify_now(self, loc: str) -> None:
        """Open and check ``loc`` now (FileNotFoundError if it is missing)."""
        self._fd(loc)

    def pread(self, loc: str, start: int | None, end: int | None,
              hints: tuple[str, ...] = (), at: tuple[int, ...] | None = None) -> bytes:
        """Bytes [start, end) of a checked local file, within its datasets' storage
        (``hints``: datasets it is probably a chunk of, looked at first; ``at``: its
        element offset in the first of them, if known)."""
        fd = self._fd(loc)
        start = start or 0
        if end is None:
            end = os.fstat(fd).st_size
        if loc in self.listed and not self._is_chunk(loc, start, end, hints, at):
            extents = self._extents.get(loc)
            if extents is None:
                extents = self._extents.setdefault(loc, Extents(loc))
            if not extents.contains(start, end):
                raise UnsafeReferenceError(
                    f"{self.view}: a reference reads bytes {start}-{end} of {loc}, outside "
                    "the stored data of its datasets; the manifest is damaged or hostile")
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise OSError(f"{loc} ends before byte {end} (truncated or rewritten?)")
        return data

    def read_chunks(self, loc: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a checked local file, spanning chunks the caller has just
        matched against the file's own chunk index (so not checked against ``Extents``)."""
        fd = self._fd(loc)
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise OSError(f"{loc} ends before byte {end} (truncated or rewritten?)")
        return data

    def _is_chunk(self, loc: str, start: int, end: int, hints: tuple[str, ...],
                  at: tuple[int, ...] | None = None) -> bool:
        """Is [start, end) one chunk of a dataset of ``loc`` (``ChunkIndex``)?"""
        if loc in self._extents:
            return False          # walked already: Extents answers as fast
        with self._lock:
            index = self._indexes.pop(loc, None)
            if index is None:
                index = ChunkIndex(loc)
                if len(self._indexes) >= MAX_CHUNK_INDEXES:
                    self._indexes.pop(next(iter(self._indexes))).close()
            self._indexes[loc] = index
            return index.holds(start, end, hints, at)

    def close(self) -> None:
        with self._lock:
            while self._fds:
                os.close(self._fds.popitem()[1])
            while self._indexes:
                self._indexes.popitem()[1].close()
