"""A small cache of what opening each run file reads, kept outside the run folder.

Opening a run of 2,000 files reads INDEX/trainId, INDEX/flag and the source list of each
one. The cache keeps those (`FileInfo`) per run folder, one `.npz` file under
`$DETSTACK_CACHE_DIR`, else `$XDG_CACHE_HOME/detstack`, else `~/.cache/detstack`, keyed by
the folder's real path; an entry is used only while its file has the same size and
modification time. It is safe to delete at any time; a damaged or unreadable cache file
is ignored (and rewritten). Set `DETSTACK_NO_CACHE=1` or pass `cache=False` to
RunDirectory to neither read nor write it. Nothing is ever written into the run folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .files import FileInfo

log = logging.getLogger(__name__)

VERSION = 1
Stamp = tuple[int, int]  # (size, mtime_ns)


def cache_enabled(cache: bool | None) -> bool:
    if cache is not None:
        return bool(cache)
    return os.environ.get("DETSTACK_NO_CACHE", "") in ("", "0")


def cache_root() -> Path:
    env = os.environ.get("DETSTACK_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "detstack"


def cache_path(folder: Path) -> Path:
    real = os.path.realpath(folder)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_root() / "runs" / f"{digest}.npz"


def stamp(st: os.stat_result) -> Stamp:
    return (int(st.st_size), int(st.st_mtime_ns))


def load(folder: Path) -> dict[str, tuple[Stamp, FileInfo]]:
    """{file name: (stamp, info)} of the cache of `folder`; {} if absent or unreadable."""
    return read_cache_file(cache_path(folder), folder, VERSION, _decode, "metadata cache")


def _decode(meta: dict[str, Any], npz: Any) -> dict[str, tuple[Stamp, FileInfo]] | None:
    tids, flags = npz["train_ids"], npz["flags"]
    out: dict[str, tuple[Stamp, FileInfo]] = {}
    pos = 0
    for e in meta["files"]:
        n = int(e["n"])
        flag = flags[pos:pos + n].astype(e["flag_dtype"]) if e["flag_dtype"] else None
        # a view, not a copy: the run's files keep their train IDs (8 bytes per train)
        info = FileInfo(str(e["version"]), np.asarray(tids[pos:pos + n], np.uint64), flag,
                        tuple(e["control"]), tuple(e["instrument"]), dict(e["legacy"]))
        out[str(e["name"])] = ((int(e["size"]), int(e["mtime_ns"])), info)
        pos += n
    return out if pos == len(tids) == len(flags) else None


def save(folder: Path, entries: dict[str, tuple[Stamp, FileInfo]]) -> None:
    """Replace the cache of `folder` atomically; failures (read-only home...) are logged."""
    path = cache_path(folder)
    files, tids, flags = [], [], []
    for name, ((size, mtime), info) in sorted(entries.items()):
        n = len(info.raw_train_ids)
        flag = info.flag
        if flag is not None and (flag.ndim != 1 or len(flag) != n):
            continue  # unusual shapes are read from the file each time
        files.append({"name": name, "size": size, "mtime_ns": mtime, "n": n,
                      "version": info.format_version, "control": list(info.control_sources),
                      "instrument": list(info.instrument_sources),
                      "legacy": info.legacy_sources,
                      "flag_dtype": None if flag is None else flag.dtype.str})
        tids.append(info.raw_train_ids)
        flags.append(np.zeros(n, np.int64) if flag is None else flag.astype(np.int64))
    meta = {"version": VERSION, "folder": os.path.realpath(folder), "files": files}
    buf = io.BytesIO()
    flag = np.concatenate(flags) if flags else np.zeros(0, np.int64)
    if flag.size and -128 <= int(flag.min()) and int(flag.max()) <= 127:
        flag = flag.astype(np.int8)   # exact, restored to each file's flag_dtype
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             train_ids=np.concatenate(tids) if tids else np.zeros(0, np.uint64), flags=flag)
    write_cache_file(path, buf.getvalue(), "metadata cache")


def read_cache_file(path: Path, folder: Path, version: int,
                    decode: Callable[[dict[str, Any], Any], dict[Any, Any] | None],
                    what: str) -> dict[Any, Any]:
    """The entries of a cache file written by ``write_cache_file`` (an ``.npz`` with a
    JSON ``meta``), decoded by ``decode(meta, npz)``; {} if absent, of another version or
    folder, or unreadable in any way (logged): the run's files are read instead."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            if meta.get("version") != version or meta.get("folder") != os.path.realpath(folder):
                return {}
            return decode(meta, npz) or {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as exc:
        log.info("ignoring unreadable %s %s (%s)", what, path, exc)
        return {}


def write_cache_file(path: Path, data: bytes, what: str) -> None:
    """Replace a cache file atomically (a hidden temporary beside it, then rename); a
    cache that cannot be written is only logged: the next open reads the files again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        log.info("could not write the %s %s (%s)", what, path, exc)
