"""A view's arrays seen as a run: one pseudo-file per module, rows addressed as usual.

Every view form (HDF5 virtual view, zarr manifest, zarr store) holds the same
content (see ``detstack.convert.plan``). Presenting it as a ``DataCollection``
of one pseudo-file per module lets the detector classes, the frame map and
all readers work on views exactly as on runs, with no code of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError, ViewRecordError
from ..run.collection import DataCollection
from ..run.files import SourceIndex
from ..run.validity import guess_valid

# The record schema versions this code reads.
READABLE_SCHEMA_VERSIONS = {1, 2}


def key_layout(record: Mapping[str, Any], key: str) -> str:
    """'trains' or 'frames': how the per-frame key ``key`` is laid out (version 1 records
    name it per array: CXI files keep 'module-frame' arrays)."""
    if int(record.get("schema_version", 1)) >= 2:
        return str(record.get("layout", "trains"))
    return "frames" if record.get("array_layouts", {}).get(key) == "module-frame" else "trains"


def frame_offsets(counts: np.ndarray) -> np.ndarray:
    """(n_trains + 1,) first frame of each train on a frame axis, from (slot, train) counts."""
    per_train = counts.max(axis=0).astype(np.int64) if counts.size else \
        np.zeros(counts.shape[-1], np.int64)
    return np.concatenate([[0], np.cumsum(per_train)]).astype(np.int64)


class ExpandedArray:
    """A stored array with its dropped length-1 entry axes put back (zarr forms store
    raw LPD frames as ``(..., 256, 256)``; readers see the source rows ``(1, 256, 256)``).

    ``axes``: positions of the re-inserted axes in the presented array. Supports integer,
    slice and Ellipsis indexes (what the readers use).
    """

    def __init__(self, array: Any, axes: tuple[int, ...]) -> None:
        self.array = array
        self.axes = tuple(sorted(axes))
        shape = list(array.shape)
        for ax in self.axes:
            shape.insert(ax, 1)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def _split(self, item: Any) -> tuple[tuple[Any, ...], list[int], bool]:
        """(index into the stored array, output axes to re-insert, whether it is empty)."""
        if not isinstance(item, tuple):
            item = (item,)
        if any(i is Ellipsis for i in item):
            k = item.index(Ellipsis)
            item = item[:k] + (slice(None),) * (self.ndim - len(item) + 1) + item[k + 1:]
        item = item + (slice(None),) * (self.ndim - len(item))
        stored, expand, empty = [], [], False
        out_axis = 0
        for ax, idx in enumerate(item):
            if ax in self.axes:
                if isinstance(idx, (int, np.integer)):
                    if int(idx) not in (0, -1):
                        raise IndexError(f"index {idx} out of range for an axis of length 1")
                    continue
                n = len(range(*idx.indices(1)))
                expand.append(out_axis)
                empty |= n == 0
                out_axis += 1
                continue
            stored.append(idx)
            if not isinstance(idx, (int, np.integer)):
                out_axis += 1
        return tuple(stored), expand, empty

    def __getitem__(self, item: Any) -> np.ndarray:
        stored, expand, empty = self._split(item)
        out = np.asarray(self.array[stored])
        out = np.expand_dims(out, tuple(expand)) if expand else out
        return out[tuple(slice(0, 0) if a in expand else slice(None)
                         for a in range(out.ndim))] if empty else out

    def read_jobs(self, index: tuple[Any, ...], dest: np.ndarray,
                  batch: dict[Any, Any] | None = None) -> list[Any] | None:
        """Jobs filling ``dest`` with ``self[index]`` when the stored array plans its own
        reads (local zarr stores: pulse IDs are read in parallel, not one module after
        the other); None otherwise."""
        plan = getattr(self.array, "read_jobs", None)
        if plan is None:
            return None
        stored, expand, empty = self._split(index)
        if empty:
            return []
        return plan(stored, np.squeeze(dest, axis=tuple(expand)) if expand else dest, batch)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[()]
        return arr if dtype is None else arr.astype(dtype)


class RowView:
    """One module slot of a view array, addressed as rows like a run dataset.

    Per-frame arrays in the train layout ``(slot, train, frame, *entry)`` have
    ``n_trains * max_frames`` rows (row ``t * max_frames + p``); arrays in the frame
    layout ``(slot, frame, *entry)`` and per-train arrays have one row per frame or train.

    Parameters
    ----------
    array : array-like
        The view array (h5py dataset, zarr array...), module slot first.
    slot : int
        The module slot this object reads.
    per_frame : bool
        Whether the key has one row per frame.
    frames_layout : bool, default False
        Whether the array is in the frame layout ``(slot, frame, *entry)`` (then a
        per-frame key, too, has one row per array position along axis 1).
    """

    def __init__(self, array: Any, slot: int, per_frame: bool, frames_layout: bool = False
                 ) -> None:
        self.array = array
        self.slot = slot
        self.per_frame = per_frame and not frames_layout   # rows split by (train, frame)
        self.frames = int(array.shape[2]) if self.per_frame else 1
        entry = tuple(array.shape[3:] if self.per_frame else array.shape[2:])
        self.shape = (int(array.shape[1]) * self.frames,) + entry
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def _pieces(self, start: int, stop: int) -> list[tuple[tuple[Any, ...], int, int]]:
        """(index into the array, first output row, n rows) covering rows [start, stop)."""
        if not self.per_frame:
            return [((self.slot, slice(start, stop)), 0, stop - start)]
        pieces = []
        row = start
        while row < stop:
            t, p = divmod(row, self.frames)
            n = min(stop - row, self.frames - p)
            pieces.append(((self.slot, t, slice(p, p + n)), row - start, n))
            row += n
        return pieces

    def read(self, rows: slice, rest: tuple[Any, ...] = ()) -> np.ndarray:
        """Read a contiguous block of rows.

        Parameters
        ----------
        rows : slice
            Rows to read (step 1).
        rest : tuple, optional
            Index applied to each row's entry.

        Returns
        -------
        numpy.ndarray
            ``(rows, *entry after rest)``.

        Raises
        ------
        ValueError
            ``rows`` has a step other than 1.
        """
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("view rows can only be read in contiguous blocks")
        parts = [np.asarray(self.array[idx + rest]) for idx, _, _ in self._pieces(start, stop)]
        if not parts:
            return np.empty((0,) + np.empty(self.shape[1:], bool)[rest].shape, self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def read_direct(self, dest: np.ndarray, source_sel: tuple[Any, ...],
                    dest_sel: slice) -> None:
        """Read rows into an existing array, like ``h5py.Dataset.read_direct``.

        Parameters
        ----------
        dest : numpy.ndarray
            The array to fill.
        source_sel : tuple
            ``(row slice, *index into each entry)``.
        dest_sel : slice
            Where in ``dest`` the rows go (its start is used).
        """
        rows, rest = source_sel[0], tuple(source_sel[1:])
        start, stop, _ = rows.indices(self.shape[0])
        base = dest_sel.start or 0
        for idx, offset, n in self._pieces(start, stop):
            dest[base + offset:base + offset + n] = self.array[idx + rest]

    def read_jobs(self, start: int, count: int, rest: tuple[Any, ...],
                  dest: np.ndarray, batch: dict[Any, Any] | None = None) -> list[Any] | None:
        """Independent jobs filling ``dest`` with rows ``start:start+count``.

        The reader runs them in parallel; only arrays that can plan them (local zarr
        stores) give jobs.

        Parameters
        ----------
        start : int
            First row.
        count : int
            Number of rows.
        rest : tuple
            Index applied to each row's entry.
        dest : numpy.ndarray
            The array the jobs fill, ``count`` rows long.
        batch : dict, optional
            Shared by requests whose jobs may be merged (one decode per shard).

        Returns
        -------
        list of callable or None
            The jobs, or None when the array cannot plan them (read it directly).
        """
        plan = getattr(self.array, "read_jobs", None)
        if plan is None:
            return None
        jobs: list[Any] = []
        for idx, offset, n in self._pieces(start, start + count):
            part = plan(idx + rest, dest[offset:offset + n], batch)
            if part is None:
                return None
            jobs += part
        return jobs

    def __getitem__(self, item: Any) -> np.ndarray:
        if not isinstance(item, tuple):
            item = (item,)
        rows, rest = item[0], tuple(item[1:])
        if isinstance(rows, (int, np.integer)):
            return self.read(slice(int(rows), int(rows) + 1), rest)[0]
        return self.read(rows, rest)


class ViewModuleFile:
    """The part of a view belonging to one module, with the interface of ``RunFile``.

    Parameters
    ----------
    path : pathlib.Path
        The view.
    record : mapping
        The view's metadata record.
    arrays : mapping of str to array-like
        ``{key: view array}``.
    train_ids : numpy.ndarray
        The view's train IDs.
    counts : mapping of str to numpy.ndarray
        ``{index group: (slot, train) entry counts}``.
    slot : int
        The module slot this object stands for.
    """

    format_version = "view"

    def __init__(self, path: Path, record: Mapping[str, Any], arrays: Mapping[str, Any],
                 train_ids: np.ndarray, counts: Mapping[str, np.ndarray], slot: int) -> None:
        self.path = path
        self.record = record
        self.slot = slot
        self.source = record["detector"]["modules"][str(slot)]["source"]
        self.train_ids = np.asarray(train_ids, dtype=np.uint64)
        self.validity = guess_valid(self.train_ids)
        self.control_sources: set[str] = set()
        self.instrument_sources = {self.source}
        self.legacy_sources: dict[str, str] = {}
        self._keys = record["keys"]
        self._counts = counts
        self.h5 = {key: RowView(arrays[key], slot, info["per_frame"],
                                key_layout(record, key) == "frames")
                   for key, info in self._keys.items()}
        self._source_keys: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None

    def index_groups(self, source: str) -> list[str]:
        """The INDEX groups of the view's keys.

        Parameters
        ----------
        source : str
            The module's source name (a view module holds one source).

        Returns
        -------
        list of str
            Group names, sorted.
        """
        return sorted({info["group"] for info in self._keys.values()})

    def index(self, source: str, group: str = "") -> SourceIndex:
        """First row and count of every train of one index group, like a file's INDEX.

        Parameters
        ----------
        source : str
            The module's source name (a view module holds one source).
        group : str, default ''
            The index group.

        Returns
        -------
        SourceIndex
            ``first`` and ``count`` per train.
        """
        count = np.asarray(self._counts[group][self.slot], dtype=np.uint64)
        per_frame = [k for k, i in self._keys.items() if i["per_frame"] and i["group"] == group]
        if not per_frame:
            return SourceIndex(np.arange(len(count), dtype=np.uint64), np.minimum(count, 1))
        if key_layout(self.record, per_frame[0]) == "frames":
            first = frame_offsets(np.asarray(self._counts[group]))[:-1].astype(np.uint64)
        else:
            first = np.arange(len(count), dtype=np.uint64) * np.uint64(self.record["max_frames"])
        return SourceIndex(first, count)

    def source_keys(self, source: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Every key of the module with its row shape and dtype.

        Parameters
        ----------
        source : str
            The module's source name (a view module holds one source).

        Returns
        -------
        dict
            ``{key: ((rows, *entry), dtype)}`` (kept: it is asked for per key and module
            on every read, like a run file's).
        """
        if self._source_keys is None:
            self._source_keys = {k: (rv.shape, rv.dtype) for k, rv in self.h5.items()}
        return self._source_keys

    def key_group(self, source: str, key: str) -> str:
        """The index group of a key.

        Parameters
        ----------
        source : str
            The module's source name (a view module holds one source).
        key : str
            One of its keys.

        Returns
        -------
        str
            The group, e.g. ``'image'``.
        """
        return self._keys[key]["group"]

    def dataset_path(self, source: str, key: str) -> str:
        """The name under which the key's rows are found (the key itself).

        Parameters
        ----------
        source : str
            The module's source name (a view module holds one source).
        key : str
            One of its keys.

        Returns
        -------
        str
            ``key``.
        """
        return key

    def metadata(self) -> dict[str, object]:
        """The run METADATA recorded in the view.

        Returns
        -------
        dict
            Proposal, run number and the other entries the run had.
        """
        return dict(self.record.get("run_metadata", {}))

    def close(self) -> None:
        """Arrays belong to the view object, which closes them."""

    def __repr__(self) -> str:
        return f"<view module {self.slot} of {self.path}>"


class ViewCollection(DataCollection):
    """A ``DataCollection`` over a view; detector classes accept it like a run.

    Made by :func:`detstack.open_view`.

    Parameters
    ----------
    path : str or pathlib.Path
        The view.
    record : mapping
        The view's metadata record.
    arrays : mapping of str to array-like
        ``{key: (slot, train, [frame,] *entry) array}``.
    train_ids : numpy.ndarray
        The view's train IDs.
    counts : mapping of str to numpy.ndarray
        ``{index group: (slot, train) entry counts}``.
    keepalive : object, optional
        What must stay open while the arrays are read (an h5py.File, a store).

    Raises
    ------
    FileFormatError
        A record of an unreadable schema version.
    ViewRecordError
        The record disagrees with the arrays (shapes, trains, modules, frames).
    """

    def __init__(self, path: str | Path, record: Mapping[str, Any],
                 arrays: Mapping[str, Any], train_ids: np.ndarray,
                 counts: Mapping[str, np.ndarray], keepalive: Any = None) -> None:
        check_record(record, path)
        check_view_arrays(record, arrays, train_ids, counts, path)
        self.view_path = Path(path)
        self.record = record
        self._keepalive = keepalive  # e.g. the open h5py.File the arrays live in
        slots = sorted(int(s) for s in record["detector"]["modules"])
        arrays = presented_arrays(record, arrays)
        files = [ViewModuleFile(self.view_path, record, arrays, train_ids, counts, s)
                 for s in slots]
        super().__init__(files)

    @property
    def n_modules_hint(self) -> int:
        """Module slots of the whole detector, as the record says."""
        return int(self.record["detector"]["n_modules"])

    def _derive(self, **kwargs: Any) -> DataCollection:
        new = super()._derive(**kwargs)
        new.n_modules_hint = self.n_modules_hint  # type: ignore[attr-defined]
        new.record = self.record  # type: ignore[attr-defined]
        new._keepalive = self._keepalive  # type: ignore[attr-defined]
        return new

    def __repr__(self) -> str:
        return (f"<detstack view ({self.record['form']}) of {self.record['detector']['name']}: "
                f"{len(self.files)} modules, {len(self.train_ids_array)} trains, "
                f"{self.view_path}>")


def presented_arrays(record: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict[str, Any]:
    """The view's arrays with the entry axes a form dropped put back (``squeezed_axes``)."""
    out = dict(arrays)
    for key, info in record["keys"].items():
        squeezed = info.get("squeezed_axes") or []
        if key in out and squeezed:
            lead = 3 if info["per_frame"] and key_layout(record, key) == "trains" else 2
            out[key] = ExpandedArray(out[key], tuple(lead + int(a) for a in squeezed))
    return out


def stored_shape(record: Mapping[str, Any], key: str, counts: Mapping[str, np.ndarray]
                 ) -> tuple[int, ...]:
    """The shape a key's array must have, derived from the record and the row counts:
    leading axes by layout, then the entry without its ``squeezed_axes``."""
    info = record["keys"][key]
    lead: tuple[int, ...] = (int(record["detector"]["n_modules"]),)
    if not info["per_frame"]:
        lead += (int(record["n_trains"]),)
    elif key_layout(record, key) == "frames":
        lead += (int(frame_offsets(np.asarray(counts[info["group"]]))[-1]),)
    else:
        lead += (int(record["n_trains"]), int(record["max_frames"]))
    squeezed = {int(a) for a in info.get("squeezed_axes") or []}
    return lead + tuple(int(n) for i, n in enumerate(info["entry_shape"]) if i not in squeezed)


def check_record(record: Mapping[str, Any], path: str | Path) -> None:
    """Refuse records we cannot read, with a message saying what to do."""
    if record.get("format") != "detstack-view":
        raise FileFormatError(path, "is not a detstack view (no detstack-view metadata record)")
    version = record.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise FileFormatError(path, f"was written with view schema version {version}, but this "
                              f"detstack reads versions {sorted(READABLE_SCHEMA_VERSIONS)}",
                              "Upgrade detstack to read it")


def _record_problems(record: Mapping[str, Any], arrays: Mapping[str, Any],
                     train_ids: np.ndarray, counts: Mapping[str, np.ndarray]) -> list[str]:
    det = record["detector"]
    n_mod, n_trains = int(det["n_modules"]), int(record["n_trains"])
    max_frames = int(record["max_frames"])
    out = []
    if len(train_ids) != n_trains:
        out.append(f"it holds {len(train_ids)} train IDs but its record says {n_trains} trains")
    slots = [int(s) for s in det["modules"]]
    if any(not 0 <= s < n_mod for s in slots):
        out.append(f"module slots {sorted(slots)} do not fit its {n_mod} modules")
    numbers = [m.get("number") for m in det["modules"].values()]
    if len(set(numbers)) != len(numbers):
        out.append(f"module numbers {numbers} repeat")
    for group in record["index_groups"]:
        c = counts.get(group)
        if c is None or tuple(np.shape(c)) != (n_mod, n_trains):
            out.append(f"row counts of {group!r} have shape {None if c is None else np.shape(c)}"
                       f", not (modules, trains) = {(n_mod, n_trains)}")
        elif np.asarray(c).dtype.kind == "i" and (np.asarray(c) < 0).any():
            out.append(f"row counts of {group!r} are negative")
    for key, info in record["keys"].items():
        a = arrays.get(key)
        if a is None:
            out.append(f"it has no array for key {key!r}")
            continue
        want = stored_shape(record, key, counts)
        if tuple(a.shape) != want:
            what = "(modules, frames, *entry)" if info["per_frame"] and \
                key_layout(record, key) == "frames" else "(modules, trains[, frames], *entry)"
            out.append(f"{key} has shape {tuple(a.shape)}, but its record says {want} {what}")
        if np.dtype(a.dtype) != np.dtype(info["dtype"]):
            out.append(f"{key} has dtype {np.dtype(a.dtype)}, its record {info['dtype']}")
        c = counts.get(info["group"])
        if info["per_frame"] and c is not None and np.size(c) and int(np.max(c)) > max_frames:
            out.append(f"row counts of {info['group']!r} reach {int(np.max(c))} frames, beyond "
                       f"the record's max_frames {max_frames}")
    return out


def check_view_arrays(record: Mapping[str, Any], arrays: Mapping[str, Any],
                      train_ids: np.ndarray, counts: Mapping[str, np.ndarray],
                      path: str | Path) -> None:
    """Refuse a view whose record disagrees with its arrays' shapes: its frames would be
    shifted or duplicated (max_frames, train count, module slots, row counts)."""
    try:
        problems = _record_problems(record, arrays, train_ids, counts)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ViewRecordError(path, f"has an incomplete view record ({exc!r})",
                              "Write the view again") from exc
    if problems:
        raise ViewRecordError(path, "its record disagrees with its arrays: "
                              + "; ".join(problems[:3]),
                              "Frames would be shifted or duplicated; the view is damaged or "
                              "was edited: write it again")
