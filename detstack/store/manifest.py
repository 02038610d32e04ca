"""Open a Zarr manifest (kerchunk references, JSON or Parquet) as a detstack view.

A manifest is data from someone else: every reference it holds is a file path or
URL that a reader would open. ``manifest_guard`` says which bytes may be read
(only the HDF5 source files the record lists, checked by real path, size and
content identity, inside their datasets' storage; more only below prefixes the
caller allows); ``manifest_meta`` bounds what its metadata and inline data may
ask for. References are resolved against the absolute base the writer recorded,
or, when the run and manifest moved together, against the manifest's own folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.core import split_protocol
from fsspec.implementations.reference import (
    LazyReferenceMapper,
    ReferenceFileSystem,
    ReferenceNotReachable,
)

from ..errors import (
    DetstackError,
    FileFormatError,
    NotRegularFileError,
    UnsafeReferenceError,
    ViewLimitError,
)
from ..safety import refuse_special, require_regular_file
from .manifest_guard import SourceGuard, is_local, normalize
from .manifest_meta import (
    ChunkBound,
    check_depth,
    check_inline_chunk,
    check_metadata,
    fill_null_values,
    loads,
)
from .manifest_paths import Locations, join, locate
from .manifest_reads import checked_arrays, promised_chunks
from .manifest_records import ParquetRecords
from .manifest_sidecar import small_array
from .view_collection import ViewCollection, check_record

__all__ = ["SourceUnreachableError", "UnsafeReferenceError", "manifest_filesystem",
           "manifest_store", "open_manifest"]

TEMPLATE = "base"  # the template naming the folder references are relative to
META_SUFFIXES = (".zarray", ".zattrs", ".zgroup", ".zmetadata")


class SourceUnreachableError(DetstackError, ReferenceNotReachable):
    """A reference's source file is missing or unreadable (never read as fill)."""

    def __init__(self, reference: str, target: str, reason: str) -> None:
        self._made_from = (reference, target, reason)
        ReferenceNotReachable.__init__(self, reference, target)
        self.args = (f"chunk {reference!r} cannot be read from {target} ({reason}); restore "
                     "the file, or rebuild the manifest",)

    def __str__(self) -> str:
        return str(self.args[0])


def _parent(path: str) -> str:
    protocol, rest = split_protocol(path)
    rest = rest.rstrip("/")
    if is_local(protocol):
        return os.path.dirname(os.path.abspath(rest))
    return f"{protocol}://{posixpath.dirname(rest)}"


class ManifestFileSystem(ReferenceFileSystem):
    """Reference file system whose every read goes through a ``SourceGuard``."""

    def __init__(self, fo: Any, *, view: str, guard: SourceGuard, locations: Locations,
                 bounds: dict[str, ChunkBound], **kwargs: Any) -> None:
        self.view = view
        self.guard = guard
        self.locations = locations
        self.bounds = bounds
        self._resolved: dict[str, str] = {}
        self.on_absent: Callable[[str], None] = lambda path: None   # manifest_reads
        self.records: ParquetRecords | None = None   # local Parquet: read directly
        super().__init__(fo, **kwargs)

    def resolve(self, url: str) -> str:
        """The checked real location of a reference, or ``UnsafeReferenceError``."""
        done = self._resolved.get(url)
        if done is not None:
            return done
        protocol, rest = split_protocol(url)
        moved = self.locations.move(url)
        if moved is not None:        # a listed file's old location: the run was moved
            loc = moved
        elif protocol is None and not os.path.isabs(rest):
            loc = normalize(join(self.locations.data_base, rest))
        else:
            loc = normalize(url)
        self.guard.check_location(url, loc)
        self._resolved[url] = loc
        return loc

    def _cat_common(self, path: str, start: int | None = None, end: int | None = None
                    ) -> tuple[Any, int | None, int | None]:
        try:
            url, s, e = super()._cat_common(path, start, end)
        except TypeError as exc:  # a null Parquet reference: the chunk is absent
            self.on_absent(path)
            raise FileNotFoundError(path) from exc
        except FileNotFoundError:
            self.on_absent(path)     # data the counts promise: never read as fill
            raise
        except ValueError as exc:  # a reference that is not [url], [url, offset, size]
            raise FileFormatError(self.view, f"holds a malformed reference for {path!r}") \
                from exc
        if isinstance(url, bytes):
            return url, s, e
        if not isinstance(url, str):
            self.on_absent(path)
            raise FileNotFoundError(path)
        return self.resolve(url), s, e

    def _inline(self, path: str, part: bytes) -> bytes:
        if not path.endswith(META_SUFFIXES) and "/" in path:
            check_inline_chunk(path, part, self.bounds.get(path.rsplit("/", 1)[0]), self.view)
        return part

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        **kwargs: Any) -> bytes:
        part, s, e = self._cat_common(path, start, end)
        if isinstance(part, bytes):
            return self._inline(path, part)[start:end]
        protocol, _ = split_protocol(part)
        try:
            if is_local(protocol):
                return self.guard.pread(part, s, e)
            self.guard.check_range(part, s, e)
            return await self.fss[protocol]._cat_file(part, start=s, end=e)
        except DetstackError:
            raise
        except Exception as exc:  # never FileNotFoundError: zarr would read it as fill
            raise SourceUnreachableError(path, part, str(exc) or type(exc).__name__) from exc

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        """Synchronous reads of local references go through the same checks."""
        part, s, e = self._cat_common(path, start, end)
        if isinstance(part, bytes):
            return self._inline(path, part)[start:end]
        if not is_local(split_protocol(part)[0]):
            raise NotImplementedError("remote manifests are read asynchronously (through "
                                      "manifest_store or open_view)")
        try:
            return self.guard.pread(part, s, e)
        except DetstackError:
            raise
        except Exception as exc:
            raise SourceUnreachableError(path, part, str(exc) or type(exc).__name__) from exc

    def read_source(self, path: str, loc: str, start: int, end: int,
                    hints: tuple[str, ...] = (), at: tuple[int, ...] | None = None) -> bytes:
        """Bytes [start, end) of the checked local source ``loc`` (a resolved reference
        of chunk ``path``; ``hints``: the datasets it is probably a chunk of; ``at``: its
        element offset in the first of them, if known), with ``cat_file``'s errors."""
        try:
            return self.guard.pread(loc, start, end, hints, at)
        except DetstackError:
            raise
        except Exception as exc:
            raise SourceUnreachableError(path, loc, str(exc) or type(exc).__name__) from exc

    def cat(self, path: Any, recursive: bool = False, on_error: str = "raise",
            **kwargs: Any) -> Any:
        if isinstance(path, str):
            return self.cat_file(path)
        return {p: self.cat_file(p) for p in path}

    def close_files(self) -> None:
        self.guard.close()
        if self.records is not None:
            self.records.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close_files()

    def check_all(self) -> None:
        """Check every reference now (JSON references, all in memory)."""
        if isinstance(self.references, LazyReferenceMapper):
            return
        for key, v in self.references.items():
            if isinstance(v, list) and v and isinstance(v[0], str):
                loc = self.resolve(v[0])
                if len(v) == 3 and isinstance(v[1], int) and isinstance(v[2], int):
                    self.guard.check_range(loc, v[1], v[1] + v[2])
            elif not isinstance(v, (str, bytes, list)):
                raise FileFormatError(self.view, f"holds a malformed reference for {key!r}")


class _ParquetRecords(LazyReferenceMapper):
    """fsspec's lazy Parquet references, loaded with fastparquet directly: nulls stay
    None (absent chunks) and no pandas deprecation warnings on every record. Local
    record files must be regular files."""

    def setup(self) -> None:
        self.local = local = "file" in (self.fs.protocol if isinstance(self.fs.protocol,
                                                                       tuple)
                                        else (self.fs.protocol,))
        if local:
            require_regular_file(os.path.join(self.root, ".zmetadata"), "manifest metadata")
        super().setup()

        @lru_cache(maxsize=self.cache_size)
        def open_refs(field: str, record: int) -> dict[str, np.ndarray]:
            import fastparquet  # here: detstack's own reads need neither it nor pandas

            path = self.url.format(field=field, record=record)
            if local:
                require_regular_file(path, "manifest reference file")
            frame = fastparquet.ParquetFile(io.BytesIO(self.fs.cat_file(path))).to_pandas()
            refs = {c: frame[c].to_numpy(copy=True) for c in frame.columns}
            if "path" in refs:   # a null path (absent chunk) is None, however it was written
                paths = refs["path"].astype(object)
                paths[frame["path"].isna().to_numpy()] = None
                refs["path"] = paths
            return refs

        self.open_refs = open_refs


def _remote_options(protocol: str | None, storage_options: dict[str, Any]) -> dict[str, Any]:
    if is_local(protocol):
        return {}
    opts = dict(storage_options)
    if fsspec.get_filesystem_class(protocol).async_impl:
        opts.setdefault("asynchronous", True)   # the reference FS runs asynchronously
        opts.setdefault("skip_instance_cache", True)
    return opts


def _load(path: str, ref_fs: Any, ref_path: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(references, consolidated metadata, record) of a JSON file or Parquet folder."""
    local = is_local(split_protocol(path)[0])
    if ref_fs.isdir(ref_path):
        try:
            fo: Any = _ParquetRecords(ref_path, fs=ref_fs)
            meta = fo.zmetadata
        except RecursionError as exc:
            raise ViewLimitError(f"{path}: metadata nested too deeply; do not open it") from exc
        except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
            raise FileFormatError(path, "is not a Parquet reference set (no readable "
                                  ".zmetadata)") from exc
        if not isinstance(meta, dict):
            raise FileFormatError(path, "is not a Parquet reference set")
        check_depth(meta, path)
        attrs = meta.get(".zattrs", {})
        record = attrs.get("detstack_record", {}) if isinstance(attrs, dict) else {}
        return fo, meta, record if isinstance(record, dict) else {}
    if local:
        require_regular_file(ref_path, "manifest")
    try:
        with ref_fs.open(ref_path, "rb") as f:
            fo = json.load(f)
    except RecursionError as exc:
        raise ViewLimitError(f"{path}: JSON nested too deeply to parse; this is not a "
                             "manifest detstack or kerchunk wrote. Do not open it") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(path, f"is not a JSON reference file ({exc})") from exc
    if not isinstance(fo, dict) or not isinstance(fo.get("refs", fo), dict):
        raise FileFormatError(path, "is not a kerchunk reference file")
    refs = fo.get("refs", fo)
    meta: dict[str, Any] = {}
    for key, value in refs.items():
        if key.endswith(META_SUFFIXES[:3]) or key == ".zmetadata":
            if isinstance(value, (str, bytes)):
                meta[key] = loads(value, f"{path}: {key}")
            elif isinstance(value, dict):
                check_depth(value, f"{path}: {key}")
                meta[key] = value
    consolidated = meta.get(".zmetadata", {})
    merged = dict(consolidated.get("metadata", {})) if isinstance(consolidated, dict) else {}
    for k, v in meta.items():   # single entries: checked too; the consolidated ones win
        if k != ".zmetadata":
            check_metadata({k: v}, path)
            merged.setdefault(k, v)
    attrs = merged.get(".zattrs", {})
    record = attrs.get("detstack_record", {}) if isinstance(attrs, dict) else {}
    return fo, merged, record if isinstance(record, dict) else {}


def _sanitise(fo: Any, meta: dict[str, Any], record: dict[str, Any], path: str
              ) -> dict[str, ChunkBound]:
    """Check every array's metadata; write back explicit fill values where null."""
    bounds = check_metadata(meta, path)
    if isinstance(fo, LazyReferenceMapper):
        if fill_null_values(fo.zmetadata, record, path):
            doc = json.loads(fo._items[".zmetadata"])
            doc["metadata"] = fo.zmetadata
            fo._items[".zmetadata"] = json.dumps(doc).encode()
        return bounds
    refs = fo.get("refs", fo)
    if not fill_null_values(meta, record, path):
        return bounds
    for key in list(refs):
        if key.endswith(".zarray") and key in meta:
            refs[key] = json.dumps(meta[key])
    if ".zmetadata" in refs:
        doc = loads(refs[".zmetadata"], path) if isinstance(refs[".zmetadata"], (str, bytes)) \
            else refs[".zmetadata"]
        doc["metadata"] = {k: meta.get(k, v) for k, v in doc.get("metadata", {}).items()}
        refs[".zmetadata"] = json.dumps(doc)
    return bounds


def manifest_filesystem(path: str, storage_options: dict[str, Any] | None = None,
                        allowed_prefixes: Iterable[str] | None = None,
                        check: bool = True, check_content: bool = True) -> ManifestFileSystem:
    """The guarded reference file system of a manifest (``.json`` or ``.parq`` folder)."""
    so = dict(storage_options or {})
    path = os.fspath(path)
    if is_local(split_protocol(path)[0]):
        refuse_special(split_protocol(path)[1], "manifest")
    folder = _parent(path)
    ref_fs, ref_path = fsspec.core.url_to_fs(path, **so)
    fo, meta, record = _load(path, ref_fs, ref_path)
    bounds = _sanitise(fo, meta, record, path)
    attrs = meta.get(".zattrs")
    where = locate(record, attrs if isinstance(attrs, dict) else {}, folder)
    data_base = where.data_base
    info = record.get("manifest", {}) if isinstance(record.get("manifest"), dict) else {}
    kwargs: dict[str, Any] = {"asynchronous": True}
    if (not isinstance(fo, LazyReferenceMapper) and info.get("paths", "relative") == "relative"
            and isinstance(fo.get("templates"), dict) and TEMPLATE in fo["templates"]):
        kwargs["template_overrides"] = {TEMPLATE: data_base}
    protocol = where.remote_protocol()
    kwargs["remote_protocol"] = protocol or "file"
    kwargs["remote_options"] = _remote_options(protocol, so)
    allowed = [normalize(p) for p in (allowed_prefixes or [])]
    guard = SourceGuard(path, where.listed, allowed, normalize(folder), check_content)
    fs = ManifestFileSystem(fo, view=path, guard=guard, locations=where, bounds=bounds,
                            **kwargs)
    if isinstance(fo, _ParquetRecords) and fo.local:
        fs.records = ParquetRecords(fo.root, int(fo.record_size), path)
    if check:
        fs.check_all()
    return fs


def manifest_store(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                   allowed_prefixes: Iterable[str] | None = None) -> zarr.storage.FsspecStore:
    """A read-only zarr store over a manifest, with the same safety rules as
    ``open_manifest`` and fast local reads: ``xarray.open_zarr(manifest_store(path))``."""
    fs = manifest_filesystem(os.fspath(path), storage_options, allowed_prefixes)
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    try:
        group = zarr.open_group(store, mode="r", zarr_format=2, use_consolidated=True)
    except (FileNotFoundError, KeyError, ValueError):
        return store            # not a zarr group: xarray will say so
    record = group.attrs.get("detstack_record")
    if isinstance(record, dict):
        check_record(record, os.fspath(path))
        promised_chunks(fs, group, record, os.fspath(path))
    return store


def _check_sources(fs: ManifestFileSystem, name: str) -> None:
    """Open every listed local source now: a missing or changed one is refused early."""
    problems = []
    local = [loc for loc in fs.guard.listed if "://" not in loc]
    for loc, exc in zip(local, fs.guard.check_files(local), strict=True):
        if exc is None:
            continue
        if isinstance(exc, FileNotFoundError):
            problems.append(f"{loc} is missing")
        elif isinstance(exc, (FileFormatError, UnsafeReferenceError)) \
                and not isinstance(exc, NotRegularFileError):
            problems.append(str(exc))
        else:
            raise exc
    if problems:
        raise FileFormatError(name, f"its source files are missing or changed "
                              f"({'; '.join(problems[:3])})",
                              "A manifest holds byte offsets into them, which would read "
                              "wrong data: restore them or rebuild the manifest; "
                              "check_sources=False opens it anyway (reads of a changed file "
                              "are still refused)")


def open_manifest(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                  check_sources: bool = True, allowed_prefixes: Iterable[str] | None = None,
                  **kw: Any) -> ViewCollection:
    """Open a manifest written by ``detstack.convert.to_manifest`` as a view.

    References are followed only into the source files the manifest's record lists
    (checked by real path, size, content identity, and inside their datasets' stored
    bytes). ``allowed_prefixes``: folders or URL prefixes (e.g. ``"s3://bucket/raw/"``)
    whose files it may also read (trust widened explicitly). ``check_sources`` checks
    every local source file when opening, so a missing or changed one fails now rather
    than on the first read.
    """
    if kw:
        raise TypeError(f"open_manifest() got unexpected arguments {sorted(kw)}")
    name = os.fspath(path)
    fs = manifest_filesystem(name, storage_options, allowed_prefixes)
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    try:
        group = zarr.open_group(store, mode="r", zarr_format=2, use_consolidated=True)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise FileFormatError(name, f"holds no readable zarr group ({exc})") from exc
    record = group.attrs.get("detstack_record")
    if not isinstance(record, dict):
        raise FileFormatError(name, "is a zarr manifest without a detstack record",
                              "Open it with xarray/zarr, or write it with "
                              "detstack.convert.to_manifest")
    check_record(record, name)
    local = is_local(split_protocol(name)[0])
    if check_sources:
        _check_sources(fs, name)
    missing = [k for k in list(record["keys"]) + ["train"] if k not in group]
    if missing:
        raise FileFormatError(name, f"lacks arrays its record names: {missing[:5]}",
                              "The manifest is incomplete or damaged; write it again")
    train_ids = np.asarray(small_array(group, fs, record, "train"), dtype=np.uint64)
    counts = {g: small_array(group, fs, record, f"count.{g}") for g in record["index_groups"]}
    arrays = checked_arrays(group, record, counts, train_ids, name, fs)
    return ViewCollection(Path(name) if local else name, record, arrays, train_ids, counts,
                          keepalive=(store, group))
