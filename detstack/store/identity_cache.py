"""Content identities already computed, remembered by what ``stat`` says of each file.

Opening a manifest of a 2,000-file run checks every source file's content identity
(``identity``): opening, reading and hashing each costs ~150 us, 0.3 s in all, while a
``stat`` costs 5 us. A file whose device, inode, size, modification and change times
are what they were when its identity was computed has that identity still: every write
changes the change time, and nobody can set it back. So the identity is kept, per
folder, in a small cache outside the run folder (beside the run metadata cache:
``$DETSTACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/detstack``), written by the view writers
and by the first check. It only lets an early check pass sooner: reads still check the
descriptor they read through. Safe to delete; ``DETSTACK_NO_CACHE=1`` neither reads nor
writes it; an unreadable cache is ignored and rewritten.
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..run.meta_cache import cache_enabled, cache_path, read_cache_file, write_cache_file
from .identity import State, file_identity_and_state, stat_state

VERSION = 1
WHAT = "identity cache"


def _cache_file(folder: str) -> Path:
    """Beside the folder's run metadata cache (``meta_cache.cache_path``)."""
    return cache_path(Path(folder)).with_suffix(".identities.npz")


def _decode(meta: dict[str, Any], npz: Any) -> dict[str, tuple[State, dict[str, Any]]]:
    """The entries of a cache file; malformed ones are left out (computed again)."""
    files = meta.get("files")
    out: dict[str, tuple[State, dict[str, Any]]] = {}
    for name, entry in (files.items() if isinstance(files, dict) else ()):
        if not (isinstance(entry, list) and len(entry) == 2):
            continue
        state, ident = entry
        if isinstance(state, list) and len(state) == 5 and isinstance(ident, dict) \
                and all(type(v) is int for v in state):
            out[str(name)] = (tuple(state), ident)   # type: ignore[assignment]
    return out


class IdentityCache:
    """Remembered identities of files, by folder (each folder's cache loaded when first
    asked for, written back by ``save`` if something was added)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = cache_enabled(enabled)
        self._folders: dict[str, dict[str, tuple[State, dict[str, Any]]]] = {}
        self._changed: set[str] = set()
        self._lock = threading.Lock()   # checks run in threads

    def _entries(self, folder: str) -> dict[str, tuple[State, dict[str, Any]]]:
        with self._lock:
            if folder not in self._folders:
                self._folders[folder] = read_cache_file(
                    _cache_file(folder), Path(folder), VERSION, _decode, WHAT) \
                    if self.enabled else {}
            return self._folders[folder]

    def known(self, path: str, st: os.stat_result) -> dict[str, Any] | None:
        """The identity ``path`` (a real path) had while stat said ``st`` of it, if known."""
        if not self.enabled:
            return None
        folder, name = os.path.split(path)
        entry = self._entries(folder).get(name)
        return entry[1] if entry is not None and entry[0] == stat_state(st) else None

    def remember(self, path: str, state: State, identity: dict[str, Any]) -> None:
        if not self.enabled:
            return
        folder, name = os.path.split(path)
        entries = self._entries(folder)
        with self._lock:
            if entries.get(name) != (state, identity):
                entries[name] = (state, identity)
                self._changed.add(folder)

    def save(self) -> None:
        """Write back the folders whose entries changed (failures are only logged)."""
        with self._lock:
            changed = {f: dict(self._folders[f]) for f in self._changed}
            self._changed.clear()
        for folder, entries in sorted(changed.items()):
            meta = {"version": VERSION, "folder": os.path.realpath(folder),
                    "files": {n: [list(s), i] for n, (s, i) in entries.items()}}
            buf = io.BytesIO()
            np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
            write_cache_file(_cache_file(folder), buf.getvalue(), WHAT)


def recorded_identity(path: str | os.PathLike[str], cache: IdentityCache) -> dict[str, Any]:
    """``file_identity`` of ``path``, also remembered in ``cache`` (view writers: the
    first open of the view then finds it)."""
    ident, state = file_identity_and_state(path)
    cache.remember(os.path.realpath(path), state, ident)
    return ident
