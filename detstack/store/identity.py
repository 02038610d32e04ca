"""A cheap content identity of a source file: size plus a hash of a few parts.

Views store it for every source file at write time; readers and ``verify``
compare it instead of modification times (a ``touch`` changes nothing that
matters, a rewritten file changes its identity). It reads at most
``PARTS * PART_BYTES`` bytes: the start (the HDF5 superblock and root group),
evenly spaced parts and the end (where HDF5 appends new metadata).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ..safety import open_regular

SCHEME = "size+blake2b-4x4KiB"
PARTS = 4
PART_BYTES = 4096
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _digest(fd: int, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    last = max(size - PART_BYTES, 0)
    for i in range(PARTS):
        offset = last * i // (PARTS - 1)
        h.update(os.pread(fd, PART_BYTES, offset))
    return h.hexdigest()


State = tuple[int, int, int, int, int]   # device, inode, size, mtime_ns, ctime_ns


def stat_state(st: os.stat_result) -> State:
    """What identifies a file's content as unchanged: the same inode, size, modification
    and change time (every write changes the change time; nobody can set it back)."""
    return (int(st.st_dev), int(st.st_ino), int(st.st_size), int(st.st_mtime_ns),
            int(st.st_ctime_ns))


def file_identity_and_state(path: str | os.PathLike[str]
                            ) -> tuple[dict[str, Any], State]:
    """``file_identity`` of ``path`` and the ``stat_state`` of the file before it was
    hashed (a write while it was hashed leaves the file in another state: that state
    never matches again, whatever the hash read)."""
    fd = open_regular(path, "source file")
    try:
        st = os.fstat(fd)
        return ({"scheme": SCHEME, "size": st.st_size, "digest": _digest(fd, st.st_size)},
                stat_state(st))
    finally:
        os.close(fd)


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"scheme", "size", "digest"}`` of a local regular file."""
    return file_identity_and_state(path)[0]


def fd_identity(fd: int, size: int | None = None) -> dict[str, Any]:
    """The identity of an already opened regular file (``size``: its size, if known)."""
    size = os.fstat(fd).st_size if size is None else size
    return {"scheme": SCHEME, "size": size, "digest": _digest(fd, size)}


def same_identity(recorded: Any, found: dict[str, Any]) -> bool:
    """Does ``found`` match a recorded identity (same scheme, size and digest)?"""
    return (isinstance(recorded, dict) and recorded.get("scheme") == found["scheme"]
            and recorded.get("size") == found["size"]
            and recorded.get("digest") == found["digest"])


def is_hdf5(fd: int, size: int | None = None) -> bool:
    """True if the file holds an HDF5 superblock signature (offset 0, 512, 1024, ...)."""
    size = os.fstat(fd).st_size if size is None else size
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        if os.pread(fd, len(HDF5_SIGNATURE), offset) == HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False
