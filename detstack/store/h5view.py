"""Open detstack's HDF5 files (virtual views, CXI files, materialized copies) as collections.

The file's ``detstack_record`` attribute says where each key's array lives and how it is
laid out: the train layout ``(slot, train[, frame], *entry)`` or the frame layout
``(slot, frame, *entry)`` with the frames of all trains one after another (CXI files keep
their module-first arrays in the frame layout, under ``entry_1/by_module``).

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
from .h5_decode import Where, read_checked, view_where
from .h5_guard import Trust, check_dataset, check_links
from .verify import resolve_source
from .view_collection import ViewCollection, check_record, frame_offsets, key_layout, stored_shape

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
    arrays: dict[str, Any] = {}
    for key, where in arrays_at.items():
        info = record["keys"][key]
        frames = bool(info["per_frame"]) and key_layout(record, key) == "frames"
        names = view_where(record, train_ids, info["per_frame"],
                           frame_offsets(counts[info["group"]]) if frames else None)
        arrays[key] = LazyDataset(h5, where, stored_shape(record, key, counts),
                                  np.dtype(info["dtype"]), trust, names)
    return ViewCollection(path, record, arrays, train_ids, counts, keepalive=(h5, fobj))
