"""Open a Zarr manifest (kerchunk references, JSON or Parquet) as a detstack view.

A manifest is data from someone else: every reference it holds is a file path or
URL that a reader would open. Only references inside the manifest's own folder
tree, or below prefixes the caller allows, are followed; anything else is refused
with ``UnsafeReferenceError`` before a byte is read (JSON: when opening; Parquet,
whose references load lazily: on the first read that meets one).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
from collections.abc import Iterable
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

from ..errors import DetstackError, FileFormatError
from .verify import verify_record
from .view_collection import ViewCollection, check_record

TEMPLATE = "base"  # the template naming the folder references are relative to
MAX_OPEN_FILES = 128  # source files kept open for local reads


class UnsafeReferenceError(DetstackError, PermissionError):
    """A manifest refers to data outside the places the reader allowed."""


def _is_local(protocol: str | None) -> bool:
    return protocol in (None, "file", "local")


def normalize(url: str) -> str:
    """A canonical form for comparing locations: absolute local paths, 'proto://...' URLs."""
    protocol, rest = split_protocol(url)
    if _is_local(protocol):
        return os.path.normpath(os.path.abspath(os.path.expanduser(rest)))
    return f"{protocol}://{posixpath.normpath(rest)}"


def _inside(url: str, root: str) -> bool:
    if url == root:
        return True
    sep = os.sep if "://" not in root else "/"
    return url.startswith(root.rstrip(sep) + sep)


class ManifestFileSystem(ReferenceFileSystem):
    """Reference file system that resolves relative references against the manifest's
    folder, refuses references outside the allowed roots, and reads holes as absent."""

    def __init__(self, fo: Any, *, base: str, allowed: list[str], **kwargs: Any) -> None:
        self.manifest_base = base
        self.allowed_roots = allowed
        self._resolved: dict[str, str] = {}
        self._fds: dict[str, int] = {}
        super().__init__(fo, **kwargs)

    def resolve(self, url: str) -> str:
        """The normalised location of a reference, or UnsafeReferenceError."""
        done = self._resolved.get(url)
        if done is not None:
            return done
        protocol, rest = split_protocol(url)
        if protocol is None and not os.path.isabs(rest):
            joined = posixpath.join(self.manifest_base, rest)
        else:
            joined = url
        loc = normalize(joined)
        if not any(_inside(loc, root) for root in self.allowed_roots):
            raise UnsafeReferenceError(
                f"the manifest refers to {url!r} ({loc}), outside its own folder "
                f"{self.allowed_roots[0]}; pass allowed_prefixes=[...] naming that location "
                "to open_view/open_manifest if you trust this manifest")
        self._resolved[url] = loc
        return loc

    def _cat_common(self, path: str, start: int | None = None, end: int | None = None
                    ) -> tuple[Any, int | None, int | None]:
        try:
            url, s, e = super()._cat_common(path, start, end)
        except TypeError as exc:  # a null Parquet reference: the chunk is absent
            raise FileNotFoundError(path) from exc
        if isinstance(url, bytes):
            return url, s, e
        if not isinstance(url, str):
            raise FileNotFoundError(path)
        return self.resolve(url), s, e

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        **kwargs: Any) -> bytes:
        part, s, e = self._cat_common(path, start, end)
        if isinstance(part, bytes):
            return part[start:end]
        protocol, _ = split_protocol(part)
        try:
            if _is_local(protocol):
                return self._pread(part, s, e)
            return await self.fss[protocol]._cat_file(part, start=s, end=e)
        except Exception as exc:  # never FileNotFoundError: zarr would read it as fill
            raise ReferenceNotReachable(path, part) from exc

    def _pread(self, url: str, start: int | None, end: int | None) -> bytes:
        """Local references: one pread on a cached descriptor (no thread hop per chunk)."""
        fd = self._fds.pop(url, None)
        if fd is None:
            fd = os.open(url, os.O_RDONLY)
            if len(self._fds) >= MAX_OPEN_FILES:
                os.close(self._fds.pop(next(iter(self._fds))))
        self._fds[url] = fd  # most recently used last
        start = start or 0
        if end is None:
            end = os.fstat(fd).st_size
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise OSError(f"{url} ends before byte {end} (truncated or rewritten?)")
        return data

    def close_files(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close_files()

    def check_all(self) -> None:
        """Check every reference now (JSON references, all in memory)."""
        if isinstance(self.references, LazyReferenceMapper):
            return
        for url in {v[0] for v in self.references.values() if isinstance(v, list) and v}:
            if isinstance(url, str):
                self.resolve(url)


class _ParquetRecords(LazyReferenceMapper):
    """fsspec's lazy Parquet references, loaded with fastparquet directly: nulls stay
    None (absent chunks) and no pandas deprecation warnings on every record."""

    def setup(self) -> None:
        super().setup()
        import fastparquet

        @lru_cache(maxsize=self.cache_size)
        def open_refs(field: str, record: int) -> dict[str, np.ndarray]:
            path = self.url.format(field=field, record=record)
            frame = fastparquet.ParquetFile(io.BytesIO(self.fs.cat_file(path))).to_pandas()
            return {c: frame[c].to_numpy(copy=True) for c in frame.columns}

        self.open_refs = open_refs


def _parent(path: str) -> str:
    protocol, rest = split_protocol(path)
    rest = rest.rstrip("/")
    if _is_local(protocol):
        return os.path.dirname(os.path.abspath(rest))
    return f"{protocol}://{posixpath.dirname(rest)}"


def _remote_options(protocol: str | None, storage_options: dict[str, Any]) -> dict[str, Any]:
    if _is_local(protocol):
        return {}
    opts = dict(storage_options)
    if fsspec.get_filesystem_class(protocol).async_impl:
        opts.setdefault("asynchronous", True)   # the reference FS runs asynchronously
        opts.setdefault("skip_instance_cache", True)
    return opts


def manifest_filesystem(path: str, storage_options: dict[str, Any] | None = None,
                        allowed_prefixes: Iterable[str] | None = None,
                        check: bool = True) -> ManifestFileSystem:
    """The guarded reference file system of a manifest (``.json`` or ``.parq`` folder)."""
    so = dict(storage_options or {})
    path = os.fspath(path)
    base = _parent(path)
    allowed = [normalize(base)] + [normalize(p) for p in (allowed_prefixes or [])]
    ref_fs, ref_path = fsspec.core.url_to_fs(path, **so)
    kwargs: dict[str, Any] = {"asynchronous": True, "base": base, "allowed": allowed}
    if ref_fs.isdir(ref_path):
        try:
            fo: Any = _ParquetRecords(ref_path, fs=ref_fs)
            zmeta = fo.zmetadata
        except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
            raise FileFormatError(path, "is not a Parquet reference set (no readable "
                                  ".zmetadata)") from exc
        record = zmeta.get(".zattrs", {}).get("detstack_record", {})
    else:
        try:
            with ref_fs.open(ref_path, "rb") as f:
                fo = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FileFormatError(path, f"is not a JSON reference file ({exc})") from exc
        if not isinstance(fo, dict) or not isinstance(fo.get("refs", fo), dict):
            raise FileFormatError(path, "is not a kerchunk reference file")
        try:
            attrs = fo.get("refs", fo).get(".zattrs", "{}")
            record = (json.loads(attrs) if isinstance(attrs, str) else attrs)["detstack_record"]
        except (KeyError, TypeError, ValueError):
            record = {}
    info = record.get("manifest", {}) if isinstance(record, dict) else {}
    if not isinstance(info, dict):
        info = {}
    if not isinstance(fo, LazyReferenceMapper) and info.get("paths") == "relative":
        kwargs["template_overrides"] = {TEMPLATE: base}
    data_base = base if info.get("paths", "relative") == "relative" else info.get("base", base)
    protocol, _ = split_protocol(data_base)
    kwargs["remote_protocol"] = protocol or "file"
    kwargs["remote_options"] = _remote_options(protocol, so)
    fs = ManifestFileSystem(fo, **kwargs)
    if check:
        fs.check_all()
    return fs


def manifest_store(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                   allowed_prefixes: Iterable[str] | None = None) -> zarr.storage.FsspecStore:
    """A read-only zarr store over a manifest, with the same safety rules as
    ``open_manifest`` and fast local reads: ``xarray.open_zarr(manifest_store(path))``."""
    fs = manifest_filesystem(os.fspath(path), storage_options, allowed_prefixes)
    return zarr.storage.FsspecStore(fs, read_only=True, path="")


def open_manifest(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                  check_sources: bool = True, allowed_prefixes: Iterable[str] | None = None,
                  **kw: Any) -> ViewCollection:
    """Open a manifest written by ``detstack.convert.to_manifest`` as a view.

    ``allowed_prefixes``: folders or URL prefixes (e.g. ``"s3://bucket/raw/"``) whose
    files the manifest may refer to, besides its own folder tree. ``check_sources``
    refuses a manifest whose local source files are missing or changed since it
    was written (its byte offsets would read wrong data).
    """
    if kw:
        raise TypeError(f"open_manifest() got unexpected arguments {sorted(kw)}")
    name = os.fspath(path)
    store = manifest_store(name, storage_options, allowed_prefixes)
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
    local = _is_local(split_protocol(name)[0])
    if check_sources and local and record.get("manifest", {}).get("paths") != "url":
        report = verify_record(name, record)
        if not report.ok:
            problems = "; ".join((report.missing + report.changed)[:3])
            raise FileFormatError(name, f"its source files are missing or changed ({problems})",
                                  "A manifest holds byte offsets into them, which would read "
                                  "wrong data: rebuild it, or pass check_sources=False")
    arrays = {key: group[key] for key in record["keys"]}
    train_ids = np.asarray(group["train"][:], dtype=np.uint64)
    counts = {g: np.asarray(group[f"count.{g}"][:]) for g in record["index_groups"]}
    return ViewCollection(Path(name) if local else name, record, arrays, train_ids, counts,
                          keepalive=(store, group))
