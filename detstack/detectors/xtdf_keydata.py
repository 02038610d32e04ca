"""Per-frame keys (``image.*``) of AGIPD, DSSC and LPD: frames of many pulses per train."""

from __future__ import annotations

from copy import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from .keydata import MultimodKeyData, as_roi
from .pulses import (
    FrameLabels,
    is_all_pulses,
    normalize_pulses,
    select_frames,
)
from .reading import roi_shape

if TYPE_CHECKING:
    from .base import MultimodDetectorBase

SUBTRAIN_INDEXES = ("pulseId", "cellId")
FRAMES_BYTES = 2 << 30


def pixel_dims(ndim: int) -> list[str]:
    if ndim == 3:
        return ["data_gain", "slow_scan", "fast_scan"]
    if ndim == 2:
        return ["slow_scan", "fast_scan"]
    return [f"dim_{i}" for i in range(ndim)]


def dims_after_roi(names: list[str], roi: tuple[Any, ...]) -> list[str]:
    """Integer ROI entries drop their axis (the reference breaks here)."""
    kept = []
    padded = list(roi) + [slice(None)] * (len(names) - len(roi))
    for name, r in zip(names, padded, strict=False):
        if not isinstance(r, (int, np.integer)):
            kept.append(name)
    return kept


def promoted_for_gaps(dtype: np.dtype) -> np.dtype:
    """The dtype holding NaN for (train, pulse) cells absent from a ragged selection."""
    if dtype.kind in "fc":
        return dtype
    return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)


class XtdfImageKeyData(MultimodKeyData):
    """An ``image.*`` key: rows are frames, selectable by pulse."""

    _per_frame = True

    def __init__(self, det: MultimodDetectorBase, key: str, pulses: Any = None) -> None:
        super().__init__(det, key)
        self._hidden = len(self.entry_shape) > 0 and self.entry_shape[0] == 1
        if self._hidden:
            self.entry_shape = self.entry_shape[1:]
        self._pulses = normalize_pulses(np.s_[:] if pulses is None else pulses)

    @property
    def parallel_gain(self) -> bool:
        return bool(getattr(self.det, "parallel_gain", False))

    @property
    def dimensions(self) -> list[str]:
        return ["module", "train_pulse"] + pixel_dims(len(self.entry_shape))

    def select_pulses(self, pulses: Any) -> XtdfImageKeyData:
        new = copy(self)
        new._pulses = normalize_pulses(pulses)
        return new

    # -- frame labels and selection -------------------------------------------------

    def labels(self, subtrain_index: str = "pulseId") -> FrameLabels:
        if subtrain_index not in SUBTRAIN_INDEXES:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        return self.det.frame_labels(subtrain_index)

    def _selected(self) -> np.ndarray | None:
        """Mask over frames; by_id always selects on pulse IDs, whatever labels them."""
        if is_all_pulses(self._pulses):
            return None
        return select_frames(self._pulses, self.labels("pulseId"))

    def _n_rows(self) -> int:
        sel = self._selected()
        return self.fmap.n_frames() if sel is None else int(sel.sum())

    def _src_index(self, roi: tuple[Any, ...]) -> tuple[Any, ...]:
        return ((0,) if self._hidden else ()) + roi

    def _masked(self, values: np.ndarray) -> np.ndarray:
        sel = self._selected()
        return values if sel is None else values[sel]

    def train_id_coordinates(self) -> np.ndarray:
        return self._masked(self.fmap.train_ids_perframe())

    def pulse_id_coordinates(self) -> np.ndarray:
        return self._masked(self.labels("pulseId").inner)

    def cell_id_coordinates(self) -> np.ndarray:
        return self._masked(self.labels("cellId").inner)

    def data_availability(self, module_gaps: bool = False) -> np.ndarray:
        fmap = self.fmap
        counts = fmap.train_counts().astype(np.int64)
        per_frame = np.repeat(fmap.present, counts, axis=1)
        per_frame = self._masked(per_frame.T).T
        if not module_gaps:
            return per_frame
        out = np.zeros((self.det.n_modules, per_frame.shape[1]), bool)
        out[self._slots(True)] = per_frame
        return out

    # -- labelled arrays ------------------------------------------------------------

    def _index_levels(self, subtrain_index: str) -> dict[str, np.ndarray]:
        labels = self.labels(subtrain_index)
        sel = self._selected()
        take = (lambda a: a) if sel is None else (lambda a: a[sel])
        inner_name = subtrain_index[:-2]
        levels = {"train": take(labels.train)}
        if labels.gain is not None:
            levels["gain"] = take(labels.gain)
        levels[inner_name] = take(labels.inner)
        return levels

    def ndarray(self, *, fill_value: Any = None, out: np.ndarray | None = None, roi: Any = (),
                astype: Any = None, module_gaps: bool = False,
                decompress_threads: int | None = None) -> np.ndarray:
        """Frames of the selected pulses as (module, frame, ...); plain-byte blocks are
        copied by up to ``decompress_threads`` threads (default: two per core for plain
        copies, one per core when every block must be decompressed)."""
        return self._read(fill_value, out, roi, astype, module_gaps,
                          threads=max(1, decompress_threads) if decompress_threads else None)

    def xarray(self, *, fill_value: Any = None, roi: Any = (), astype: Any = None,
               subtrain_index: str = "pulseId", unstack_pulses: bool = False,
               decompress_threads: int | None = None) -> xr.DataArray:
        roi = as_roi(roi)
        levels = self._index_levels(subtrain_index)
        arr = self.ndarray(fill_value=fill_value, roi=roi, astype=astype,
                           decompress_threads=decompress_threads)
        pix = dims_after_roi(pixel_dims(len(self.entry_shape)), roi)
        modules = np.asarray(self.modules)
        if unstack_pulses:
            return _unstacked(arr, levels, modules, pix)
        index = pd.MultiIndex.from_arrays(list(levels.values()), names=list(levels))
        coords = xr.Coordinates.from_pandas_multiindex(index, "train_pulse")
        return xr.DataArray(arr, dims=["module", "train_pulse"] + pix,
                            coords=coords).assign_coords(module=modules)

    def dask_array(self, *, labelled: bool = False, subtrain_index: str = "pulseId",
                   fill_value: Any = None, astype: Any = None,
                   frames_per_chunk: int | None = None) -> Any:
        dtype = np.dtype(astype) if astype is not None else self.dtype
        if frames_per_chunk is None:
            per_frame = dtype.itemsize * len(self.modules) * int(np.prod(self.entry_shape))
            frames_per_chunk = max(1, min(FRAMES_BYTES // max(per_frame, 1), 1024))
        arr = self._lazy(frames_per_chunk, fill_value, astype)
        if not labelled:
            return arr
        return self._labelled(arr, self._index_levels(subtrain_index), self.dimensions)

    def detector_dask_array(self, subtrain_index: str = "pulseId", fill_value: Any = None,
                            astype: Any = None) -> xr.DataArray:
        """The layout of ``get_dask_array``: a hidden length-1 axis is put back (as
        ``dim_0``), and the frame index levels are named ``trainId`` ... ``pulseId``."""
        arr = self.dask_array(subtrain_index=subtrain_index, fill_value=fill_value,
                              astype=astype)
        if self._hidden:
            arr = arr[:, :, None]
        levels = self._index_levels(subtrain_index)
        names = ["trainId"] + list(levels)[1:-1] + [subtrain_index]
        levels = dict(zip(names, levels.values(), strict=True))
        dims = ["module", "train_pulse"] + [f"dim_{i}" for i in range(arr.ndim - 2)]
        return self._labelled(arr, levels, dims)

    def _labelled(self, arr: Any, levels: dict[str, np.ndarray], dims: list[str]
                  ) -> xr.DataArray:
        index = pd.MultiIndex.from_arrays(list(levels.values()), names=list(levels))
        coords = xr.Coordinates.from_pandas_multiindex(index, "train_pulse")
        return xr.DataArray(arr, dims=dims, coords=coords).assign_coords(
            module=np.asarray(self.modules))

    def buffer_shape(self, module_gaps: bool = False, roi: Any = ()) -> tuple[int, ...]:
        n_mod = self.det.n_modules if module_gaps else len(self.modules)
        return (n_mod, self._n_rows()) + roi_shape(self.entry_shape, as_roi(roi))


def _unstacked(arr: np.ndarray, levels: dict[str, np.ndarray], modules: np.ndarray,
               pix: list[str]) -> xr.DataArray:
    """(module, frame, ...) to (module, train, [gain,] pulse, ...), without a copy when dense."""
    names = list(levels)
    keys = [np.asarray(levels[n]) for n in names]
    uniques, codes = zip(*(np.unique(k, return_inverse=True) for k in keys), strict=True)
    sizes = [len(u) for u in uniques]
    flat = np.ravel_multi_index(codes, sizes) if arr.shape[1] else np.zeros(0, np.int64)
    n_cells = int(np.prod(sizes))
    coords = {"module": modules} | {n: u for n, u in zip(names, uniques, strict=True)}
    dims = ["module"] + names + pix
    if np.array_equal(flat, np.arange(n_cells)):
        data = arr.reshape((arr.shape[0], *sizes) + arr.shape[2:])
        return xr.DataArray(data, dims=dims, coords=coords)
    if len(np.unique(flat)) != len(flat):
        raise ValueError("Duplicate (train, pulse) labels: the frames cannot be unstacked; "
                         "use unstack_pulses=False")
    if len(flat) == n_cells:  # complete, only reordered: no gaps to mark
        full = np.empty((arr.shape[0], n_cells) + arr.shape[2:], dtype=arr.dtype)
    else:
        full = np.full((arr.shape[0], n_cells) + arr.shape[2:], np.nan,
                       dtype=promoted_for_gaps(arr.dtype))
    full[:, flat] = arr
    data = full.reshape((arr.shape[0], *sizes) + arr.shape[2:])
    return xr.DataArray(data, dims=dims, coords=coords)
