"""Per-frame keys (``image.*``) of AGIPD, DSSC and LPD: frames of many pulses per train."""

from __future__ import annotations

from collections.abc import Callable
from copy import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..run.selection import ById
from .keydata import MultimodKeyData, as_roi
from .param_docs import shared
from .pulses import (
    FrameLabels,
    is_all_pulses,
    normalize_pulses,
    select_frames,
    select_positions,
)
from .reading import RowReader, roi_shape

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
    """An ``image.*`` key of an XTDF detector (``det['image.data']``): rows are frames,
    selectable by pulse.

    Parameters
    ----------
    det : detector
        The detector object the key belongs to (its module and train selection apply).
    key : str
        The key, e.g. ``'image.data'``.
    pulses : slice, int, array, by_id[...] or by_index[...], optional
        Frames to keep from each train (default all).

    Raises
    ------
    PropertyNameError
        A module has no such key.
    ValueError
        ``pulses`` is not a valid pulse selection.
    """

    _per_frame = True

    def __init__(self, det: MultimodDetectorBase, key: str, pulses: Any = None) -> None:
        super().__init__(det, key)
        self._hidden = len(self.entry_shape) > 0 and self.entry_shape[0] == 1
        if self._hidden:
            self.entry_shape = self.entry_shape[1:]
        self._pulses = normalize_pulses(np.s_[:] if pulses is None else pulses)

    @property
    def parallel_gain(self) -> bool:
        """Whether each pulse is stored once per gain stage (LPD's parallel gain mode)."""
        return bool(getattr(self.det, "parallel_gain", False))

    @property
    def dimensions(self) -> list[str]:
        """Dimension names of ``xarray()`` with stacked pulses."""
        return ["module", "train_pulse"] + pixel_dims(len(self.entry_shape))

    def select_pulses(self, pulses: Any) -> XtdfImageKeyData:
        """The same key with other frames of each train.

        Parameters
        ----------
        pulses : slice, int, array, by_id[...] or by_index[...]
            ``by_id`` selects pulse IDs, ``by_index`` (or a plain slice/array)
            positions within each train.

        Returns
        -------
        XtdfImageKeyData
            This key over those frames.

        Raises
        ------
        ValueError
            ``pulses`` is not a valid selection (e.g. a negative ``by_id`` value).
        """
        new = copy(self)
        new._pulses = normalize_pulses(pulses)
        return new

    # -- frame labels and selection -------------------------------------------------

    @shared
    def labels(self, subtrain_index: str = "pulseId") -> FrameLabels:
        """Train, position and pulse/cell ID of every frame of the detector.

        Parameters
        ----------
        $subtrain_index

        Returns
        -------
        FrameLabels
            Per-frame labels (all frames, before the pulse selection).

        Raises
        ------
        ValueError
            ``subtrain_index`` is not ``'pulseId'`` or ``'cellId'``.
        InconsistentModulesError
            Modules recorded different IDs for the same frame.
        """
        if subtrain_index not in SUBTRAIN_INDEXES:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        return self.det.frame_labels(subtrain_index)

    def _selected(self) -> np.ndarray | None:
        """Mask over frames; by_id always selects on pulse IDs, whatever labels them, and
        by_index on positions (no IDs needed). Kept for this detector and selection: a
        read asks for it several times (shape, rows, labels)."""
        if is_all_pulses(self._pulses):
            return None
        memo = self.__dict__.get("_sel_memo")
        if memo is not None and memo[0] is self.det and memo[1] is self._pulses:
            return memo[2]
        if isinstance(self._pulses, ById):
            mask = select_frames(self._pulses, self.labels("pulseId"))
        else:
            mask = select_positions(self._pulses, self.det._frame_positions())
        self._sel_memo = (self.det, self._pulses, mask)
        return mask

    def _n_rows(self) -> int:
        sel = self._selected()
        return self.fmap.n_frames() if sel is None else int(sel.sum())

    def _src_index(self, roi: tuple[Any, ...]) -> tuple[Any, ...]:
        return ((0,) if self._hidden else ()) + roi

    def _masked(self, values: np.ndarray) -> np.ndarray:
        sel = self._selected()
        return values if sel is None else values[sel]

    def train_id_coordinates(self) -> np.ndarray:
        """The train ID of every selected frame.

        Returns
        -------
        numpy.ndarray
            uint64 train IDs, one per frame along the second axis of ``ndarray()``.
        """
        return self._masked(self.fmap.train_ids_perframe())

    def pulse_id_coordinates(self) -> np.ndarray:
        """The pulse ID of every selected frame.

        Returns
        -------
        numpy.ndarray
            One pulse ID per frame along the second axis of ``ndarray()``.
        """
        return self._masked(self.labels("pulseId").inner)

    def cell_id_coordinates(self) -> np.ndarray:
        """The memory cell ID of every selected frame.

        Returns
        -------
        numpy.ndarray
            One cell ID per frame along the second axis of ``ndarray()``.
        """
        return self._masked(self.labels("cellId").inner)

    @shared
    def data_availability(self, module_gaps: bool = False) -> np.ndarray:
        """Which module has data for which selected frame.

        Parameters
        ----------
        $module_gaps

        Returns
        -------
        numpy.ndarray
            Boolean ``(module, frame)``.
        """
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

    def _label_reads(self, subtrain_index: str) -> Callable[[RowReader], Callable[[], None]]:
        """The label reads a labelled read needs, planned beside its pixels: the IDs
        that label the frames, and pulse IDs (checked across modules) when pulses are
        selected, as reading them first for the selection did."""
        wanted = [subtrain_index]
        if not is_all_pulses(self._pulses) and subtrain_index != "pulseId":
            wanted.append("pulseId")

        def plan(reader: RowReader) -> Callable[[], None]:
            finishes = [self.det._plan_labels(name, reader) for name in wanted]

            def finish() -> None:
                for done in finishes:
                    done()
            return finish
        return plan

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

    @shared
    def ndarray(self, *, fill_value: Any = None, out: np.ndarray | None = None, roi: Any = (),
                astype: Any = None, module_gaps: bool = False,
                decompress_threads: int | None = None) -> np.ndarray:
        """Read the selected frames of every selected module into one numpy array.

        Parameters
        ----------
        $fill_value
        $out
        $frame_roi
        $astype
        $module_gaps
        $decompress_threads

        Returns
        -------
        numpy.ndarray
            ``(module, frame, *entry)``; ``out`` when given.

        Raises
        ------
        ValueError
            ``out`` has the wrong shape, or ``fill_value`` does not fit the dtype.
        CorruptChunkError
            A compressed chunk of a source file cannot be decoded.
        FileFormatError
            A source file cannot be read.
        """
        return self._read(fill_value, out, roi, astype, module_gaps,
                          threads=max(1, decompress_threads) if decompress_threads else None)

    @shared
    def xarray(self, *, fill_value: Any = None, roi: Any = (), astype: Any = None,
               subtrain_index: str = "pulseId", unstack_pulses: bool = False,
               decompress_threads: int | None = None) -> xr.DataArray:
        """Read the selected frames into a labelled array.

        Parameters
        ----------
        $fill_value
        $frame_roi
        $astype
        $subtrain_index
        unstack_pulses : bool, default False
            Separate ``train`` and ``pulse`` axes (frames a train lacks read as
            ``fill_value``) instead of one ``train_pulse`` axis.
        $decompress_threads

        Returns
        -------
        xarray.DataArray
            ``(module, train_pulse, *pixel dims)`` indexed by (train, pulse) or
            ``(module, train, pulse, ...)`` with ``unstack_pulses``.

        Raises
        ------
        ValueError
            Duplicate (train, pulse) labels with ``unstack_pulses``, or a bad
            ``subtrain_index`` or ``fill_value``.
        """
        if subtrain_index not in SUBTRAIN_INDEXES:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        roi = as_roi(roi)
        arr = self._read(fill_value, None, roi, astype, False,
                         threads=max(1, decompress_threads) if decompress_threads else None,
                         also=self._label_reads(subtrain_index))
        levels = self._index_levels(subtrain_index)
        pix = dims_after_roi(pixel_dims(len(self.entry_shape)), roi)
        modules = np.asarray(self.modules)
        if unstack_pulses:
            return _unstacked(arr, levels, modules, pix)
        index = pd.MultiIndex.from_arrays(list(levels.values()), names=list(levels))
        coords = xr.Coordinates.from_pandas_multiindex(index, "train_pulse")
        return xr.DataArray(arr, dims=["module", "train_pulse"] + pix,
                            coords=coords).assign_coords(module=modules)

    @shared
    def dask_array(self, *, labelled: bool = False, subtrain_index: str = "pulseId",
                   fill_value: Any = None, astype: Any = None,
                   frames_per_chunk: int | None = None) -> Any:
        """A lazy dask array of ``ndarray()``, chunked by whole trains.

        Parameters
        ----------
        labelled : bool, default False
            Wrap it in an xarray.DataArray indexed by (train, pulse).
        $subtrain_index
        $fill_value
        $astype
        frames_per_chunk : int, optional
            Frames per chunk (default: about 1 GiB, at most 1024 frames).

        Returns
        -------
        dask.array.Array or xarray.DataArray
            ``(module, frame, *entry)``; nothing is read until computed.
        """
        dtype = np.dtype(astype) if astype is not None else self.dtype
        if frames_per_chunk is None:
            per_frame = dtype.itemsize * len(self.modules) * int(np.prod(self.entry_shape))
            frames_per_chunk = max(1, min(FRAMES_BYTES // max(per_frame, 1), 1024))
        arr = self._lazy(frames_per_chunk, fill_value, astype)
        if not labelled:
            return arr
        return self._labelled(arr, self._index_levels(subtrain_index), self.dimensions)

    @shared
    def detector_dask_array(self, subtrain_index: str = "pulseId", fill_value: Any = None,
                            astype: Any = None) -> xr.DataArray:
        """The lazy array ``det.get_dask_array`` returns.

        A hidden length-1 axis is put back (as ``dim_0``), and the frame index levels
        are named ``trainId`` ... ``pulseId`` (or ``cellId``).

        Parameters
        ----------
        $subtrain_index
        $fill_value
        $astype

        Returns
        -------
        xarray.DataArray
            Backed by dask, ``(module, train_pulse, dim_0, ...)``.
        """
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

    @shared
    def buffer_shape(self, module_gaps: bool = False, roi: Any = ()) -> tuple[int, ...]:
        """The shape ``ndarray()`` returns, e.g. to allocate an ``out`` array.

        Parameters
        ----------
        $module_gaps
        $frame_roi

        Returns
        -------
        tuple of int
            ``(modules, selected frames, *entry after roi)``.
        """
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
