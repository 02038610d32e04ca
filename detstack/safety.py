"""Refuse paths that are not regular files before anything opens them.

Opening a FIFO blocks until a writer appears; a character device (``/dev/zero``)
reads forever. A data file named ``*.h5`` or ``*.json`` that is one of these must
be refused with a typed error, never opened. ``open_regular`` opens without
blocking and checks the opened file itself, so a path swapped between the check
and the open cannot slip through.
"""

from __future__ import annotations

import os
import stat

from .errors import NotRegularFileError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str | os.PathLike[str], what: str, mode: int) -> NotRegularFileError:
    return NotRegularFileError(
        f"{os.fspath(path)}: the {what} is {_kind(mode)}, not a regular file; detstack "
        "refuses to open it (it could block or never end). Point it at the real file")


def require_regular_file(path: str | os.PathLike[str], what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` (symlinks followed) if it is a regular file, else
    ``NotRegularFileError``; a missing path raises ``FileNotFoundError`` as usual."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, what, st.st_mode)
    return st


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` exists and is neither a regular file nor a folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def refuse_special(path: str | os.PathLike[str], what: str = "file") -> None:
    """Refuse a path that exists and is a FIFO, device or socket (folders pass)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refuse(path, what, mode)


def open_regular(path: str | os.PathLike[str], what: str = "file") -> int:
    """A read-only descriptor of ``path``, opened without blocking and checked to be a
    regular file (the check is on the opened file, not the name)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, what, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd
