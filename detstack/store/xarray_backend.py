"""An xarray backend: ``xr.open_dataset(run_or_view, engine="detstack")``.

It presents a run folder (no conversion) or any detstack view as the dataset a
zarr store of it would hold: one lazy array per key in the view layout
``(module, train, pulse, ...)`` with the same names, dims and coordinates, read
on demand through the frame map. ``xr.open_datatree`` gives one group per
detector found in the data.

This module is imported by xarray whenever it lists its engines, so everything
heavy is imported inside the functions.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from ..errors import AmbiguousDetectorError

_PARAMETERS = ("filename_or_obj", "drop_variables", "detector", "keys", "key", "layout",
               "trains", "raw", "modules", "min_modules", "storage_options")


VIEW_FOLDERS = (".zarr", ".parq", ".parquet", ".icechunk")   # views that are folders


def open_source(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
                ) -> Any:
    """A run folder, a single EuXFEL file or a detstack view, as a collection."""
    import h5py

    from .. import H5File, RunDirectory
    from .open import open_view
    name = os.fspath(path)
    local = Path(name)
    if "://" not in name and local.is_dir() and not name.rstrip("/").endswith(
            VIEW_FOLDERS) and not any((local / m).exists() for m in ("zarr.json", ".zgroup")):
        return RunDirectory(local)
    if "://" not in name and local.is_file() and name.lower().endswith((".h5", ".hdf5")):
        with h5py.File(local, "r") as f:
            is_run_file = "INDEX" in f and "METADATA" in f
        if is_run_file:
            return H5File(local)
    return open_view(name, storage_options=storage_options)


def detectors_in(data: Any, detector: str | None = None, **det_kwargs: Any) -> list[Any]:
    """Detector objects for every multi-module detector of ``data`` (or the named one)."""
    from ..detectors.identify import identify_multimod_detectors
    found = sorted(identify_multimod_detectors(data, detector), key=lambda nc: nc[0])
    if detector is not None:
        found = [(n, c) for n, c in found if n == detector]
    if not found:
        from ..errors import SourceNameError
        raise SourceNameError(f"No multi-module detector{' ' + detector if detector else ''} "
                              "in this data; see detstack.identify_multimod_detectors")
    return [cls(data, name, **det_kwargs) for name, cls in found]


class FrameMapArray(BackendArray):
    """One key of the view layout, read box by box through the frame map."""

    def __init__(self, plan: Any, key: str, lock: threading.Lock) -> None:
        self.plan = plan
        self.kp = plan.key(key)
        self.shape = plan.shape(self.kp)
        self.dtype = np.dtype(self.kp.dtype)
        self._lock = lock
        # axes the layout drops (raw LPD/DSSC length-1 axis) are read at index 0
        self._squeezed = self.kp.squeezed_axes

    def _src_index(self, entry_key: tuple[Any, ...]) -> tuple[Any, ...]:
        """An index of the stored entry axes as an index of the source row."""
        rest = iter(tuple(entry_key) + (slice(None),) * len(self.kp.stored_entry))
        return tuple(0 if i in self._squeezed else next(rest)
                     for i in range(len(self.kp.entry_shape)))

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape,
                                                  indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        from ..detectors.reading import read_rows
        frame_axis = self.kp.per_frame and self.plan.frames
        lead = 3 if self.kp.per_frame and not frame_axis else 2
        key = tuple(key) + (slice(None),) * (len(self.shape) - len(key))
        picks = [np.atleast_1d(np.arange(n)[k])
                 for n, k in zip(self.shape[:lead], key[:lead], strict=True)]
        squeeze = tuple(i for i, k in enumerate(key[:lead]) if isinstance(k, (int, np.integer)))
        slots = picks[0]
        entry = np.empty(self.kp.stored_entry, dtype=np.uint8)[key[lead:]].shape
        out = np.full(tuple(len(p) for p in picks) + entry, self.kp.fill_value, self.dtype)
        rows = [r for r, s in enumerate(self.plan.slots) if s in set(slots.tolist())]
        if frame_axis:
            offsets = self.plan.offsets(self.kp.group)
            trains = np.searchsorted(offsets, picks[1], side="right") - 1
        else:
            trains = picks[1]
        order = np.unique(trains)
        if not rows or not len(order):
            return out.squeeze(axis=squeeze) if squeeze else out
        fmap = self.plan.frame_map(self.kp).select_modules(rows)
        keep = np.zeros(len(self.plan.train_ids), bool)
        keep[order] = True
        fmap = fmap.select_trains(keep)
        at_slot = [int(np.flatnonzero(slots == self.plan.slots[r])[0]) for r in rows]
        at_train = np.searchsorted(order, trains)
        src_index = self._src_index(key[lead:])
        if frame_axis:
            self._read_frame_axis(fmap, at_train, picks[1] - offsets[trains], src_index, out,
                                  at_slot, read_rows)
        elif self.kp.per_frame:
            self._read_frames(fmap, picks[2], src_index, out, at_slot, at_train, read_rows)
        else:
            dense = np.full((len(rows), len(order)) + entry, self.kp.fill_value, self.dtype)
            with self._lock:
                read_rows(fmap, self.kp.key, dense, list(range(len(rows))), None,
                          src_index, per_train=True)
            out[at_slot] = dense[:, at_train]
        return out.squeeze(axis=squeeze) if squeeze else out

    def _read_frame_axis(self, fmap: Any, at_train: np.ndarray, within: np.ndarray,
                         src_index: tuple[Any, ...], out: np.ndarray, at_slot: list[int],
                         read_rows: Any) -> None:
        """Frame layout: read frame ``within[i]`` of selected train ``at_train[i]`` into
        ``out[:, i]`` (the selected modules' frame map numbers frames by its own counts;
        trains none of them has stay fill)."""
        counts = fmap.train_counts().astype(np.int64)
        have = within < counts[at_train]
        if not have.any():
            return
        pos = fmap.offsets()[at_train[have]] + within[have]
        selected = np.zeros(fmap.n_frames(), bool)
        selected[pos] = True
        dense = np.full((fmap.n_modules, int(selected.sum())) + out.shape[2:],
                        self.kp.fill_value, self.dtype)
        with self._lock:
            read_rows(fmap, self.kp.key, dense, list(range(fmap.n_modules)), selected,
                      src_index)
        j = np.searchsorted(np.flatnonzero(selected), pos)
        columns = np.flatnonzero(have)
        for k, slot in enumerate(at_slot):
            out[slot, columns] = dense[k, j]

    def _read_frames(self, fmap: Any, pulses: np.ndarray, src_index: tuple[Any, ...],
                     out: np.ndarray, at_slot: list[int], at_train: np.ndarray,
                     read_rows: Any) -> None:
        """Read the asked-for frame positions of the selected trains, then place each
        frame at its (train, position) in ``out``. Indexes are unique (basic indexing)."""
        counts = fmap.train_counts().astype(np.int64)
        train_of = np.repeat(np.arange(len(counts)), counts)
        within = np.arange(int(counts.sum())) - np.repeat(fmap.offsets()[:-1], counts)
        selected = np.isin(within, pulses)
        if not selected.any():
            return
        n = int(selected.sum())
        dense = np.full((fmap.n_modules, n) + out.shape[3:], self.kp.fill_value, self.dtype)
        with self._lock:
            read_rows(fmap, self.kp.key, dense, list(range(fmap.n_modules)), selected,
                      src_index)
        pulse_pos = np.full(self.plan.max_frames, -1, np.int64)
        pulse_pos[pulses] = np.arange(len(pulses))
        train_pos = np.empty(len(counts), np.int64)
        train_pos[at_train] = np.arange(len(at_train))
        t_out, p_out = train_pos[train_of[selected]], pulse_pos[within[selected]]
        for k, slot in enumerate(at_slot):
            out[slot, t_out, p_out] = dense[k]


class _LazyCoordinate(BackendArray):
    """A coordinate whose values are read from the files on first access (pulse and
    cell IDs read the ID key of every module)."""

    def __init__(self, coordinate: Any) -> None:
        self.coordinate = coordinate
        self.shape = coordinate.shape
        self.dtype = coordinate.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC,
            lambda k: self.coordinate.values[k])


def _coordinates(plan: Any, keys: list[str]) -> dict[str, Any]:
    """The view's coordinates (``ViewPlan.coordinates``): dimension coordinates and
    counts read now, per-frame IDs lazily."""
    import xarray as xr
    out = {}
    for name, c in plan.coordinates(keys).items():
        lazy = name in ("pulse_id", "cell_id", "train_id", "gain")
        data = indexing.LazilyIndexedArray(_LazyCoordinate(c)) if lazy else c.values
        out[name] = xr.Variable(c.dims, data)
    return out


def dataset_of(det: Any, keys: list[str] | None = None, drop_variables: Any = None,
               layout: str = "trains") -> Any:
    """The lazy dataset of one detector in the view layout (``layout``: 'trains' or
    'frames', as for every view form; see ``detstack.convert.plan``)."""
    import xarray as xr

    from ..convert.plan import ViewPlan
    plan = ViewPlan(det, keys, layout=layout, squeeze=True)
    drop = set([drop_variables] if isinstance(drop_variables, str) else drop_variables or [])
    kept = [kp for kp in plan.keys if kp.key not in drop]
    lock = threading.Lock()
    variables: dict[str, Any] = {}
    for kp in kept:
        data = indexing.LazilyIndexedArray(FrameMapArray(plan, kp.key, lock))
        fill = None if isinstance(kp.fill_value, float) else kp.fill_value   # NaN
        attrs = {"fill_value": fill, "detstack_source": "frame map"}
        variables[kp.key] = xr.Variable(plan.dims(kp), data, attrs=attrs)
    ds = xr.Dataset(variables, coords=_coordinates(plan, [kp.key for kp in kept]))
    ds.attrs.update({"detector": det.detector_name, "detector_class": type(det).__name__,
                     "n_modules": det.n_modules, "layout": plan.layout})
    return ds


class DetstackBackend(BackendEntrypoint):
    """``engine="detstack"``: EuXFEL run folders and detstack views, lazily."""

    description = ("European XFEL multi-module detector runs and detstack views as "
                   "(module, train, pulse, ...) arrays")
    url = "https://github.com/european-xfel/detstack"
    open_dataset_parameters = _PARAMETERS

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Run folders of EuXFEL files only; views are opened by their own engines."""
        try:
            folder = Path(os.fspath(filename_or_obj))
        except TypeError:
            return False
        return folder.is_dir() and any(folder.glob("*-R[0-9][0-9][0-9][0-9]-*-S*.h5"))

    def open_dataset(self, filename_or_obj: Any, *, drop_variables: Any = None,
                     detector: str | None = None, keys: list[str] | str | None = None,
                     key: str | None = None,
                     layout: str = "trains", trains: Any = None, raw: bool | None = None,
                     modules: Any = None, min_modules: int = 1,
                     storage_options: dict[str, Any] | None = None) -> Any:
        """One detector (``detector=`` when the data holds several) as a lazy dataset.

        ``keys``: a key or list of keys (default: every key all modules have); ``key``:
        one key (the same as ``keys=key``);
        ``layout``: 'trains' (``(module, train, pulse, ...)``) or 'frames'
        (``(module, frame, ...)`` with per-frame ``train_id``, ``pulse_id``,
        ``cell_id``, like ``get_array(..., unstack_pulses=False)``), as ``to_zarr``;
        ``trains``: a train selection (``by_id[...]``, ``by_index[...]``, a slice or
        train IDs), as ``select_trains``; ``raw``, ``modules``, ``min_modules``: as
        for the detector classes.
        """
        data = open_source(filename_or_obj, storage_options)
        dets = detectors_in(data, detector, raw=raw, modules=modules, min_modules=min_modules)
        if key is not None:
            if keys is not None:
                raise TypeError("pass key= (one key) or keys= (a key or a list), not both")
            keys = key
        if len(dets) > 1:
            raise AmbiguousDetectorError(
                f"The data holds {len(dets)} detectors ({', '.join(d.detector_name for d in dets)}):"
                " pass detector=, or use xr.open_datatree for all of them")
        det = dets[0] if trains is None else dets[0].select_trains(trains)
        return dataset_of(det, [keys] if isinstance(keys, str) else keys, drop_variables,
                          layout)

    def open_datatree(self, filename_or_obj: Any, *, drop_variables: Any = None,
                      layout: str = "trains", trains: Any = None, raw: bool | None = None,
                      min_modules: int = 1, storage_options: dict[str, Any] | None = None,
                      **kwargs: Any) -> Any:
        """Every detector of the data, one group each, with all its keys (``layout``,
        ``trains``: as for ``open_dataset``)."""
        import xarray as xr
        data = open_source(filename_or_obj, storage_options)
        dets = detectors_in(data, None, raw=raw, min_modules=min_modules)
        if trains is not None:
            dets = [det.select_trains(trains) for det in dets]
        return xr.DataTree.from_dict({det.detector_name: dataset_of(det, None, drop_variables,
                                                                    layout)
                                      for det in dets})
