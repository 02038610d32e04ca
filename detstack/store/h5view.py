"""Open detstack's HDF5 files (virtual views, CXI files, materialized copies) as collections.

The file's ``detstack_record`` attribute says where each key's array lives and how it is
laid out: ``module-train`` arrays are already ``(slot, train[, frame], *entry)``; CXI
files keep per-frame keys module-first, ``(slot, frame, *entry)`` with the frames of all
trains one after another, and are presented train by train here.

HDF5 reads a missing virtual-dataset source as fill values without any error, so the
source files the record lists are checked before anything is read.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError, ViewRecordError
from ..safety import require_regular_file
from .h5_decode import CheckedDataset, Where, read_checked, view_where
from .h5_guard import Trust, check_dataset, check_links
from .verify import resolve_source
from .view_collection import ViewCollection, check_record

log = logging.getLogger(__name__)

RECORD_ATTR = "detstack_record"
SHOW_MISSING = 5


class LazyDataset:
    """An HDF5 dataset opened on first read: opening one with ~50 000 mappings takes
    0.1-0.2 s, and most uses of a view touch only some keys."""

    def __init__(self, h5: h5py.File, path: str, shape: tuple[int, ...], dtype: np.dtype,
                 trust: Trust, where: Where | None = None) -> None:
        self._h5 = h5
        self.where = where
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.trust = trust
        self._ds: h5py.Dataset | None = None

    @property
    def dataset(self) -> h5py.Dataset:
        """The dataset, once its mappings and shape are checked against the record."""
        if self._ds is None:
            ds = checked_dataset(self._h5, self.path, self.trust)
            if tuple(ds.shape) != self.shape or ds.dtype != self.dtype:
                raise ViewRecordError(
                    self.trust.view, f"its record describes {self.path} as {self.shape} "
                    f"{self.dtype}, but the dataset is {tuple(ds.shape)} {ds.dtype}",
                    "Frames would land in the wrong place: the view is damaged, write it "
                    "again")
            self._ds = ds
        return self._ds

    def __getitem__(self, item: Any) -> np.ndarray:
        return read_checked(self.dataset, item, self.where)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = read_checked(self.dataset, (), self.where)
        return arr if dtype is None else arr.astype(dtype)


class FramesByTrain:
    """A module-first ``(slot, frame, *entry)`` array seen as ``(slot, train, frame, *entry)``.

    Train ``t`` owns frames ``offsets[t]:offsets[t+1]``; positions past a train's frame
    count read as ``fill``. Supports integer and slice indexes on the first three axes
    (what the readers use) and any basic index on the entry axes.
    """

    def __init__(self, array: Any, offsets: np.ndarray, max_frames: int, fill: Any) -> None:
        self.array = array
        self.offsets = np.asarray(offsets, dtype=np.int64)
        n_trains = len(self.offsets) - 1
        self.dtype = np.dtype(array.dtype)
        self.shape = (int(array.shape[0]), n_trains, int(max_frames)) + tuple(array.shape[2:])
        self.ndim = len(self.shape)
        self.fill = fill

    def __getitem__(self, item: Any) -> np.ndarray:
        if not isinstance(item, tuple):
            item = (item,)
        if any(i is Ellipsis for i in item):
            n_expl = sum(1 for i in item if i is not None and i is not Ellipsis)
            k = item.index(Ellipsis)
            item = item[:k] + (slice(None),) * (self.ndim - n_expl) + item[k + 1:]
        item = item + (slice(None),) * max(0, 3 - len(item))
        (slots, squeeze_s), (trains, squeeze_t) = (_axis(item[0], self.shape[0]),
                                                   _axis(item[1], self.shape[1]))
        frames = item[2]
        rest = tuple(item[3:])
        if isinstance(frames, (int, np.integer)):
            f = int(frames) + (self.shape[2] if frames < 0 else 0)
            if not 0 <= f < self.shape[2]:
                raise IndexError(f"frame index {frames} out of range for {self.shape[2]}")
            fsel, squeeze_f = range(f, f + 1), True
        else:
            fsel, squeeze_f = range(*frames.indices(self.shape[2])), False
        entry_shape = np.empty(self.shape[3:], bool)[rest].shape if rest else self.shape[3:]
        out = np.full((len(slots), len(trains), len(fsel)) + entry_shape, self.fill, self.dtype)
        for i, s in enumerate(slots):
            for j, t in enumerate(trains):
                a, b = int(self.offsets[t]), int(self.offsets[t + 1])
                if fsel.step == 1:
                    lo, hi = fsel.start, min(fsel.stop, b - a)
                    if hi > lo:
                        out[i, j, :hi - lo] = self.array[(s, slice(a + lo, a + hi)) + rest]
                else:
                    for k, p in enumerate(fsel):
                        if p < b - a:
                            out[i, j, k] = self.array[(s, a + p) + rest]
        index = (0 if squeeze_s else slice(None), 0 if squeeze_t else slice(None),
                 0 if squeeze_f else slice(None))
        return out[index]


def _axis(index: Any, n: int) -> tuple[range, bool]:
    if isinstance(index, (int, np.integer)):
        i = int(index) + (n if index < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for axis of length {n}")
        return range(i, i + 1), True
    if isinstance(index, slice):
        return range(*index.indices(n)), False
    raise TypeError(f"views support integer and slice indexes on this axis, not {index!r}")


def read_record(h5: h5py.File, path: str) -> dict[str, Any]:
    raw = h5.attrs.get(RECORD_ATTR)
    if raw is None:
        hint = ("It holds no detstack_record attribute: write a view with "
                "detstack.convert.to_vds/to_cxi, or open the run folder itself")
        raise FileFormatError(path, "is an HDF5 file but not a detstack view", hint)
    try:
        record = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(path, f"has an unreadable detstack_record attribute ({exc})",
                              "The file is damaged; write the view again") from exc
    if not isinstance(record, dict):
        raise FileFormatError(path, "has a detstack_record attribute that is not a JSON object")
    check_record(record, path)
    return record


def check_source_files(path: str, record: dict[str, Any]) -> None:
    """Refuse a view whose source files are missing, unreadable or resized; warn when
    one was only modified (``detstack verify`` reports the same in detail)."""
    missing, unreadable, resized, modified = [], [], [], []
    entries = record.get("source_files", [])
    for entry in entries:
        p = resolve_source(path, entry["path"])
        try:
            st = p.stat()
        except FileNotFoundError:
            missing.append(str(p))
            continue
        if not os.access(p, os.R_OK):
            unreadable.append(str(p))
        elif st.st_size != entry["size"]:
            resized.append(f"{p} ({entry['size']} -> {st.st_size} bytes)")
        elif abs(st.st_mtime - entry["mtime"]) > 1e-3:
            modified.append(str(p))
    bad = missing + unreadable + resized
    if bad:
        what = [f"{len(v)} {label}" for v, label in ((missing, "missing"),
                (unreadable, "unreadable"), (resized, "changed in size")) if v]
        listed = "; ".join(bad[:SHOW_MISSING]) + (f" and {len(bad) - SHOW_MISSING} more"
                                                   if len(bad) > SHOW_MISSING else "")
        raise FileFormatError(
            path, f"refers to source files that are {', '.join(what)} (of {len(entries)}): "
            f"{listed}",
            "HDF5 would silently read fill values for them. Restore the files or keep the run "
            "folder where the view expects it (`detstack verify VIEW` lists every problem); "
            "check_sources=False opens the view anyway")
    if modified:
        warnings.warn(f"{path}: {len(modified)} source file(s) were modified since the view "
                      f"was written, e.g. {modified[0]}; run `detstack verify` to check",
                      stacklevel=4)


def checked_dataset(h5: h5py.File, name: str, trust: Trust) -> h5py.Dataset:
    """``h5[name]`` once its mappings and external storage are checked (h5_guard)."""
    ds = h5[name]
    if not isinstance(ds, h5py.Dataset):
        raise FileFormatError(trust.view, f"{name} is not a dataset", "Write the view again")
    check_dataset(ds, trust)
    return ds


def _open_file(path: str, storage_options: dict[str, Any] | None) -> tuple[h5py.File, Any]:
    remote = "://" in path and not path.startswith("file://")
    if not remote:
        try:
            require_regular_file(path.removeprefix("file://"), "view")
        except FileNotFoundError as exc:
            raise FileFormatError(path, "does not exist") from exc
    try:
        if remote:
            import fsspec
            fobj = fsspec.open(path, "rb", **(storage_options or {})).open()
            return h5py.File(fobj, "r"), fobj
        return h5py.File(path.removeprefix("file://"), "r"), None
    except FileNotFoundError as exc:
        raise FileFormatError(path, "does not exist") from exc
    except OSError as exc:
        raise FileFormatError(path, f"is not a readable HDF5 file ({exc})") from exc


def _offsets(counts: np.ndarray, frames_per_entry: int) -> np.ndarray:
    per_train = counts.max(axis=0).astype(np.int64) * frames_per_entry if counts.size else \
        np.zeros(counts.shape[1], np.int64)
    return np.concatenate([[0], np.cumsum(per_train)])


def _array_shape(record: dict[str, Any], info: dict[str, Any]) -> tuple[int, ...]:
    det = record["detector"]
    frames = (int(record["max_frames"]),) if info["per_frame"] else ()
    return (int(det["n_modules"]), int(record["n_trains"])) + frames + tuple(info["entry_shape"])


def open_h5_view(path: str, storage_options: dict[str, Any] | None = None,
                 check_sources: bool = True, allowed_prefixes: Iterable[str] | None = None,
                 **kw: Any) -> ViewCollection:
    """Open a detstack HDF5 view, CXI file or materialized copy as a collection.

    Every detector class accepts the result (``detstack.AGIPD1M(open_h5_view(p))``).
    Missing, unreadable or resized source files raise ``FileFormatError`` unless
    ``check_sources=False``; a view written by a newer detstack is refused. Virtual
    mappings, external links and external storage may only lead to the source files
    the record lists (or below ``allowed_prefixes``): ``UnsafeReferenceError``
    otherwise; a missing mapped file is ``MissingDataError`` when its key is read.
    """
    if kw:
        raise TypeError(f"open_h5_view() got unexpected arguments: {', '.join(sorted(kw))}")
    path = os.fspath(path)
    h5, fobj = _open_file(path, storage_options)
    try:
        record = read_record(h5, path)
        if record.get("source_files") and fobj is not None:
            raise FileFormatError(path, "maps source files on a local filesystem and cannot "
                                  "be opened remotely",
                                  "Materialize it (detstack.convert.materialize) to get a "
                                  "self-contained copy")
        if check_sources:
            check_source_files(path, record)
        trust = Trust.of(path, record, allowed_prefixes)
        check_links(h5, trust)
        collection = _collection(path, h5, record, fobj, trust)
    except BaseException:
        h5.close()
        if fobj is not None:
            fobj.close()
        raise
    return collection


def _collection(path: str, h5: h5py.File, record: dict[str, Any], fobj: Any,
                trust: Trust) -> ViewCollection:
    arrays_at = record.get("arrays")
    coords = record.get("coords")
    if not isinstance(arrays_at, dict) or not isinstance(coords, dict):
        raise FileFormatError(path, "has a view record without 'arrays'/'coords' entries",
                              "It was not written by detstack's HDF5 writers")
    missing = [p for p in list(arrays_at.values()) + [coords["train_ids"]] if p not in h5]
    if missing:
        raise FileFormatError(path, f"lacks datasets its record names: {', '.join(missing[:5])}",
                              "The file is incomplete or damaged; write it again")
    train_ids = checked_dataset(h5, coords["train_ids"], trust)[()]
    counts = {g: checked_dataset(h5, p, trust)[()] for g, p in coords["counts"].items()}
    layouts = record.get("array_layouts", {})
    fpe = int(record["detector"]["frames_per_entry"])
    arrays: dict[str, Any] = {}
    for key, where in arrays_at.items():
        info = record["keys"][key]
        dtype = np.dtype(info["dtype"])
        fill = np.nan if info["fill_value"] is None else info["fill_value"]
        if layouts.get(key, "module-train") == "module-frame":
            ds = checked_dataset(h5, where, trust)
            group_counts = counts[info["group"]]
            offsets = _offsets(group_counts, fpe)
            if ds.ndim < 2 or offsets[-1] > ds.shape[1]:
                raise ViewRecordError(path, f"its counts place {int(offsets[-1])} frames in "
                                      f"{where}, which holds {ds.shape[1:2]}",
                                      "The file is damaged or was edited: write it again")
            checked = CheckedDataset(ds, view_where(record, train_ids, True, offsets))
            arrays[key] = FramesByTrain(checked, offsets, int(record["max_frames"]),
                                        dtype.type(fill))
        else:
            arrays[key] = LazyDataset(h5, where, _array_shape(record, info), dtype, trust,
                                      view_where(record, train_ids, info["per_frame"]))
    return ViewCollection(path, record, arrays, train_ids, counts, keepalive=(h5, fobj))
