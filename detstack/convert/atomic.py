"""Write outputs under a temporary name and rename into place when complete.

A reader never sees a half-written file under the final name, and an existing
output is only replaced when the caller asked for it. Temporary names carry the
writer's host and pid (``.NAME.HOST-PID-RAND.partial``), so the next write to
the same target removes those of dead writers and never touches a live one. A
failed write (full disk, file size limit) raises ``OutputWriteError`` naming the
target, after removing the temporary file; HDF5 files that cannot be closed
(their last flush failed) are diverted to ``/dev/null`` first, because h5py
otherwise crashes the interpreter when it frees them later.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DetstackError, OutputWriteError

log = logging.getLogger(__name__)

HOST = socket.gethostname()
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_DISK_WORDS = ("No space left", "File too large", "Disk quota", "errno = 28", "errno = 27")
_TMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}\."
                       r"(?P<kind>partial|old)")


def check_target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    target = Path(path)
    if target.parent.is_dir():
        clean_stale(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to "
                              "replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def temp_sibling(target: Path, kind: str = "partial") -> Path:
    """A hidden name beside ``target`` owned by this process."""
    return target.with_name(f".{target.name}.{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")


def process_alive(host: str, pid: int) -> bool | None:
    """Whether process ``pid`` runs on ``host`` (None: another host, cannot tell)."""
    if host != HOST:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale(target: Path) -> list[Path]:
    """Remove temporary files and folders that dead writers of ``target`` left behind."""
    removed = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = _TMP_NAME.fullmatch(p.name)
        if m is None or m["name"] != target.name:
            continue
        if process_alive(m["host"], int(m["pid"])) is False:
            log.info("removing %s, left by a writer that no longer runs", p)
            remove_path(p)
            removed.append(p)
    return removed


def is_disk_error(exc: BaseException | None) -> bool:
    """A failure of the disk under the output (full, quota, file size limit); h5py also
    reports them as RuntimeError when freeing objects."""
    if exc is None or isinstance(exc, DetstackError) or not isinstance(exc, Exception):
        return False
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return True
    return any(w in str(exc) for w in _DISK_WORDS)


def write_failure(target: Path | str, exc: BaseException) -> OutputWriteError:
    why = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS \
        else str(exc).splitlines()[0][:200]
    return OutputWriteError(target, f"writing failed ({why}); nothing was left under this name "
                            "and the temporary files were removed",
                            "Free space on that disk (or raise the size limit) and write again, "
                            "or write somewhere else")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success."""
    target = check_target(path, overwrite)
    tmp = temp_sibling(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        remove_path(tmp)
        if is_disk_error(exc):
            raise write_failure(target, exc) from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Like ``atomic_path``, for a folder: build it aside, swap it in when complete."""
    target = check_target(path, overwrite)
    tmp = temp_sibling(target)
    try:
        yield tmp
        if target.exists():
            old = temp_sibling(target, "old")
            os.replace(target, old)
            os.replace(tmp, target)
            remove_path(old)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        remove_path(tmp)
        if is_disk_error(exc):
            raise write_failure(target, exc) from exc
        raise


def _divert(fd: int, path: Path) -> None:
    """Point ``fd`` at /dev/null if it is still open on ``path`` (never another file)."""
    try:
        st, mine = os.fstat(fd), os.stat(path)
    except OSError:
        return
    if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def discard_h5(h5: Any, fd: int, path: Path) -> None:
    """Close an HDF5 file whose writes failed, without crashing.

    HDF5 keeps a file it could not flush open, and h5py's finalisers (or HDF5's own
    shutdown) later crash the process; pointing its descriptor at /dev/null first
    lets every later flush and the close succeed.
    """
    _divert(fd, path)
    with contextlib.suppress(Exception):
        h5.close()


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike[str], overwrite: bool = False, *, in_memory: bool = False,
              reserve: int = 0, **kwargs: Any) -> Iterator[Any]:
    """An ``h5py.File`` opened for writing under a temporary name, renamed into place
    once closed; any failure removes it (and names the target if the disk is full).

    ``in_memory``: build the file in memory and write its bytes at the end (for small
    files such as virtual views: HDF5 then never sees a failed write). ``reserve``:
    bytes to allocate on disk before HDF5 writes (the expected file size): a full disk
    then fails here, cleanly, instead of inside HDF5's finalisers (HDF5 trims the file
    to what it used when it closes it).
    """
    import h5py
    with atomic_path(path, overwrite) as tmp:
        if in_memory:
            h5 = h5py.File(tmp, "w", driver="core", backing_store=False, **kwargs)
            try:
                yield h5
                h5.flush()
                image = h5.id.get_file_image()
            finally:
                h5.close()
            with open(tmp, "wb") as f:
                f.write(image)
            return
        with _h5_on_disk(tmp, reserve, kwargs) as h5:
            yield h5


@contextlib.contextmanager
def _h5_on_disk(tmp: Path, reserve: int, kwargs: dict[str, Any]) -> Iterator[Any]:
    """An ``h5py.File`` written at ``tmp`` and closed after the block; a failed write
    (also one inside h5py's finalisers) raises, with the file diverted so that it closes."""
    import h5py
    failed: list[BaseException] = []
    with _catch_unraisable_disk_errors(failed):
        h5 = h5py.File(tmp, "w", **kwargs)
        fd = h5.id.get_vfd_handle()
        try:
            h5.flush()          # no room even for the superblock: fail here
            if reserve:
                os.posix_fallocate(fd, 0, reserve)
            yield h5
            if not failed:
                h5.close()
            if failed:      # a write failed inside a finaliser: the file is not whole
                raise failed[0]
        except BaseException:
            discard_h5(h5, fd, tmp)
            raise


@contextlib.contextmanager
def scratch_h5(target: str | os.PathLike[str], **kwargs: Any) -> Iterator[Any]:
    """An ``h5py.File`` under a temporary name beside ``target``, for an intermediate
    step of writing it: removed after the block, whatever happens (a dead writer's is
    removed by the next write of ``target``, like any of its temporary files)."""
    target = Path(target)
    tmp = temp_sibling(target)
    try:
        with _h5_on_disk(tmp, 0, kwargs) as h5:
            yield h5
    except BaseException as exc:
        if is_disk_error(exc):
            raise write_failure(target, exc) from exc
        raise
    finally:
        remove_path(tmp)


@contextlib.contextmanager
def _catch_unraisable_disk_errors(failed: list[BaseException]) -> Iterator[None]:
    """Collect disk errors h5py raises while freeing objects (it can only print them)."""
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        if is_disk_error(info.exc_value):
            failed.append(info.exc_value)
        else:
            previous(info)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def write_file_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a small file (metadata) so readers see the old or the new bytes, never half."""
    target = Path(path)
    tmp = temp_sibling(target)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise
