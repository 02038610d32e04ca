"""One writer per output: a lock beside the target, naming its owner.

Two conversions of one store at once (a second ``resume`` started by mistake,
two jobs with the same output) would delete each other's files. The lock is a
hidden file beside the target holding the owner's host, pid and start time.
On a local filesystem it is an ``flock``: the kernel releases it when the owner
dies, so a lock is never stale. On object stores (no locking primitive) it is a
small object; one whose owner is known dead (same host, no such pid) is taken
over, any other one refuses the write with the owner's name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from ..errors import TargetLockedError
from .atomic import HOST, process_alive

log = logging.getLogger(__name__)


def _owner() -> dict[str, Any]:
    return {"host": HOST, "pid": os.getpid(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def _describe(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} "
            f"(since {info.get('since', '?')})")


def _refuse(target: str, lock: str, info: dict[str, Any]) -> TargetLockedError:
    return TargetLockedError(
        f"{target} is being written by another conversion: {_describe(info)}. Wait for it "
        f"to finish and run again; if no such process runs, delete the lock {lock}")


@contextlib.contextmanager
def local_lock(target: str, lock: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (created if needed, removed on release)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd, "r") as f:
                text = f.read()
            try:
                info = json.loads(text)
            except ValueError:
                info = {}
            raise _refuse(target, lock, info) from None
        # the previous owner may have removed the file between our open and flock
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def live_owner(lock: str) -> dict[str, Any] | None:
    """The owner of a held local lock (a writer is working on the target now), else None.

    Readers use it to tell "being written" from "not a store": the lock is taken
    before the writer creates anything, so it covers the moment a folder exists but
    holds no metadata yet.
    """
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return dict(json.loads(os.pread(fd, 4096, 0) or b"{}"))
            except (ValueError, TypeError):
                return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def object_lock(fs: Any, target: str, lock: str) -> Iterator[None]:
    """A lock object on a filesystem without locks (best effort: check, write, re-read)."""
    mine = _owner()
    try:
        info = json.loads(fs.cat_file(lock))
    except FileNotFoundError:
        info = None
    except ValueError:
        info = {}
    if info is not None:
        if process_alive(str(info.get("host")), int(info.get("pid", -1))) is not False:
            raise _refuse(target, lock, info)
        log.warning("taking over the lock %s of %s, which no longer runs", lock, _describe(info))
    fs.pipe_file(lock, json.dumps(mine).encode())
    fs.invalidate_cache()
    if json.loads(fs.cat_file(lock)) != mine:
        raise _refuse(target, lock, json.loads(fs.cat_file(lock)))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(lock)
