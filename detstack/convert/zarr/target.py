"""Where a zarr conversion writes: a folder, an object-store prefix, or a zip file.

Everything goes through one fsspec filesystem and a root path, so local folders
and S3 share one code path, and the object can be pickled to dask workers. A
``.zip`` store is built in a staging folder beside it and packed at the end (a
zip file cannot be written by several writers or resumed).

What a store "is" (``Target.state``) is decided so that no interruption ever makes
an unfinished store look finished: only a root ``zarr.json`` carrying the detstack
record (written last, atomically) marks a complete store; the progress ledger of
an unfinished conversion wins over any root a plain zarr tool may have written;
and removing a store renames it away in one step (local), or first marks it as
being removed and deletes its root before anything else (object stores).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ...store.zarr_store import (
    PLAN_FILE,
    PROGRESS_DIR,
    RECORD_ATTR,
    REMOVING,
    STAGING_SUFFIX,
    is_zip,
    local_path,
)
from ..atomic import atomic_path, remove_path, temp_sibling
from ..locks import local_lock, object_lock
from .encode import ObjectFile, Parts, write_parts

DONE_DIR = f"{PROGRESS_DIR}/done"
TEMP_MARK = ".tmp-"                     # hidden temporary objects of atomic writes
CHECKSUMS = ".detstack-checksums.json"  # crc32 per (module slot, train) block and key


def is_chunk_key(key: str) -> bool:
    """Chunk or shard objects (written once by their one task; everything else is metadata)."""
    return "/c/" in key or key.startswith("c/")


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

    @property
    def final_path(self) -> str:
        """The output's own name: the zip file, or the store's root."""
        return self.zip_path or self.root

    @property
    def lock_path(self) -> str:
        parent, name = self.final_path.rstrip("/").rsplit("/", 1)
        return f"{parent}/.{name}.lock"

    def _local_folder(self, path: str) -> None:
        folder = os.path.dirname(path)
        if folder not in self._dirs:
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(folder)

    def put(self, key: str, data: bytes | list[Any]) -> None:
        """Write an object (bytes, or its pieces in order); metadata objects are replaced
        atomically (temp + rename)."""
        path = self.path(key)
        if isinstance(data, list) and not (self.is_local and is_chunk_key(key)):
            data = b"".join(data)
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        self._local_folder(path)
        folder = os.path.dirname(path)
        if is_chunk_key(key):
            write_parts(path, data if isinstance(data, list) else [data])
            return
        tmp = f"{folder}/.{os.path.basename(path)}{TEMP_MARK}{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def open_object(self, key: str) -> Iterator[Callable[[Parts], int]]:
        """``write(pieces) -> bytes written``, appending to the chunk object ``key`` as it
        is encoded: straight to its file on a local target (``encode.ObjectFile``),
        otherwise gathered and put when the block ends without an error. Like ``put``
        of a chunk object, not atomic: the task's done marker says it is whole. A local
        object is whole on disk once ``direct_file.settle()`` returns in this thread
        (``run_task`` calls it before the done marker)."""
        if not (self.is_local and is_chunk_key(key)):
            parts: Parts = []

            def gather(pieces: Parts) -> int:
                parts.extend(pieces)
                return sum(memoryview(p).nbytes for p in pieces)
            yield gather
            self.put(key, parts)
            return
        path = self.path(key)
        self._local_folder(path)
        with ObjectFile(path, settle_later=True) as f:
            yield f.write

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Be the only writer of this store while the block runs (TargetLockedError if
        another live process is)."""
        if self.is_local:
            os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
            with local_lock(self.url, self.lock_path):
                yield
        else:
            with object_lock(self.fs, self.url, self.lock_path):
                yield

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_dirs"] = set()
        return state

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None

    def get_many(self, keys: list[str]) -> list[bytes]:
        """Several small objects in one batch (one round trip on object stores)."""
        if not keys:
            return []
        if self.is_local:
            return [d for d in map(self.get, keys) if d is not None]
        found = self.fs.cat([self.path(k) for k in keys], on_error="omit")
        return [found[p] for p in (self.path(k) for k in keys) if p in found]

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
        """'complete' for a root carrying the detstack record, 'foreign' for any other
        root, None without one."""
        if doc is None:
            return None
        try:
            attrs = json.loads(doc).get("attributes", {})
        except (ValueError, AttributeError):
            return "foreign"
        return "complete" if isinstance(attrs, dict) and RECORD_ATTR in attrs else "foreign"

    def _zip_state(self) -> str | None:
        if self.zip_path is None or not os.path.exists(self.zip_path):
            return None
        try:
            with zipfile.ZipFile(self.zip_path) as zf:
                return self._root_state(zf.read("zarr.json")) or "foreign"
        except (zipfile.BadZipFile, KeyError, OSError):
            return "foreign"

    def state(self) -> str:
        """What is at the target.

        'complete': a finished detstack store; 'partial': an interrupted conversion
        (resumable); 'removing': a store whose deletion was interrupted; 'packing'
        (zip): only packing is left; 'foreign': something else; 'absent': nothing, or
        an empty folder.
        """
        self.fs.invalidate_cache()
        root = self._root_state(self.get("zarr.json"))
        if self.exists(REMOVING):
            return "removing"
        if root == "complete":
            return "packing" if self.zip_path else "complete"
        if self.exists(PLAN_FILE):
            return "partial"          # whatever root a plain zarr tool may have added
        zipped = self._zip_state()
        if zipped is not None:
            return zipped
        if root is not None:
            return root
        if not self.fs.exists(self.root) or not self.fs.ls(self.root, detail=False):
            return "absent"
        return "foreign"

    def looks_like_zarr(self) -> bool:
        return self.exists("zarr.json") or self.exists(PLAN_FILE) or self.exists(REMOVING)

    def clean_temporaries(self) -> None:
        """Remove the temporary objects of metadata writes cut short by a kill."""
        if not self.is_local or not os.path.isdir(self.root):
            return
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and TEMP_MARK in name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))

    def wipe(self) -> None:
        """Delete the store (for a zip: its staging folder; the zip is replaced at the end),
        never passing through a state that reads as complete."""
        self._dirs.clear()
        self.fs.invalidate_cache()
        if not self.fs.exists(self.root):
            return
        if self.is_local:             # one rename: the name is free at once
            old = temp_sibling(Path(self.root), "old")
            os.replace(self.root, old)
            remove_path(old)
            return
        self.put(REMOVING, b"")
        for key in ("zarr.json", CHECKSUMS):
            if self.exists(key):
                self.fs.rm_file(self.path(key))
        for p in self.fs.ls(self.root, detail=False):
            if p.rstrip("/").rsplit("/", 1)[-1] != PROGRESS_DIR:
                self.fs.rm(p, recursive=True)
        # the ledger in an order that never reads as a resumable conversion
        for key in (DONE_DIR, PLAN_FILE):
            self.remove(key)
        self.fs.rm(self.root, recursive=True)
        self.fs.invalidate_cache()

    # -- zip ------------------------------------------------------------------------------

    def pack_zip(self) -> None:
        """Pack the staging folder into the zip file (stored, not recompressed), then
        delete the folder. Root metadata goes last, as when writing a folder."""
        assert self.zip_path is not None
        names = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if not rel.startswith(PROGRESS_DIR + "/") and TEMP_MARK not in name:
                    names.append(rel)
        names.sort(key=lambda n: (n == "zarr.json", n.endswith("zarr.json"), n))
        with atomic_path(self.zip_path, overwrite=True) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for rel in names:
                    zf.write(os.path.join(self.root, rel), rel)
        self.fs.rm(self.root, recursive=True)

    def __repr__(self) -> str:
        return f"<zarr target {self.url}>"
