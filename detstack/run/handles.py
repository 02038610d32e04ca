"""A bounded pool of open HDF5 files, shared by every run file of the process.

Real runs have thousands of sequence files, more than `ulimit -n` often allows, and each
open HDF5 file holds its metadata cache (megabytes once a chunk index has been walked). So
files are opened on demand and the least recently used one is closed when the pool is
full; a closed file is simply reopened on its next use. Running out of handles is
therefore never a reason to skip a file.

The limit is `DETSTACK_MAX_OPEN_FILES` if set, else 64, and never more than a quarter of
the soft `RLIMIT_NOFILE` (at least 4).
"""

from __future__ import annotations

import logging
import os
import resource
import stat
import threading
from collections import OrderedDict
from pathlib import Path

import h5py

from ..errors import FileFormatError

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 64


def default_limit() -> int:
    """How many HDF5 files the pool keeps open at most."""
    env = os.environ.get("DETSTACK_MAX_OPEN_FILES", "")
    wanted = int(env) if env.isdigit() and int(env) > 0 else DEFAULT_LIMIT
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(4, min(wanted, soft // 4))


def require_regular(path: Path) -> os.stat_result:
    """Refuse anything but a regular file before opening it: a FIFO or device would hang."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileFormatError(path, "does not exist") from None
    except OSError as exc:
        raise FileFormatError(path, f"cannot be examined ({exc.strerror})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise FileFormatError(path, "is not a file",
                              "H5File opens one file; RunDirectory opens a run folder")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise FileFormatError(path, f"is {kind}, not a regular file; it is never opened",
                              "Run files must be plain files; remove it or leave it out "
                              "with include=")
    return st


class HandlePool:
    """LRU pool of read-only `h5py.File` objects. Thread-safe.

    Handles are keyed by their owner's token (one per RunFile), not by path, so an owner
    going away closes only its own handle: HDF5 shares one open file between handles of
    the same path, and h5py's close of one handle leaves the others' objects valid.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or default_limit()
        self._files: OrderedDict[object, h5py.File] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: object, path: str | os.PathLike[str]) -> h5py.File:
        """The open file at `path` for owner `key`, opening it (and closing the least
        recently used one) if needed."""
        with self._lock:
            f = self._files.get(key)
            if f is not None and f.id.valid:
                self._files.move_to_end(key)
                return f
            self._files.pop(key, None)
            while len(self._files) >= self.limit:
                _, old = self._files.popitem(last=False)
                old.close()
            require_regular(Path(path))
            f = h5py.File(path, "r")
            self._files[key] = f
            return f

    def discard(self, key: object) -> None:
        """Close the file of owner `key` if it is open."""
        with self._lock:
            f = self._files.pop(key, None)
            if f is not None and f.id.valid:
                f.close()

    def clear(self) -> None:
        with self._lock:
            while self._files:
                _, f = self._files.popitem()
                if f.id.valid:
                    f.close()

    def __len__(self) -> int:
        return len(self._files)


POOL = HandlePool()
