"""Archival copies: a virtual view or CXI file turned into a self-contained file.

Every virtual dataset becomes a chunked, compressed dataset with the same path, shape,
dtype, fill value and attributes; everything else (groups, plain datasets, links,
attributes) is copied as it is. Data are copied mapping by mapping, reading each
source block directly (always HDF5's fast path) in pieces of bounded size, so memory
stays bounded whatever the size of the view. Chunks a piece fills entirely are
compressed in worker threads while the next piece is read (gzip with or without
shuffle, or no filter; other filters go through HDF5's single-threaded pipeline).
Regions no mapping covers are never written and read as the fill value, as before.

Two virtual datasets mapping exactly the same source blocks (a CXI file's frames-first
``data`` and its module-first ``by_module/data``) are stored once: the copy keeps the
one that reads fast as real data and makes the other a virtual dataset over it inside
the same file, so the archive is not twice the size.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import logging
import math
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError
from ..progress import track
from .atomic import atomic_h5
from .vds import LIBVER, RECORD_ATTR, MappingBuilder, SourceRef

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20          # target size of a stored chunk
PIECE_BYTES = 64 << 20         # at most this much data in memory at once
CACHE_BYTES = 64 << 20         # chunk cache of the output, so partial chunks merge in memory
WORKERS = max(1, os.cpu_count() or 1)   # threads compressing chunks


@dataclass(frozen=True)
class Mapping:
    """One mapping whose virtual and source selections are single boxes."""

    vstart: tuple[int, ...]
    vshape: tuple[int, ...]
    file: str              # resolved path of the source file ("." = the view itself)
    dset: str
    sstart: tuple[int, ...]
    sshape: tuple[int, ...]

    @property
    def source_key(self) -> tuple[str, str, tuple[int, ...], tuple[int, ...]]:
        return (self.file, self.dset, self.sstart, self.sshape)

    @property
    def fast(self) -> bool:
        """True when HDF5 copies it on the fast path (same shape past leading 1s)."""
        return _strip(self.vshape) == _strip(self.sshape)


def _strip(shape: tuple[int, ...]) -> tuple[int, ...]:
    i = 0
    while i < len(shape) - 1 and shape[i] == 1:
        i += 1
    return shape[i:]


def _box(space: h5py.h5s.SpaceID) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(start, shape) of a selection that is one box, else None."""
    if space.get_select_type() == h5py.h5s.SEL_ALL:
        return (0,) * len(space.shape), tuple(space.shape)
    if space.get_select_type() != h5py.h5s.SEL_HYPERSLABS:
        return None
    lo, hi = space.get_select_bounds()
    shape = tuple(int(h) - int(lo_) + 1 for lo_, h in zip(lo, hi, strict=True))
    if space.get_select_npoints() != math.prod(shape):
        return None
    return tuple(int(x) for x in lo), shape


def _resolve(name: str, view: Path) -> str:
    """A mapping's file name as HDF5 finds it: '.', absolute, or next to the view."""
    if name == ".":
        return "."
    p = Path(name)
    if p.is_absolute():
        if p.exists() or not (view.parent / p.name).exists():
            return str(p)
        return str(view.parent / p.name)
    return str(view.parent / p)


def mappings_of(ds: h5py.Dataset, view: Path) -> list[Mapping] | None:
    """The mappings of a virtual dataset as boxes, or None if any is not a box."""
    dcpl = ds.id.get_create_plist()
    out = []
    for i in range(dcpl.get_virtual_count()):
        vbox = _box(dcpl.get_virtual_vspace(i))
        sbox = _box(dcpl.get_virtual_srcspace(i))
        if vbox is None or sbox is None:
            return None
        out.append(Mapping(vbox[0], vbox[1], _resolve(dcpl.get_virtual_filename(i), view),
                           dcpl.get_virtual_dsetname(i), sbox[0], sbox[1]))
    return out


def chunk_shape(shape: tuple[int, ...], mapped: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunks along the axes a mapping spans, whole entries, about CHUNK_BYTES each."""
    chunk = [1 if b == 1 else max(1, s) for b, s in zip(mapped, shape, strict=True)]
    for i in range(len(chunk)):
        if math.prod(chunk) * itemsize <= CHUNK_BYTES:
            break
        rest = math.prod(chunk[i + 1:]) * itemsize
        chunk[i] = max(1, min(chunk[i], CHUNK_BYTES // max(rest, 1)))
    return tuple(chunk)


def pieces(m: Mapping, itemsize: int) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...],
                                                      tuple[int, ...]]]:
    """(source box, virtual box, virtual piece shape) in pieces of about PIECE_BYTES.

    Elements pair in row-major order, so source rows [a, b) fill a box in the virtual
    selection when they cover whole rows of its first axis longer than 1.
    """
    row = math.prod(m.sshape[1:])
    axis = next((i for i, n in enumerate(m.vshape) if n > 1), len(m.vshape) - 1)
    vrow = math.prod(m.vshape[axis + 1:])
    step = vrow // math.gcd(vrow, row) if row else 1     # source rows per virtual row group
    per = max(step, (PIECE_BYTES // max(row * itemsize, 1)) // step * step)
    n = m.sshape[0] if m.sshape else 1
    for a in range(0, n, per):
        b = min(n, a + per)
        src = (slice(m.sstart[0] + a, m.sstart[0] + b),) + tuple(
            slice(s, s + k) for s, k in zip(m.sstart[1:], m.sshape[1:], strict=True))
        va, vb = a * row // vrow, b * row // vrow
        vshape = list(m.vshape)
        vshape[axis] = vb - va
        vbox = tuple(slice(s + (va if i == axis else 0),
                           s + (vb if i == axis else k)) for i, (s, k) in
                     enumerate(zip(m.vstart, m.vshape, strict=True)))
        yield src, vbox, tuple(vshape)


class _Sources:
    """Open source files on demand; '.' is the view file itself."""

    def __init__(self, view: h5py.File) -> None:
        self.view = view
        self.files: dict[str, h5py.File] = {}

    def get(self, name: str, dset: str) -> h5py.Dataset:
        if name == ".":
            return self.view[dset]
        if name not in self.files:
            try:
                self.files[name] = h5py.File(name, "r")
            except OSError as exc:
                raise FileFormatError(name, f"cannot be read ({exc})",
                                      "Restore the view's source files before materializing"
                                      ) from exc
        return self.files[name][dset]

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _check_sources(view: h5py.File, path: Path, virtual: dict[str, list[Mapping] | None]
                   ) -> None:
    """Refuse to archive fill values in place of missing sources."""
    names = {m.file for maps in virtual.values() for m in maps or [] if m.file != "."}
    for key in (k for k, v in virtual.items() if v is None):
        names |= {_resolve(vs.file_name, path) for vs in view[key].virtual_sources()} - {"."}
    missing = sorted(n for n in names if not os.path.isfile(n))
    if missing:
        raise FileFormatError(path, f"maps {len(missing)} source file(s) that are missing, "
                              f"e.g. {missing[0]}",
                              "A copy would hold fill values for them; restore the files")


def _check_trust(view: h5py.File, path: Path, allowed: Any) -> None:
    """A detstack view is copied only if every mapping, link and external storage stays
    within the files its record lists (the rule ``open_view`` applies): a copy would
    otherwise carry e.g. /etc/passwd into a self-contained archive."""
    raw = view.attrs.get(RECORD_ATTR)
    if raw is None:
        return          # not a detstack view (e.g. EXtra-data's CXI): no record to hold to
    from ..errors import UnsafeReferenceError
    from ..store.h5_guard import view_file_problems
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise FileFormatError(path, f"has an unreadable view record ({exc})",
                              "Write the view again") from exc
    if isinstance(allowed, (str, os.PathLike)):
        allowed = [allowed]
    unsafe = [line.partition(": ")[2] for line in
              view_file_problems(os.fspath(path), record, [os.fspath(a) for a in allowed or []])
              if line.startswith("UNSAFE")]
    if unsafe:
        raise UnsafeReferenceError(
            f"{path}: {unsafe[0]} (and {len(unsafe) - 1} more) point outside the source files "
            "its record lists; refusing to archive it. If you trust it, pass "
            "allowed_prefixes=[...] (CLI: --allow PREFIX)")


def _copy_attrs(src: Any, dst: Any, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    for k, v in src.attrs.items():
        if k not in skip:
            dst.attrs[k] = v


def _walk(group: h5py.Group) -> Iterator[tuple[str, Any]]:
    """(path, link or object) for everything below ``group``, parents first."""
    for name in group:
        path = f"{group.name.rstrip('/')}/{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            yield path, link
            continue
        obj = group[name]
        yield path, obj
        if isinstance(obj, h5py.Group):
            yield from _walk(obj)


class _ChunkWriter:
    """Writes blocks into a chunked dataset. Chunks a block covers entirely are encoded
    in threads (zlib releases the GIL) and stored with ``write_direct_chunk``; the chunks
    a block shares with its neighbours go through HDF5's pipeline, which merges them."""

    def __init__(self, out: h5py.Dataset, pool: ThreadPoolExecutor) -> None:
        self.out = out
        self.pool = pool
        self.chunks = out.chunks
        plain = out.chunks is not None and not out.fletcher32 and out.scaleoffset is None
        self.direct = plain and (out.compression == "gzip" or (
            out.compression is None and not out.shuffle))
        self.level = int(out.compression_opts or 0) if out.compression == "gzip" else None
        self.shuffle = bool(out.shuffle) and out.dtype.itemsize > 1
        self.fill = out.fillvalue
        self.pending: collections.deque[tuple[tuple[int, ...], Future[bytes]]] = \
            collections.deque()
        self.max_pending = 4 * WORKERS  # chunks in flight: bounded memory

    def encode(self, arr: np.ndarray) -> bytes:
        raw = np.ascontiguousarray(arr)
        if self.shuffle:
            raw = raw.view(np.uint8).reshape(-1, raw.dtype.itemsize).T
        data = raw.tobytes()
        return zlib.compress(data, self.level) if self.level is not None else data

    def write(self, vbox: tuple[slice, ...], block: np.ndarray) -> None:
        if not self.direct:
            self.out[vbox] = block
            return
        full: list[tuple[tuple[int, ...], np.ndarray]] = []
        ranges = [range(v.start // c, (v.stop - 1) // c + 1) for v, c in zip(vbox, self.chunks,
                                                                              strict=True)]
        for idx in itertools.product(*ranges):
            start = [i * c for i, c in zip(idx, self.chunks, strict=True)]
            stop = [min(a + c, n) for a, c, n in zip(start, self.chunks, self.out.shape,
                                                     strict=True)]
            lo = [max(a, v.start) for a, v in zip(start, vbox, strict=True)]
            hi = [min(b, v.stop) for b, v in zip(stop, vbox, strict=True)]
            part = block[tuple(slice(a - v.start, b - v.start)
                               for a, b, v in zip(lo, hi, vbox, strict=True))]
            if lo == start and hi == stop:
                if list(part.shape) != list(self.chunks):
                    padded = np.full(self.chunks, self.fill, self.out.dtype)
                    padded[tuple(slice(0, n) for n in part.shape)] = part
                    part = padded
                full.append((tuple(start), part))
            else:
                self.out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = part
        for offset, part in full:
            self.pending.append((offset, self.pool.submit(self.encode, part)))
            self.flush(self.max_pending)

    def flush(self, keep: int = 0) -> None:
        """Store encoded chunks (oldest first) until at most ``keep`` are in flight; the
        next block is read while the workers compress."""
        while self.pending and (len(self.pending) > keep or self.pending[0][1].done()):
            offset, future = self.pending.popleft()
            self.out.id.write_direct_chunk(offset, future.result())


def _write_copy(ds: h5py.Dataset, maps: list[Mapping], out: h5py.Dataset,
                sources: _Sources, pool: ThreadPoolExecutor) -> None:
    writer = _ChunkWriter(out, pool)
    for m in track(sorted(maps, key=lambda m: m.vstart), f"copying {ds.name}"):
        src = sources.get(m.file, m.dset)
        for sbox, vbox, vshape in pieces(m, ds.dtype.itemsize):
            block = np.empty(tuple(s.stop - s.start for s in sbox), src.dtype)
            src.read_direct(block, source_sel=sbox)
            writer.write(vbox, block.reshape(vshape).astype(ds.dtype, copy=False))
    writer.flush()


def _write_fallback(ds: h5py.Dataset, out: h5py.Dataset) -> None:
    """Mappings HDF5 alone can resolve (unions, strides): copy through the virtual dataset."""
    rows = max(1, PIECE_BYTES // max(ds.dtype.itemsize * math.prod(ds.shape[1:]), 1))
    for a in range(0, ds.shape[0] if ds.shape else 1, rows):
        sel = np.s_[a:a + rows] if ds.shape else ()
        out[sel] = ds[sel]


def _aliases(virtual: dict[str, list[Mapping] | None]) -> dict[str, str]:
    """{alias path: stored path} for virtual datasets mapping identical source blocks."""
    groups: dict[frozenset[Any], list[str]] = {}
    for path, maps in virtual.items():
        if maps:
            keys = [m.source_key for m in maps]
            if len(set(keys)) == len(keys):
                groups.setdefault(frozenset(keys), []).append(path)
    out = {}
    for paths in groups.values():
        if len(paths) > 1:
            ranked = sorted(paths, key=lambda p: (not all(m.fast for m in virtual[p] or []), p))
            out.update({p: ranked[0] for p in ranked[1:]})
    return out


def _self_vds(h5: h5py.File, path: str, ds: h5py.Dataset,
              pairs: list[tuple[Mapping, str, tuple[int, ...], tuple[int, ...]]]) -> None:
    """A virtual dataset over datasets of the same file: (mapping, target, start, shape)."""
    builder = MappingBuilder(ds.shape, ds.dtype, ds.fillvalue)
    refs: dict[str, SourceRef] = {}
    for m, target, tstart, tshape in pairs:
        if target not in refs:
            space = h5py.h5s.create_simple(h5[target].shape)
            refs[target] = SourceRef(b".", target.encode(), space)
        builder.add(m.vstart, m.vshape, refs[target], tstart, tshape)
    builder.create(h5, path)


def _record(view: h5py.File, compression: Any) -> str | None:
    raw = view.attrs.get(RECORD_ATTR)
    if raw is None:
        return None
    rec = json.loads(raw)
    if rec.get("form") != "materialized":
        rec["materialized_from"] = rec.get("form")
    rec["form"] = "materialized"
    rec["source_files"] = []
    rec["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rec["compression"] = compression
    return json.dumps(rec, sort_keys=True)


def materialize(view_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                compression: str | int | None = "gzip", compression_opts: Any = None,
                shuffle: bool = True, overwrite: bool = False,
                allowed_prefixes: Any = None) -> Path:
    """Copy a virtual view or CXI file into a self-contained, compressed HDF5 file.

    The output has the same datasets, shapes, dtypes, fill values, attributes and
    links, with the mapped data copied: it no longer needs the run's files (archival
    copies, moving data off the cluster). Memory use stays around 64 MiB plus the
    chunk cache. Also ``detstack archive VIEW OUT``.

    Parameters
    ----------
    view_path : str or path-like
        An HDF5 virtual view (``to_vds``) or CXI file (``to_cxi``).
    out_path : str or path-like
        The copy to write.
    compression : str, int or None, default 'gzip'
        Any h5py filter name or number; None for no compression.
    compression_opts : optional
        Filter options (gzip: the level, 1 by default).
    shuffle : bool, default True
        Byte-shuffle before compressing (ignored without compression).
    overwrite : bool, default False
        Replace an existing ``out_path``; otherwise it is refused.
    allowed_prefixes : str or list of str, optional
        Folders a detstack view may map or link to beyond the source files its record
        lists (as for ``open_view``; CLI: ``--allow PREFIX``).

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    FileFormatError
        ``view_path`` cannot be opened as HDF5, or a source file it maps is missing.
    UnsafeReferenceError
        A detstack view maps or links files outside what its record lists.
    FileExistsError
        ``out_path`` exists and ``overwrite`` is False.
    OutputWriteError
        The copy could not be written; nothing is left.
    """
    view = Path(view_path)
    if compression == "gzip" and compression_opts is None:
        compression_opts = 1
    try:
        src_h5 = h5py.File(view, "r")
    except OSError as exc:
        raise FileFormatError(view, f"cannot be opened as HDF5 ({exc})") from exc
    with src_h5:
        _check_trust(src_h5, view, allowed_prefixes)
        virtual = {p: mappings_of(o, view) for p, o in _walk(src_h5)
                   if isinstance(o, h5py.Dataset) and o.is_virtual}
        _check_sources(src_h5, view, virtual)
        aliases = _aliases(virtual)
        record = _record(src_h5, compression)
        sources = _Sources(src_h5)
        pool = ThreadPoolExecutor(WORKERS)
        try:
            with atomic_h5(out_path, overwrite, libver=LIBVER, rdcc_nbytes=CACHE_BYTES) as out:
                _copy_attrs(src_h5, out, {RECORD_ATTR})
                if record is not None:
                    out.attrs[RECORD_ATTR] = record
                _copy_tree(src_h5, out, virtual, aliases, sources,
                           dict(compression=compression, compression_opts=compression_opts,
                                shuffle=shuffle and compression is not None), pool)
        finally:
            sources.close()
            pool.shutdown()
    log.info("Materialized %s into %s", view, out_path)
    return Path(out_path)


def _copy_tree(src_h5: h5py.File, out: h5py.File, virtual: dict[str, list[Mapping] | None],
               aliases: dict[str, str], sources: _Sources, filters: dict[str, Any],
               pool: ThreadPoolExecutor) -> None:
    later: list[str] = []
    for path, obj in _walk(src_h5):
        if isinstance(obj, (h5py.SoftLink, h5py.ExternalLink)):
            out[path] = obj
        elif isinstance(obj, h5py.Group):
            _copy_attrs(obj, out.require_group(path))
        elif path in aliases or (virtual.get(path) and all(
                m.file == "." for m in virtual[path] or [])):
            later.append(path)
        elif path in virtual:
            maps = virtual[path]
            mapped = maps[0].vshape if maps else obj.shape
            chunks = chunk_shape(obj.shape, mapped, obj.dtype.itemsize) if all(obj.shape) \
                else None
            dst = out.create_dataset(path, shape=obj.shape, dtype=obj.dtype, chunks=chunks,
                                     fillvalue=obj.fillvalue,
                                     **(filters if chunks else {}))
            _copy_attrs(obj, dst)
            if maps is None:
                _write_fallback(obj, dst)
            else:
                _write_copy(obj, maps, dst, sources, pool)
        else:
            src_h5.copy(obj, out, name=path)
    for path in later:
        obj = src_h5[path]
        maps = virtual[path] or []
        if path in aliases:
            where = {m.source_key: m for m in virtual[aliases[path]] or []}
            pairs = [(m, aliases[path], where[m.source_key].vstart,
                      where[m.source_key].vshape) for m in maps]
        else:  # already over datasets of this file: keep it virtual
            pairs = [(m, m.dset, m.sstart, m.sshape) for m in maps]
        _self_vds(out, path, obj, pairs)
        _copy_attrs(obj, out[path])
