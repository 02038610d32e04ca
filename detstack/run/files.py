"""One EuXFEL HDF5 file: its train IDs, sources and per-source index.

Opening reads only INDEX/trainId, INDEX/flag and the METADATA source list (what
`FileInfo` holds, and what the metadata cache stores), with a handle from the shared
pool (`handles.POOL`) that is given back at once; thousands of files stay cheap to open
and no file is held open for long. A source's index and keys are read when first asked
for, and checked then (`index_checks`). Nothing here reads pixel data or walks a chunk
index (H5Ovisit and H5Oget_info do: they load every chunk B-tree into HDF5's cache).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from ..errors import DetstackError, FileFormatError, PropertyNameError
from . import interning
from .h5read import exists as _exists
from .h5read import read_dataset, read_whole
from .handles import POOL, require_regular
from .index_checks import checked_index
from .source_index import SourceIndex
from .validity import guess_valid

log = logging.getLogger(__name__)

IGNORED_CATEGORIES = {"Karabo_TimerServer"}
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)
_TOKENS = itertools.count()
T = TypeVar("T")


def share_groups(index: dict[str, SourceIndex]) -> dict[str, SourceIndex]:
    """The index groups of one source with equal arrays held once (read-only): every
    per-train group (header, detector, trailer...) has the same first/count."""
    pool: list[np.ndarray] = []
    return {g: i.share(pool) for g, i in index.items()}


@dataclass(frozen=True)
class SourceDetails:
    """What the frame maps of one source need from one file: its keys (shape, dtype and
    HDF5 path) and the checked index of every index group. Read in one pass while the
    file is open (`RunFile.source_details`), and what the source cache stores."""

    keys: dict[str, tuple[tuple[int, ...], np.dtype]]
    paths: dict[str, str]
    index: dict[str, SourceIndex]


@dataclass(frozen=True)
class FileInfo:
    """What opening a file reads: small, and all the metadata cache needs to store."""

    format_version: str
    raw_train_ids: np.ndarray            # INDEX/trainId as stored (uint64, zero padded)
    flag: np.ndarray | None              # INDEX/flag as stored (None: absent or format 0.5)
    control_sources: tuple[str, ...]
    instrument_sources: tuple[str, ...]
    legacy_sources: dict[str, str] = field(default_factory=dict)


def _dataset(fid: h5py.h5f.FileID, name: str) -> h5py.h5d.DatasetID | None:
    """The dataset at `name`, or None if it (or a group on its path) is missing."""
    try:
        obj = h5py.h5o.open(fid, name.encode())
    except KeyError:
        return None
    return obj if isinstance(obj, h5py.h5d.DatasetID) else None


def read_file_info(path: Path, f: h5py.File) -> FileInfo:
    """Read what opening needs: train IDs, flag, format version and sources."""
    fid = f.id
    tid_ds = _dataset(fid, "INDEX/trainId")
    if tid_ds is None:
        raise FileFormatError(path, "has no INDEX/trainId dataset",
                              "It is not an EuXFEL run file, or was cut short")
    if not fid.links.exists(b"METADATA"):
        raise FileFormatError(path, "has no METADATA group",
                              "It is not an EuXFEL run file, or was cut short")
    version = "0.5"
    version_ds = _dataset(fid, "METADATA/dataFormatVersion")
    if version_ds is not None:
        value = read_dataset(version_ds).reshape(-1)[0]
        version = value.decode("ascii") if isinstance(value, bytes) else str(value)
    raw_tids = read_dataset(tid_ds).astype(np.uint64, copy=False)
    flag_ds = _dataset(fid, "INDEX/flag") if version != "0.5" else None
    flag = None if flag_ds is None else read_dataset(flag_ds)
    ids_path = "METADATA/dataSourceId" if version == "0.5" else "METADATA/dataSources/dataSourceId"
    ids_ds = _dataset(fid, ids_path)
    if ids_ds is None:
        raise FileFormatError(path, "METADATA has no dataSourceId list",
                              "The file was not closed properly by the DAQ")
    control: set[str] = set()
    instrument: set[str] = set()
    for entry in read_dataset(ids_ds).reshape(-1):
        entry = entry.decode("ascii") if isinstance(entry, bytes) else str(entry)
        if not entry:
            continue
        category, _, rest = entry.partition("/")
        if category == "CONTROL":
            control.add(rest)
        elif category == "INSTRUMENT":
            device, _, channel = rest.partition(":")
            instrument.add(f"{device}:{channel.split('/')[0]}")
        elif category not in IGNORED_CATEGORIES:
            raise FileFormatError(path, f"unknown data category {category!r} in "
                                  f"METADATA source list (entry {entry!r})")
    legacy: dict[str, str] = {}
    for source in sorted(instrument):
        name = f"INSTRUMENT/{source}"
        try:
            soft = fid.links.get_info(name.encode()).type == h5py.h5l.TYPE_SOFT
        except (KeyError, RuntimeError):   # h5py: RuntimeError "name doesn't exist"
            continue   # a listed source without data: reported when the source is used
        if soft:
            target = fid.links.get_val(name.encode()).decode()
            legacy[source] = target.removeprefix("/INSTRUMENT/")
    return FileInfo(version, raw_tids, flag, tuple(sorted(control)), tuple(sorted(instrument)),
                    legacy)


class RunFile:
    """Index-level access to one file; the h5py handle comes from the shared pool.

    `check=True` (H5File, `detstack validate`) checks every source's index at once;
    RunDirectory passes False and each source is checked when it is first used. `info`
    is the `FileInfo` from the metadata cache, if it had this file.
    """

    def __init__(self, path: str | os.PathLike[str], *, check: bool = True,
                 info: FileInfo | None = None) -> None:
        self.path = Path(path)
        self._key = next(_TOKENS)   # this file's handle in the pool
        self.stamp: tuple[int, int] | None = None   # (size, mtime_ns) if the cache may keep it
        self._metadata: dict[str, object] | None = None
        self._index_cache: dict[tuple[str, str], SourceIndex] = {}
        self._keys_cache: dict[str, dict[str, tuple[tuple[int, ...], np.dtype]]] = {}
        self._paths_cache: dict[str, dict[str, str]] = {}
        self._groups_cache: dict[str, list[str]] = {}
        # the pool outlives this object: give its handle back when it goes away
        weakref.finalize(self, POOL.discard, self._key)
        try:
            if info is None:
                require_regular(self.path)
                info = self._guard(lambda: read_file_info(self.path, self.h5), "read")
            self.info: FileInfo | None = info   # until opening takes it for the cache
            self._apply(info)
            if check:
                self.check()
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------

    @property
    def h5(self) -> h5py.File:
        """The open h5py file (reopened on demand; do not keep it across other files' use)."""
        try:
            return POOL.get(self._key, self.path)
        except FileFormatError:
            raise
        except OSError as exc:
            problem, hint = _diagnose_unopenable(self.path, exc)
            raise FileFormatError(self.path, problem, hint) from exc

    def close(self) -> None:
        POOL.discard(self._key)

    def take_info(self) -> FileInfo:
        """What opening read, for the metadata cache, and forgotten here: a run of
        2,000 files would otherwise keep every file's INDEX/flag as stored."""
        info, self.info = self.info, None
        if info is None:
            raise RuntimeError(f"{self.path}: opening's FileInfo was taken already")
        return info

    def __repr__(self) -> str:
        return f"<RunFile {self.path.name}: {len(self.train_ids)} trains>"

    def _guard(self, read: Callable[[], T], what: str) -> T:
        """Run a read of the file's structure; h5py failures become FileFormatError."""
        try:
            return read()
        except FileFormatError:
            raise
        except _H5_ERRORS as exc:
            raise FileFormatError(self.path, f"cannot be {what} as an EuXFEL file "
                                  f"({exc})") from exc

    def _apply(self, info: FileInfo) -> None:
        self.format_version = info.format_version
        raw_tids = info.raw_train_ids
        nonzero = raw_tids != 0
        if len(raw_tids) and not nonzero.any():
            warnings.warn(f"{self.path}: INDEX/trainId is all zero, so the file holds no "
                          "trains and its data is not used. If it should hold data, its "
                          "index is damaged: re-transfer the file", stacklevel=4)
        elif nonzero.any() and not nonzero[: np.flatnonzero(nonzero)[-1] + 1].all():
            warnings.warn(f"{self.path}: INDEX/trainId has zero train IDs before the end; "
                          "those entries are skipped", stacklevel=4)
        kept = np.flatnonzero(nonzero)
        # INDEX entries used: up to the last non-zero train ID; all of them (no zero ID
        # among them, the usual case) are kept as a count, not as positions
        self._n_index = int(kept[-1]) + 1 if len(kept) else 0
        self._kept = None if len(kept) == self._n_index else kept
        # a view of the stored IDs where they are all used: no second copy
        self.train_ids: np.ndarray = raw_tids[:self._n_index] if self._kept is None \
            else raw_tids[kept]
        self.validity = self._validity(info.flag, len(raw_tids))
        # the same few sources in every file of a run: one set, one string each
        self.control_sources = interning.names(frozenset(map(sys.intern, info.control_sources)))
        self.instrument_sources = interning.names(
            frozenset(map(sys.intern, info.instrument_sources)))
        self.legacy_sources: dict[str, str] = dict(info.legacy_sources)

    @property
    def _positions(self) -> np.ndarray:
        """Positions in INDEX of the file's trains (entries with a non-zero train ID)."""
        return np.arange(self._n_index) if self._kept is None else self._kept

    def _pick(self, values: np.ndarray) -> np.ndarray:
        """The entries of an INDEX-aligned array that belong to the file's trains."""
        values = values[:self._n_index]
        return values if self._kept is None else values[self._kept]

    def _validity(self, flag: np.ndarray | None, n_raw: int) -> np.ndarray:
        """True where a train ID is trusted.

        Format >= 1.0 files say so in INDEX/flag (non-zero: the ID came from the time
        server; format 1.1 stored it inverted). Older files, and newer ones missing the
        flag, get a guess: the fewest IDs dropped to leave a strictly increasing sequence.
        """
        if flag is None:
            return guess_valid(self.train_ids)
        flag = np.asarray(flag).astype(bool)
        if flag.ndim != 1 or len(flag) < self._n_index:
            raise FileFormatError(self.path, f"INDEX/flag has {len(flag)} entries for "
                                  f"{n_raw} in INDEX/trainId",
                                  "The index is corrupt; re-transfer the file")
        flag = self._pick(flag)
        if self.format_version == "1.1":
            log.info("%s: format 1.1 stores INDEX/flag inverted; reading it so", self.path)
            flag = ~flag
        return flag

    def is_control(self, source: str) -> bool:
        return source in self.control_sources

    def check(self) -> None:
        """Read and check the index of every source now (H5File and validate do)."""
        for source in sorted(self.instrument_sources | self.control_sources):
            if source in self.legacy_sources:
                continue
            self.source_keys(source)
            for group in self.index_groups(source):
                self.index(source, group)

    # -- sources, keys, index ---------------------------------------------------

    def index_groups(self, source: str) -> list[str]:
        if source in self.control_sources:
            return [""]
        if source not in self._groups_cache:
            self._groups_cache[source] = self._guard(lambda: self._read_groups(source), "read")
        return list(self._groups_cache[source])

    def _read_groups(self, source: str) -> list[str]:
        fid = self.h5.id
        path = f"INDEX/{source}"
        if not _exists(fid, path):
            raise FileFormatError(self.path, f"has no INDEX entry for source {source}")
        grp = h5py.h5g.open(fid, path.encode())
        names = []
        for i in range(grp.get_num_objs()):
            name = grp.get_objname_by_idx(i)
            if grp.get_objtype_by_idx(i) == h5py.h5g.GROUP:
                names.append(name.decode())
        return sorted(names)

    def index(self, source: str, group: str = "") -> SourceIndex:
        """first/count aligned with ``train_ids`` (old first/last/status supported),
        checked against the datasets they point into.

        The first index asked for of an instrument source reads the source's other index
        groups too, while the file is open (a frame map per group would otherwise open
        every file once per group); a damaged other group raises only when it is used.
        """
        cache_key = (source, group)
        if cache_key not in self._index_cache:
            self._index_cache[cache_key] = self._guard(
                lambda: self._read_index(source, group), "read")
            if source not in self.legacy_sources and not self.is_control(source):
                for other in self.index_groups(source):
                    if (source, other) not in self._index_cache:
                        with contextlib.suppress(DetstackError):
                            self._index_cache[source, other] = self._guard(
                                lambda g=other: self._read_index(source, g), "read")
                groups = {g: i for (s, g), i in self._index_cache.items() if s == source}
                for g, i in share_groups(groups).items():
                    self._index_cache[source, g] = i
        return self._index_cache[cache_key]

    def source_details(self, source: str) -> SourceDetails:
        """Keys and every checked index group of an instrument source, in one pass."""
        keys = self.source_keys(source)
        index = {g: self.index(source, g) for g in self.index_groups(source)}
        return SourceDetails(dict(keys), dict(self._paths_cache[source]), index)

    def has_details(self, source: str) -> bool:
        return source in self._keys_cache and source in self._groups_cache and all(
            (source, g) in self._index_cache for g in self._groups_cache[source])

    def adopt_details(self, source: str, details: SourceDetails) -> None:
        """Take a source's details from the source cache instead of reading the file."""
        self._keys_cache.setdefault(source, interning.keys(details.keys))
        self._paths_cache.setdefault(source, interning.paths(details.paths))
        self._groups_cache.setdefault(source, sorted(details.index))
        for g, idx in details.index.items():
            self._index_cache.setdefault((source, g), idx)

    def _read_index(self, source: str, group: str) -> SourceIndex:
        path = f"INDEX/{source}/{group}".rstrip("/")
        try:
            grp = h5py.h5g.open(self.h5.id, path.encode())
        except KeyError:
            raise FileFormatError(self.path, f"has no {path} index group") from None
        n = self._n_index

        def read(name: str) -> np.ndarray:
            if not grp.links.exists(name.encode()):
                raise KeyError(name)
            arr = read_whole(grp, name)
            if arr.ndim != 1 or len(arr) < n:
                raise FileFormatError(self.path, f"{path}/{name} has shape {arr.shape} but "
                                      f"INDEX/trainId has {n} entries",
                                      "The index is corrupt; re-transfer the file")
            return self._pick(arr)

        names = {k.decode() for k in _link_names(grp)}
        if "count" in names:
            first, count = read("first"), read("count")
        elif {"first", "last", "status"} <= names:
            first, last, status = read("first"), read("last"), read("status")
            count = np.where(status > 0, last.astype(np.int64) - first.astype(np.int64) + 1, 0)
        else:
            raise FileFormatError(self.path, f"{path} has neither count nor last/status")
        if source in self.legacy_sources:   # an alias: its real source is checked
            return SourceIndex(first.astype(np.uint64), np.asarray(count).astype(np.uint64))
        first, count = checked_index(self, source, group, first, count)
        return SourceIndex(first, count)

    def group_datasets(self, source: str, group: str) -> dict[str, int]:
        """{key: rows} of the datasets an index group points into (only that group's
        datasets are opened, unless the source's keys are known already)."""
        if source in self._keys_cache or self.is_control(source) or not group:
            return {key: shape[0] for key, (shape, _) in self.source_keys(source).items()
                    if shape and self.key_group(source, key) == group}
        root = f"INSTRUMENT/{source}/{group}"
        if not _exists(self.h5.id, root):
            return {}
        keys, _ = _visit_datasets(h5py.h5g.open(self.h5.id, root.encode()))
        return {f"{group}.{key}": shape[0] for key, (shape, _) in keys.items() if shape}

    def source_keys(self, source: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """{key: (shape, dtype)} of every dataset of a source (metadata only)."""
        if source not in self._keys_cache:
            self._keys_cache[source] = self._guard(lambda: self._read_keys(source), "read")
        return self._keys_cache[source]

    def _read_keys(self, source: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        root = "CONTROL" if source in self.control_sources else "INSTRUMENT"
        fid = self.h5.id
        if not _exists(fid, f"{root}/{source}"):
            raise FileFormatError(self.path, f"source {source} is listed in METADATA but has "
                                  f"no {root}/{source} group")
        keys, paths = _visit_datasets(h5py.h5g.open(fid, f"{root}/{source}".encode()))
        # HDF5 names may themselves contain dots (e.g. 'performanceStatistics.enable/value'),
        # so the key -> path mapping is kept rather than rebuilt by replacing '.' with '/'
        self._paths_cache[source] = interning.paths(paths)
        return interning.keys(keys)

    def _hdf5_path(self, source: str, key: str) -> str:
        if key not in self.source_keys(source):
            raise PropertyNameError(f"{self.path}: source {source} has no key {key!r}")
        return self._paths_cache[source][key]

    def key_group(self, source: str, key: str) -> str:
        """The index group a key belongs to ('' for control data)."""
        if source in self.control_sources:
            return ""
        return self._hdf5_path(source, key).partition("/")[0]

    def dataset_path(self, source: str, key: str) -> str:
        root = "CONTROL" if source in self.control_sources else "INSTRUMENT"
        return f"{root}/{source}/{self._hdf5_path(source, key)}"

    def metadata(self) -> dict[str, object]:
        """Every dataset directly in METADATA (first element, strings decoded)."""
        if self._metadata is None:
            self._metadata = self._guard(self._read_metadata, "read")
        return dict(self._metadata)

    def _read_metadata(self) -> dict[str, object]:
        if self.format_version == "0.5":
            return {"dataFormatVersion": "0.5"}
        out: dict[str, object] = {}
        for name, obj in self.h5["METADATA"].items():
            if isinstance(obj, h5py.Dataset) and obj.shape and obj.shape[0] > 0:
                value = obj[0]
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                out[name] = value
        return out


def _visit_datasets(grp: h5py.h5g.GroupID
                    ) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]], dict[str, str]]:
    """({key: (shape, dtype)}, {key: HDF5 path}) of every dataset below a group."""
    keys: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    paths: dict[str, str] = {}

    def visit(name: bytes, link: h5py.h5l.LinkInfo) -> None:
        # links, then H5Oopen: H5Ovisit/H5Oget_info would walk every chunk index.
        # Only hard links: soft/external ones are aliases or point outside the source.
        if link.type != h5py.h5l.TYPE_HARD:
            return
        obj = h5py.h5o.open(grp, name)
        if isinstance(obj, h5py.h5d.DatasetID):
            hpath = name.decode()
            key = hpath.replace("/", ".")
            keys[key] = (obj.shape, obj.dtype)
            paths[key] = hpath

    grp.links.visit(visit, info=True)
    return keys, paths


def _link_names(grp: h5py.h5g.GroupID) -> list[bytes]:
    names: list[bytes] = []
    grp.links.iterate(names.append)
    return names


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _diagnose_unopenable(path: Path, exc: OSError) -> tuple[str, str]:
    """Why h5py could not open a file, in words a user can act on: (problem, hint)."""
    transfer = "Check the transfer of this file, or leave it out (include= for RunDirectory)"
    if not path.exists():
        return "does not exist", ""
    if not path.is_file():
        return "is not a file", "H5File opens one file; RunDirectory opens a run folder"
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)", transfer
    # the signature sits at offset 0, or 512, 1024, 2048... after a user block
    with open(path, "rb") as fh:
        offsets = [0] + [512 << i for i in range(max(0, size.bit_length() - 9))]
        found = False
        for off in offsets:
            fh.seek(off)
            if fh.read(8) == HDF5_SIGNATURE:
                found = True
                break
        if not found:
            fh.seek(0)
            start = fh.read(16)
            return f"is not an HDF5 file ({size} bytes, starting {start!r})", transfer
    if "truncated" in str(exc):
        return f"is truncated ({size} bytes; HDF5 says: {exc})", transfer
    return f"is a damaged HDF5 file ({exc})", transfer
