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

_PARAMETERS = ("filename_or_obj", "drop_variables", "detector", "keys", "raw", "modules",
               "min_modules", "storage_options")


def open_source(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
                ) -> Any:
    """A run folder, a single EuXFEL file or a detstack view, as a collection."""
    import h5py

    from .. import H5File, RunDirectory
    from .open import open_view
    name = os.fspath(path)
    local = Path(name)
    if "://" not in name and local.is_dir() and not any(
            (local / marker).exists() for marker in ("zarr.json", ".zgroup")):
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
        lead = 3 if self.kp.per_frame else 2
        key = tuple(key) + (slice(None),) * (len(self.shape) - len(key))
        picks = [np.arange(n)[k] for n, k in zip(self.shape[:lead], key[:lead], strict=True)]
        squeeze = tuple(i for i, k in enumerate(key[:lead]) if isinstance(k, (int, np.integer)))
        slots, trains = np.atleast_1d(picks[0]), np.atleast_1d(picks[1])
        entry = np.empty(self.kp.stored_entry, dtype=np.uint8)[key[lead:]].shape
        out = np.full((len(slots), len(trains))
                      + ((len(np.atleast_1d(picks[2])),) if self.kp.per_frame else ()) + entry,
                      self.kp.fill_value, dtype=self.dtype)
        rows = [r for r, s in enumerate(self.plan.slots) if s in set(slots.tolist())]
        order = np.unique(trains)
        if rows and len(order):
            fmap = self.plan.frame_map(self.kp).select_modules(rows)
            keep = np.zeros(len(self.plan.train_ids), bool)
            keep[order] = True
            fmap = fmap.select_trains(keep)
            at_slot = [int(np.flatnonzero(slots == self.plan.slots[r])[0]) for r in rows]
            at_train = np.searchsorted(order, trains)
            if self.kp.per_frame:
                self._read_frames(fmap, np.atleast_1d(picks[2]), key[lead:], out,
                                  at_slot, at_train, read_rows)
            else:
                dense = np.full((len(rows), len(order)) + entry, self.kp.fill_value, self.dtype)
                with self._lock:
                    read_rows(fmap, self.kp.key, dense, list(range(len(rows))), None,
                              self._src_index(key[lead:]), per_train=True)
                out[at_slot] = dense[:, at_train]
        return out.squeeze(axis=squeeze) if squeeze else out

    def _read_frames(self, fmap: Any, pulses: np.ndarray, entry_key: tuple[Any, ...],
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
                      self._src_index(entry_key))
        pulse_pos = np.full(self.plan.max_frames, -1, np.int64)
        pulse_pos[pulses] = np.arange(len(pulses))
        train_pos = np.empty(len(counts), np.int64)
        train_pos[at_train] = np.arange(len(at_train))
        t_out, p_out = train_pos[train_of[selected]], pulse_pos[within[selected]]
        for k, slot in enumerate(at_slot):
            out[slot, t_out, p_out] = dense[k]


class _FrameIds(BackendArray):
    """(train, pulse|cell) pulse or cell IDs, from the first module holding each train;
    computed on first access (it reads the ID key of every module)."""

    def __init__(self, source: FrameMapArray) -> None:
        self.source = source
        self.shape = (source.shape[1], int(np.prod(source.shape[2:])))
        self.dtype = source.dtype
        self._values: np.ndarray | None = None

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape,
                                                  indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        if self._values is None:
            per_module = self.source._read((slice(None),) * len(self.source.shape))
            per_module = per_module.reshape(per_module.shape[:2] + (-1,))  # length-1 axes
            counts = self.source.plan.counts(self.source.kp.group)      # (slot, train)
            first = np.argmax(counts > 0, axis=0)
            values = per_module[first, np.arange(self.shape[0])]
            values[(counts == 0).all(axis=0)] = self.source.kp.fill_value
            self._values = values
        return self._values[key]


def _coordinates(plan: Any) -> dict[str, Any]:
    import xarray as xr
    coords: dict[str, Any] = {
        "module": ("module", np.arange(plan.n_slots, dtype=np.int64) + plan.det.kind.modno_base),
        "train": ("train", plan.train_ids.astype(np.uint64)),
    }
    for group in sorted({kp.group for kp in plan.keys}):
        coords[f"count.{group}"] = (("module", "train"), plan.counts(group))
    return {name: xr.Variable(*value) for name, value in coords.items()}


def dataset_of(det: Any, keys: list[str] | None = None,
               drop_variables: Any = None) -> Any:
    """The lazy dataset of one detector in the view layout."""
    import xarray as xr

    from ..convert.plan import ViewPlan
    plan = ViewPlan(det, keys, squeeze=True)
    drop = set([drop_variables] if isinstance(drop_variables, str) else drop_variables or [])
    lock = threading.Lock()
    variables: dict[str, Any] = {}
    frame_ids: dict[str, Any] = {}
    id_names = {det.kind.pulse_key: "pulse_id", det.kind.cell_key: "cell_id"}
    for kp in plan.keys:
        if kp.key in drop:
            continue
        array = FrameMapArray(plan, kp.key, lock)
        dims = plan.dims(kp)
        data = indexing.LazilyIndexedArray(array)
        fill = None if isinstance(kp.fill_value, float) else kp.fill_value
        attrs = {"fill_value": fill, "detstack_source": "frame map"}
        variables[kp.key] = xr.Variable(dims, data, attrs=attrs)
        inner = [n for n, d in zip(dims[2:], array.shape[2:], strict=True) if d != 1]
        if kp.key in id_names and len(inner) == 1 and inner[0] in ("pulse", "cell"):
            frame_ids[id_names[kp.key]] = xr.Variable(
                ("train", inner[0]), indexing.LazilyIndexedArray(_FrameIds(array)))
    coords = _coordinates(plan) | frame_ids
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update({"detector": det.detector_name, "detector_class": type(det).__name__,
                     "n_modules": det.n_modules})
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
                     raw: bool | None = None, modules: Any = None, min_modules: int = 1,
                     storage_options: dict[str, Any] | None = None) -> Any:
        """One detector (``detector=`` when the data holds several) as a lazy dataset.

        ``keys``: a key or list of keys (default: every key all modules have);
        ``raw``, ``modules``, ``min_modules``: as for the detector classes.
        """
        data = open_source(filename_or_obj, storage_options)
        dets = detectors_in(data, detector, raw=raw, modules=modules, min_modules=min_modules)
        if len(dets) > 1:
            raise ValueError(f"The data holds {len(dets)} detectors "
                             f"({', '.join(d.detector_name for d in dets)}): pass detector=, "
                             "or use xr.open_datatree for all of them")
        return dataset_of(dets[0], [keys] if isinstance(keys, str) else keys, drop_variables)

    def open_datatree(self, filename_or_obj: Any, *, drop_variables: Any = None,
                      raw: bool | None = None, min_modules: int = 1,
                      storage_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Every detector of the data, one group each, with all its keys."""
        import xarray as xr
        data = open_source(filename_or_obj, storage_options)
        dets = detectors_in(data, None, raw=raw, min_modules=min_modules)
        return xr.DataTree.from_dict({det.detector_name: dataset_of(det, None, drop_variables)
                                      for det in dets})
