"""Where a manifest's files are now: the record's names, resolved, and moved references.

The record names the source files (and the sidecar of small arrays) relative to the
manifest's folder, or absolutely. References hold absolute paths (or a ``{{base}}``
template, in the compact form). When a run and its manifest were moved (or uploaded)
together, the record's relative names still lead to the files from the manifest's new
folder, and each reference to a file's old absolute location (the folder the writer
recorded in ``detstack_origin``, joined with the file's name) is moved with it. Only
exact old locations of listed files are moved; anything else is left for the trust
model (``manifest_guard``) to refuse.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from fsspec.core import split_protocol

from .manifest_guard import Listed, normalize_many


def join(base: str, rel: str) -> str:
    return posixpath.join(base, rel) if "://" in base else os.path.join(base, rel)


def _entries(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's source files, then its sidecar (only well-formed entries)."""
    out = [e for e in record.get("source_files") or []
           if isinstance(e, dict) and isinstance(e.get("path"), str)]
    info = record.get("manifest")
    side = info.get("sidecar") if isinstance(info, dict) else None
    if isinstance(side, dict) and isinstance(side.get("path"), str):
        out.append(side)
    return out


def _relative(path: str) -> bool:
    return split_protocol(path)[0] is None and not os.path.isabs(path)


@dataclass
class Locations:
    """The folder relative names resolve against, the listed files, moved references."""

    data_base: str
    recorded: str | None           # the folder the writer recorded (None: not known)
    listed: list[Listed]
    moved: dict[str, str] = field(default_factory=dict)   # old location -> current one

    def remote_protocol(self) -> str | None:
        """The protocol of remote files (the data base's, else the listed files'), if any."""
        protocol = split_protocol(self.data_base)[0]
        if protocol not in (None, "file", "local"):
            return protocol
        remote = {split_protocol(item.loc)[0] for item in self.listed} - {None, "file", "local"}
        return next(iter(remote)) if len(remote) == 1 else None

    def move(self, url: str) -> str | None:
        """The current location of a reference to a listed file's old location."""
        if not self.moved:
            return None
        protocol, rest = split_protocol(url)
        if protocol not in (None, "file", "local") or not os.path.isabs(rest):
            return None
        return self.moved.get(os.path.normpath(rest))


def _origin(record: dict[str, Any], attrs: dict[str, Any]) -> str | None:
    origin = attrs.get("detstack_origin")
    if not isinstance(origin, str):   # manifests written before the origin attribute
        info = record.get("manifest")
        origin = info.get("base") if isinstance(info, dict) else None
    return origin if isinstance(origin, str) and origin not in ("", ".") else None


def _data_base(record: dict[str, Any], recorded: str | None, folder: str) -> str:
    """The recorded folder if the first file is there; else the manifest's own folder
    (the run and its manifest were moved or uploaded together)."""
    info = record.get("manifest", {})
    info = info if isinstance(info, dict) else {}
    if info.get("paths", "relative") != "relative":
        return recorded or folder
    if recorded is None or not (os.path.isabs(recorded) or "://" in recorded):
        return folder
    if "://" in folder and "://" not in recorded:
        return folder   # a local manifest uploaded with its run
    files = _entries(record)
    first = files[0]["path"] if files else None
    if (first is not None and "://" not in folder + recorded
            and not os.path.exists(join(recorded, first))
            and os.path.exists(join(folder, first))):
        return folder
    return recorded


def locate(record: dict[str, Any], attrs: dict[str, Any], folder: str) -> Locations:
    """Resolve the record's files for a manifest found in ``folder``."""
    recorded = _origin(record, attrs)
    data_base = _data_base(record, recorded, folder)
    listed, moved = [], {}
    entries = _entries(record)
    locs = normalize_many([join(data_base, e["path"]) if _relative(e["path"]) else e["path"]
                           for e in entries])
    for entry, loc in zip(entries, locs, strict=True):
        p = entry["path"]
        size = entry.get("size")
        ident = entry.get("identity")
        listed.append(Listed(loc, size if isinstance(size, int) else None,
                             ident if isinstance(ident, dict) else None))
        if (_relative(p) and recorded is not None and recorded != data_base
                and os.path.isabs(recorded)):
            moved[os.path.normpath(join(recorded, p))] = loc
    return Locations(data_base, recorded, listed, moved)
