"""Reads of an Icechunk repository's arrays that must not be silently wrong.

An Icechunk view holds virtual references into the run's HDF5 files. A reference
whose chunk is gone from the repository reads as the fill value, and one whose
source file was deleted, moved, cut short or rewritten fails inside Icechunk with
an error naming nothing detstack knows (or, for a rewritten uncompressed file,
would read other bytes: ``to_icechunk`` records each file's modification time, and
Icechunk refuses chunks of a file modified since). ``IcechunkArray`` checks that
every chunk the counts promise is in the repository before a read, and turns a
failed read into a typed error naming the source file, key, module and train.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import CorruptChunkError, FileFormatError, MissingDataError
from .identity import file_identity, same_identity
from .zarr_decode import corrupt_store_chunk, error_kind, failing_chunk
from .zarr_presence import CheckedArray, StoredObjects

# where Icechunk's messages name the object of a virtual chunk
_URL = re.compile(r"(?:file|s3|gs|az|https?)://[^\s'\"`),]+|(?<=location )/[^\s'\"`),]+")


class IcechunkArray(CheckedArray):
    """An Icechunk array whose promised chunks must exist and whose failed reads name
    the source file (missing, changed) or the chunk (cannot be decoded)."""

    def __init__(self, array: Any, objects: StoredObjects, record: dict[str, Any],
                 train_ids: Any) -> None:
        super().__init__(array, objects)
        self.record = record
        self.train_ids = train_ids
        self.objects.sources = record["detector"]["modules"]

    def _explain(self, index: Any, exc: Exception) -> Exception:
        start = failing_chunk(self.array, index)
        if start is not None:
            box = tuple(slice(s, s + int(c)) for s, c in zip(start, self.array.chunks,
                                                             strict=True))
            try:
                self.array[box]
            except Exception as alone:  # noqa: BLE001 - the chunk's own error, named below
                exc = alone
        where = self._where(start)
        named = [url.rstrip(".") for url in _URL.findall(str(exc))]
        # Icechunk does not always name the object (a file cut short): then look at every
        # source file the record lists, so a changed one is named, never a vague failure
        listed = [str(e.get("path")) for e in self.record.get("source_files", [])]
        for url, by_icechunk in [(u, True) for u in named] + [(u, False) for u in listed]:
            source = self._source_problem(url, exc, by_icechunk)
            if source is not None:
                return source(where, exc)
        if start is None:
            return CorruptChunkError(self.objects.url, f"array {self.array.path} cannot be "
                                     f"read: {error_kind(exc)}: {exc}",
                                     "Check the repository and its source files "
                                     "(detstack verify)")
        return corrupt_store_chunk(self.array, index, RuntimeError(_last_line(exc)),
                                   self.objects.url, self.objects.sources)

    def _where(self, start: tuple[int, ...] | None) -> str:
        if start is None:
            return f"key {self.array.path}"
        module = self.objects.sources.get(str(start[0]), {}) if self.objects.sources else {}
        train = f"train index {start[1]}"
        if not self.objects.frame_axis and start[1] < len(self.train_ids):
            train = f"train {int(self.train_ids[start[1]])}"
        return (f"key {self.array.path}, module slot {start[0]} (source "
                f"{module.get('source', '?')}), {train}")

    def _source_problem(self, url: str, exc: Exception, named: bool = True) -> Any:
        """A maker of the typed error for a source file that is missing or changed
        (``named``: Icechunk's error names this file, so its refusal counts too)."""
        if url.startswith("/"):
            url = "file://" + url
        if not url.startswith("file://"):
            return None
        path = url[len("file://"):]
        entry = next((e for e in self.record.get("source_files", [])
                      if os.path.normpath(str(e.get("path"))) == os.path.normpath(path)), None)
        view = self.objects.url
        if not os.path.exists(path):
            return lambda where, exc: MissingDataError(
                path, f"is missing (moved or deleted), but Icechunk repository {view} refers "
                f"to it for {where}", "Put the run back where it was, or write the "
                "repository again with to_icechunk")
        recorded = (entry or {}).get("identity")
        try:
            changed = recorded is not None and not same_identity(recorded, file_identity(path))
        except OSError:
            changed = True
        refused = named and any(w in str(exc) for w in ("checksum", "modified"))
        if changed or (entry is not None and refused):
            how = "its content changed" if changed else "it was modified"
            return lambda where, exc: FileFormatError(
                path, f"cannot serve the virtual chunk of {where} of Icechunk repository "
                f"{view}: {how} since the repository was written (Icechunk: "
                f"{_last_line(exc)})", "Write the repository again with to_icechunk (or "
                "restore the file)")
        return None


def _last_line(exc: BaseException) -> str:
    """The innermost cause of an Icechunk error (its message is a multi-line trace)."""
    lines = [ln.strip(" |`->x") for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("at ")]
    return lines[-1] if lines else type(exc).__name__


class VirtualChunks(StoredObjects):
    """``StoredObjects`` of an Icechunk array: a chunk exists if the session has a
    reference (or data) for it (one lookup in the session's manifests, ~15 us)."""

    def __init__(self, session: Any, checked: bool, *args: Any) -> None:
        super().__init__(*args)
        self.session = session
        self.checked = checked     # repositories of older versions skipped all-fill chunks

    def _exists(self, coords: tuple[int, ...]) -> bool:
        import icechunk
        if not self.checked:
            return True
        kind = self.session.chunk_type(f"/{self.array.path}", list(coords))
        return bool(kind != icechunk.ChunkType.UNINITIALIZED)

    def missing(self, coords: tuple[int, ...], s: int, t: int) -> MissingDataError:
        return MissingDataError(
            self.url, f"array {self.array.path}: the virtual reference of chunk {coords} "
            f"(module slot {s}, {self._where(t)}) is missing, but the repository's counts "
            f"say it holds {int(self.counts[s, t])} rows", "zarr would read fill values "
            "there. The repository is damaged: write it again with to_icechunk")


def checked_arrays(session: Any, group: Any, record: dict[str, Any], counts: dict[str, Any],
                   train_ids: Any, url: str, every_chunk_stored: bool) -> dict[str, Any]:
    """Every key's array of an open Icechunk view, wrapped (see above)."""
    from .view_collection import key_layout
    out = {}
    for key, info in record["keys"].items():
        frame_axis = bool(info["per_frame"]) and key_layout(record, key) == "frames"
        objects = VirtualChunks(session, every_chunk_stored, group[key], counts[info["group"]],
                                bool(info["per_frame"]), url, None, frame_axis)
        out[key] = IcechunkArray(group[key], objects, record, train_ids)
    return out
