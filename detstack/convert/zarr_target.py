"""Where a zarr conversion writes: a folder, an object-store prefix, or a zip file.

Everything goes through one fsspec filesystem and a root path, so local folders
and S3 share one code path, and the object can be pickled to dask workers. A
``.zip`` store is built in a staging folder beside it and packed at the end (a
zip file cannot be written by several writers or resumed).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..store.zarr_store import (
    PLAN_FILE,
    PROGRESS_DIR,
    RECORD_ATTR,
    STAGING_SUFFIX,
    is_zip,
    local_path,
)
from .atomic import atomic_path

DONE_DIR = f"{PROGRESS_DIR}/done"


class Target:
    """Byte-level access to the store being written (picklable, for dask workers)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.zip_path: str | None = None
        local = local_path(url)
        if is_zip(url):
            if local is None:
                raise ValueError(f"{url}: zip stores must be local files; write a folder "
                                 "store to object storage instead")
            self.zip_path = local
            local = local + STAGING_SUFFIX
        if local is not None:
            self.fs: fsspec.AbstractFileSystem = LocalFileSystem(auto_mkdir=True)
            self.root = local
        else:
            self.fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
            self.root = root.rstrip("/")
        self._dirs: set[str] = set()    # local folders known to exist (per process)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        folder = os.path.dirname(path)
        if folder not in self._dirs:
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(folder)
        with open(path, "wb") as f:
            f.write(data)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_dirs"] = set()
        return state

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def names(self, prefix: str) -> set[str]:
        """Names of the objects directly under ``prefix`` (none if it does not exist)."""
        self.fs.invalidate_cache()
        try:
            return {p.rstrip("/").rsplit("/", 1)[-1]
                    for p in self.fs.ls(self.path(prefix), detail=False)}
        except FileNotFoundError:
            return set()

    def remove(self, prefix: str) -> None:
        self._dirs.clear()
        self.fs.invalidate_cache()
        if self.fs.exists(self.path(prefix)):
            self.fs.rm(self.path(prefix), recursive=True)

    # -- what is there already -----------------------------------------------------------

    def _root_state(self, doc: bytes | None) -> str | None:
        if doc is None:
            return None
        try:
            attrs = json.loads(doc).get("attributes", {})
        except ValueError:
            return "foreign"
        return "complete" if RECORD_ATTR in attrs else "foreign"

    def state(self) -> str:
        """'complete' (a finished detstack store), 'partial' (an interrupted conversion),
        'foreign' (something else is there), 'packing' (zip: only packing is left) or
        'absent' (nothing, or an empty folder)."""
        self.fs.invalidate_cache()
        if self.zip_path is not None and os.path.exists(self.zip_path):
            try:
                with zipfile.ZipFile(self.zip_path) as zf:
                    return self._root_state(zf.read("zarr.json")) or "foreign"
            except (zipfile.BadZipFile, KeyError):
                return "foreign"
        root = self._root_state(self.get("zarr.json"))
        if root is not None:
            return "packing" if root == "complete" and self.zip_path else root
        if self.exists(PLAN_FILE):
            return "partial"
        if not self.fs.exists(self.root) or not self.fs.ls(self.root, detail=False):
            return "absent"
        return "foreign"

    def looks_like_zarr(self) -> bool:
        return self.exists("zarr.json") or self.exists(PLAN_FILE)

    def wipe(self) -> None:
        """Delete the store (for a zip: its staging folder; the zip is replaced at the end)."""
        self._dirs.clear()
        self.fs.invalidate_cache()
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

    # -- zip ------------------------------------------------------------------------------

    def pack_zip(self) -> None:
        """Pack the staging folder into the zip file (stored, not recompressed), then
        delete the folder. Root metadata goes last, as when writing a folder."""
        assert self.zip_path is not None
        names = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if not rel.startswith(PROGRESS_DIR + "/"):
                    names.append(rel)
        names.sort(key=lambda n: (n == "zarr.json", n.endswith("zarr.json"), n))
        with atomic_path(self.zip_path, overwrite=True) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for rel in names:
                    zf.write(os.path.join(self.root, rel), rel)
        self.fs.rm(self.root, recursive=True)

    def __repr__(self) -> str:
        return f"<zarr target {self.url}>"
