"""Reads of a manifest's arrays that zarr would get silently wrong or leave untyped.

zarr reads a chunk without a reference as the fill value, so a manifest whose
references to data chunks were deleted would read zeros; and a chunk that cannot
be decoded raises whatever its codec raises (``zlib.error``...), naming nothing.
``ManifestArray`` wraps each array ``open_manifest`` returns: before a
read, every chunk holding rows the counts promise must have a reference, unless
the writer recorded it as never allocated in its source file (HDF5 reads those as
the fill value too; ``detstack.convert.manifest.holes``); a read that fails is
narrowed to the chunk that fails alone and raised as ``CorruptChunkError`` naming
the source file, dataset, module and train.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import CorruptChunkError, DetstackError, MissingDataError, ViewRecordError
from .h5_decode import HINT, Where, view_where
from .manifest_direct import DirectReader
from .manifest_records import ParquetRecords
from .view_collection import frame_offsets, key_layout
from .zarr_decode import error_kind, failing_chunk
from .zarr_presence import CheckedArray, StoredObjects, require_present


class ReferencedChunks(StoredObjects):
    """Which chunks of a manifest array hold a (slot, train)'s rows, and whether each
    has a reference (or is a recorded hole)."""

    def __init__(self, array: Any, counts: np.ndarray, per_frame: bool, url: str,
                 references: Any, holes: list[list[int]], where: Where,
                 frame_axis: bool = False, records: ParquetRecords | None = None) -> None:
        super().__init__(array, counts, per_frame, url, None, frame_axis)
        self.references = references
        self.records = records       # local Parquet records: looked up directly
        self.where = where
        self.grid = tuple(-(-s // c) for s, c in zip(array.shape, array.chunks, strict=True))
        runs = np.asarray(holes, np.int64).reshape(-1, 2)
        runs = runs[np.argsort(runs[:, 0], kind="stable")]
        self.hole_start, self.hole_stop = runs[:, 0], runs[:, 1]

    def key(self, coords: tuple[int, ...]) -> str:
        return f"{self.array.path}/{'.'.join(map(str, coords))}"

    def reference(self, coords: tuple[int, ...]) -> Any:
        """The chunk's reference ([url, offset, size] or inline bytes), or None."""
        if self.records is not None:
            found = self.records.lookup(self.array.path, [np.ravel_multi_index(coords, self.grid)])
            if found is not None:
                return None if found[0] is None else list(found[0])
        try:
            ref = self.references[self.key(coords)]
        except (KeyError, FileNotFoundError, IndexError, ValueError, TypeError):
            return None
        if isinstance(ref, (list, tuple)) and (not ref or ref[0] is None):
            return None
        return ref

    def _exists(self, coords: tuple[int, ...]) -> bool:
        return self.reference(coords) is not None or self._in_hole(coords)

    def _in_hole(self, coords: tuple[int, ...]) -> bool:
        i = int(np.ravel_multi_index(coords, self.grid))
        j = int(np.searchsorted(self.hole_start, i, side="right")) - 1
        return j >= 0 and i < int(self.hole_stop[j])

    def _first_missing(self, coords: list[tuple[int, ...]]) -> tuple[int, ...] | None:
        """The Parquet records are asked once for all of a (slot, train)'s chunks."""
        if self.records is None or not coords:
            return super()._first_missing(coords)
        flat = np.ravel_multi_index(tuple(np.asarray(coords, np.int64).T), self.grid)
        found = self.records.refs(self.array.path, flat)
        if found is None:                    # inline records: one by one
            return super()._first_missing(coords)
        absent = np.flatnonzero(found[1] < 0).tolist()
        return next((coords[i] for i in absent if not self._in_hole(coords[i])), None)

    def missing(self, coords: tuple[int, ...], s: int, t: int) -> MissingDataError:
        return MissingDataError(
            self.url, f"array {self.array.path}: the reference of chunk {self.key(coords)} "
            f"({self.where((s, t))}) is missing, but the manifest's counts say it holds "
            f"{int(self.counts[s, t])} rows", "zarr would read fill values there. The "
            "manifest is damaged: write it again with to_manifest")


class ManifestArray(CheckedArray):
    """A manifest's zarr array: promised chunks must be referenced, and a chunk that
    cannot be decoded is a ``CorruptChunkError`` naming the source file and dataset."""

    objects: ReferencedChunks

    def __init__(self, array: Any, key: str, view: str, fs: Any,
                 chunks: ReferencedChunks, where: Where, record: dict[str, Any]) -> None:
        super().__init__(array, chunks)
        self.key = key
        self.view = view
        self.fs = fs
        self.where = where
        self.record = record
        manifest = record.get("manifest") if isinstance(record.get("manifest"), dict) else {}
        self.copied = key in (manifest.get("copied") or ())   # into the sidecar, as is
        self.chunk_shape = tuple(int(c) for c in array.chunks)
        self.direct = DirectReader.make(array, getattr(fs, "records", None), fs, self._corrupt,
                                        self._datasets, self._at)

    def __getitem__(self, index: Any) -> Any:
        if self.direct is None:
            return super().__getitem__(index)
        require_present(self.objects, index)
        out = self.direct.read(index)
        return super().__getitem__(index) if out is None else out

    def _explain(self, index: Any, exc: Exception) -> Exception:
        start = failing_chunk(self.array, index)
        if start is None:
            return exc
        coords = tuple(s // int(c) for s, c in zip(start, self.array.chunks, strict=True))
        return self._corrupt(coords, exc)

    def _datasets(self, coords: tuple[int, ...]) -> tuple[str, ...]:
        """The datasets chunk ``coords`` lies in: its module's source, or the sidecar
        (first for a copied key)."""
        module = self.record["detector"]["modules"].get(str(coords[0]), {})
        source = f"INSTRUMENT/{module.get('source', '?')}/{self.key.replace('.', '/')}"
        return (self.key, source) if self.copied else (source, self.key)

    def _at(self, coords: tuple[int, ...]) -> tuple[int, ...] | None:
        """Where chunk ``coords`` starts in the sidecar dataset of a copied key (its
        first hint: the same shape and chunks); None for source datasets."""
        if not self.copied:
            return None
        return tuple(c * n for c, n in zip(coords, self.chunk_shape, strict=True))

    def _corrupt(self, coords: tuple[int, ...], exc: Exception) -> CorruptChunkError:
        """The typed error of chunk ``coords``, which ``exc`` says cannot be decoded."""
        start = tuple(i * int(c) for i, c in zip(coords, self.array.chunks, strict=True))
        ref = self.objects.reference(coords)
        source = self.record["detector"]["modules"].get(str(start[0]), {}).get("source", "?")
        dataset = f"INSTRUMENT/{source}/{self.key.replace('.', '/')}"
        target, span = self.view, "inline data"
        if isinstance(ref, (list, tuple)) and ref and isinstance(ref[0], str):
            try:
                target = self.fs.resolve(ref[0])
            except DetstackError:
                target = ref[0]
            if len(ref) == 3:
                span = f"bytes {ref[1]}-{int(ref[1]) + int(ref[2]) - 1}"
        return CorruptChunkError(
            target, f"dataset {dataset} ({span}, chunk {self.objects.key(coords)} of manifest "
            f"{self.view}, {self.where(start)}) cannot be decoded: {error_kind(exc)}: {exc}",
            HINT)


def promised_chunks(fs: Any, group: Any, record: dict[str, Any], view: str,
                    train_ids: np.ndarray | None = None,
                    counts: dict[str, np.ndarray] | None = None) -> dict[str, ReferencedChunks]:
    """The chunks of every key the counts promise, and ``fs.on_absent`` set to refuse a
    read of one without a reference (so zarr never reads it as fill, also through
    ``manifest_store``)."""
    info_m = record.get("manifest") if isinstance(record.get("manifest"), dict) else {}
    holes = info_m.get("unallocated") if isinstance(info_m.get("unallocated"), dict) else {}
    try:
        if train_ids is None:
            train_ids = np.asarray(group["train"][:], dtype=np.uint64)
        if counts is None:
            counts = {g: np.asarray(group[f"count.{g}"][:]) for g in record["index_groups"]}
        out = {}
        for key, info in record["keys"].items():
            if info["group"] in counts and key in group:
                frames = bool(info["per_frame"]) and key_layout(record, key) == "frames"
                where = view_where(record, train_ids, bool(info["per_frame"]),
                                   frame_offsets(counts[info["group"]]) if frames else None)
                out[key] = ReferencedChunks(group[key], counts[info["group"]],
                                            bool(info["per_frame"]), view, fs.references,
                                            holes.get(key) or [], where, frames,
                                            getattr(fs, "records", None))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ViewRecordError(view, f"has an incomplete view record ({exc!r})",
                              "Write the manifest again") from exc
    fs.on_absent = functools.partial(_refuse_promised, out)
    return out


def _refuse_promised(chunks: dict[str, ReferencedChunks], path: str) -> None:
    """MissingDataError if ``path`` (``key/i.j.k``) is a chunk the counts promise."""
    name, _, key = path.rpartition("/")
    objects = chunks.get(name)
    if objects is None:
        return
    try:
        coords = tuple(int(c) for c in key.split("."))
    except ValueError:
        return
    if len(coords) != len(objects.shape) or objects._exists(coords):
        return
    # counts columns are trains, or blocks of one chunk's frames on a frame axis
    per_column = 1 if objects.frame_axis else objects.unit[1]
    s0, t0 = coords[0] * objects.unit[0], coords[1] * per_column
    for s in range(s0, min(s0 + objects.unit[0], objects.counts.shape[0])):
        for t in range(t0, min(t0 + per_column, objects.counts.shape[1])):
            if objects.counts[s, t] and coords in set(objects.objects(s, t)):
                raise objects.missing(coords, s, t)


def checked_arrays(group: Any, record: dict[str, Any], counts: dict[str, np.ndarray],
                   train_ids: np.ndarray, view: str, fs: Any) -> dict[str, Any]:
    """Every key's array of an open manifest, wrapped (see above)."""
    chunks = promised_chunks(fs, group, record, view, train_ids, counts)
    out: dict[str, Any] = {}
    for key in record["keys"]:
        objects = chunks.get(key)
        out[key] = group[key] if objects is None else \
            ManifestArray(group[key], key, view, fs, objects, objects.where, record)
    return out
