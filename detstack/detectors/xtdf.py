"""AGIPD, DSSC and LPD: detectors recording many pulses per train, one row per frame."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from typing import Any

import numpy as np
import xarray as xr

from ..run.collection import DataCollection
from . import kinds
from .base import MultimodDetectorBase
from .class_docs import xtdf_doc
from .keydata import as_roi
from .label_memo import LabelMemo
from .pulses import (
    FrameLabels,
    checked_inner_ids,
    label_frames,
    normalize_pulses,
    plan_inner_ids,
    stage_positions,
)
from .reading import RowReader
from .train_iter import iter_trains
from .xtdf_keydata import SUBTRAIN_INDEXES, XtdfImageKeyData


class XtdfDetectorBase(MultimodDetectorBase):
    """Shared reader API of the XTDF detectors."""

    parallel_gain = False

    def __init__(self, data: DataCollection, detector_name: str | None = None,
                 modules: Container[int] | None = None, *, min_modules: int = 1,
                 raw: bool | None = None) -> None:
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw)
        self._labels: dict[str, FrameLabels] = {}
        self._positions: np.ndarray | None = None
        self._label_memo = LabelMemo()   # shared with the detectors select_trains makes

    def select_trains(self, trains: Any) -> XtdfDetectorBase:
        new = super().select_trains(trains)
        assert isinstance(new, XtdfDetectorBase)
        new._labels = {}
        new._positions = None
        return new

    select_trains.__doc__ = MultimodDetectorBase.select_trains.__doc__

    def frame_labels(self, subtrain_index: str = "pulseId") -> FrameLabels:
        """Train, position and pulse/cell ID of every frame (read once, then kept).

        Parameters
        ----------
        subtrain_index : {'pulseId', 'cellId'}, default 'pulseId'
            Which ID labels the frames within a train.

        Returns
        -------
        FrameLabels
            Per-frame train IDs, positions in the train and pulse (or cell) IDs.

        Raises
        ------
        InconsistentModulesError
            Modules recorded different pulse/cell IDs for the same frame.
        """
        if subtrain_index not in self._labels:
            reader = RowReader()
            finish = self._plan_labels(subtrain_index, reader)
            reader.run()
            finish()
        return self._labels[subtrain_index]

    def _plan_labels(self, subtrain_index: str, reader: RowReader) -> Callable[[], None]:
        """Plan reading the IDs behind ``frame_labels(subtrain_index)`` into ``reader``
        (with the pixels of a read: one round of jobs); the function returned, called
        once ``reader`` has run, checks them and keeps the labels."""
        if subtrain_index in self._labels:
            return lambda: None
        fmap = self.frame_map
        known = self._label_memo.get(subtrain_index, fmap.train_ids, fmap.train_counts())
        if known is not None:
            self._labels[subtrain_index] = label_frames(fmap, known, self.parallel_gain)
            return lambda: None
        key = self.kind.pulse_key if subtrain_index == "pulseId" else self.kind.cell_key
        shape, _ = self.data.key_info(next(iter(self.source_to_modno)), key)
        src_index = (0,) if shape[:1] == (1,) else ()
        ids = plan_inner_ids(fmap, key, src_index, reader)

        def finish() -> None:
            inner = checked_inner_ids(fmap, key, subtrain_index, ids)
            self._label_memo.put(subtrain_index, fmap.train_ids, fmap.offsets(), inner)
            self._labels[subtrain_index] = label_frames(fmap, inner, self.parallel_gain)
        return finish

    def _frame_positions(self) -> np.ndarray:
        """Every frame's position within its train (within its gain stage for LPD's
        parallel gain): what ``by_index`` pulse selections pick, from the frame map."""
        if self._positions is None:
            self._positions = stage_positions(self.frame_map, self.parallel_gain)[0]
        return self._positions

    def get_array(self, key: str, pulses: Any = np.s_[:], unstack_pulses: bool = True, *,
                  fill_value: Any = None, subtrain_index: str = "pulseId", roi: Any = (),
                  astype: Any = None) -> xr.DataArray:
        """Read one key of every selected module into a labelled array.

        Parameters
        ----------
        key : str
            The key to read, e.g. ``'image.data'`` (pixels), ``'image.mask'``,
            ``'image.cellId'``, or a per-train key such as ``'header.pulseCount'``.
        pulses : slice, int, array, by_id[...] or by_index[...], default all
            Frames to keep from each train: ``by_id`` selects pulse IDs,
            ``by_index`` (or a plain slice/array) positions within each train.
            Ignored for per-train keys.
        unstack_pulses : bool, default True
            ``True``: separate ``train`` and ``pulse`` axes (frames a train lacks
            read as ``fill_value``); ``False``: one ``train_pulse`` axis holding only
            the frames that exist, labelled by (train ID, pulse ID).
        fill_value : int or float, optional
            Value for absent modules, trains and frames (default NaN for floats,
            0 for integers).
        subtrain_index : {'pulseId', 'cellId'}, default 'pulseId'
            Label the frames of a train by pulse ID (matches other devices) or by
            memory cell ID (the detector's storage cell).
        roi : tuple of slices/ints, optional
            Region read from each module's frame, e.g. ``np.s_[10:60, 100:200]``.
            For raw AGIPD the frame is ``(data_gain, y, x)``: ``roi=np.s_[0]`` keeps
            only the ADC values and drops the ``data_gain`` axis.
        astype : dtype, optional
            Dtype of the result (default: the stored dtype).

        Returns
        -------
        xarray.DataArray
            ``(module, train, pulse, *entry)`` (``pulse`` named ``cell`` with
            ``subtrain_index='cellId'``); per-train keys ``(module, train, *entry)``.
            Coordinates: module numbers, train IDs, pulse/cell IDs.

        Raises
        ------
        PropertyNameError
            A module has no such key.
        ValueError
            ``subtrain_index`` is not ``'pulseId'`` or ``'cellId'``, a negative
            ``by_id`` value, or a ``fill_value`` that ``astype`` cannot hold.
        InconsistentModulesError
            Modules disagree on the pulse/cell IDs of a train.
        FileFormatError
            A source file cannot be read (truncated, missing from a view).
        """
        if subtrain_index not in SUBTRAIN_INDEXES:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        kd = self[key]
        if isinstance(kd, XtdfImageKeyData):
            return kd.select_pulses(pulses).xarray(
                fill_value=fill_value, roi=as_roi(roi), astype=astype,
                subtrain_index=subtrain_index, unstack_pulses=unstack_pulses)
        return kd.xarray(fill_value=fill_value, roi=as_roi(roi), astype=astype)

    def get_dask_array(self, key: str, subtrain_index: str = "pulseId",
                       fill_value: Any = None, astype: Any = None) -> xr.DataArray:
        """A lazy labelled array of one key: nothing is read until you compute.

        Parameters
        ----------
        key : str
            The key to read, e.g. ``'image.data'``.
        subtrain_index : {'pulseId', 'cellId'}, default 'pulseId'
            Label frames by pulse ID or by memory cell ID.
        fill_value : int or float, optional
            Value for absent modules and frames (default NaN for floats, 0 for
            integers).
        astype : dtype, optional
            Dtype of the result (declared up front, so dask knows it).

        Returns
        -------
        xarray.DataArray
            Backed by a dask array chunked by whole trains: per-frame keys are
            ``(module, train_pulse, dim_0, ...)`` with a (train ID, pulse ID) index
            on ``train_pulse``; per-train keys ``(module, trainId, *entry)``.

        Raises
        ------
        PropertyNameError
            A module has no such key.
        ValueError
            ``subtrain_index`` is not ``'pulseId'`` or ``'cellId'``.
        """
        if subtrain_index not in SUBTRAIN_INDEXES:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        kd = self[key]
        if isinstance(kd, XtdfImageKeyData):
            return kd.detector_dask_array(subtrain_index, fill_value=fill_value, astype=astype)
        return kd.dask_array(labelled=True, fill_value=fill_value, astype=astype)

    def trains(self, pulses: Any = np.s_[:], require_all: bool = True
               ) -> Iterator[tuple[int, dict[str, xr.DataArray]]]:
        """Iterate over the selected trains, reading one train at a time.

        Parameters
        ----------
        pulses : slice, int, array, by_id[...] or by_index[...], default all
            Frames to keep from each train (as in :meth:`get_array`).
        require_all : bool, default True
            Skip trains where any selected module has no data.

        Returns
        -------
        iterator of (int, dict of str to xarray.DataArray)
            ``(train ID, data)`` per train; ``data`` holds every key of the detector:
            per-frame keys ``(module, train, pulse, *entry)`` with one train,
            per-train keys ``(module, *entry)``, for the modules present in that
            train.

        Raises
        ------
        ValueError
            ``pulses`` is not a valid selection (raised before the first train).
        """
        normalize_pulses(pulses)  # fail early on a bad selection
        return iter_trains(self, pulses, require_all)


class AGIPD1M(XtdfDetectorBase):
    __doc__ = xtdf_doc("AGIPD1M", "SPB_DET_AGIPD1M-1", """
        AGIPD-1M: 16 modules of 512 x 128 pixels, many frames (pulses) per train.

        All modules of a run (or view) are read as one array per key, modules first:
        ``get_array("image.data")`` is ``(module, train, pulse, data_gain, slow_scan,
        fast_scan)`` for raw data (``data_gain``: ADC value, gain bits) and ``(module,
        train, pulse, slow_scan, fast_scan)`` for corrected data. ``det[key]`` gives the
        key's data object (``.ndarray()``, ``.xarray()``, ``.dask_array()``).""")

    kind = kinds.AGIPD1M


class AGIPD500K(XtdfDetectorBase):
    __doc__ = xtdf_doc("AGIPD500K", "HED_DET_AGIPD500K2G", """
        AGIPD-500K: 8 modules of 512 x 128 pixels; otherwise like :class:`AGIPD1M`.""")

    kind = kinds.AGIPD500K


class DSSC1M(XtdfDetectorBase):
    __doc__ = xtdf_doc("DSSC1M", "SCS_DET_DSSC1M-1", """
        DSSC-1M: 16 modules of 128 x 512 pixels; the reader API of :class:`AGIPD1M`.""")

    kind = kinds.DSSC1M


class LPD1M(XtdfDetectorBase):
    __doc__ = xtdf_doc("LPD1M", "FXE_DET_LPD1M-1", """
        LPD-1M: 16 modules of 256 x 256 pixels; the reader API of :class:`AGIPD1M`.""",
                       parallel_gain=True)

    kind = kinds.LPD1M

    def __init__(self, data: DataCollection, detector_name: str | None = None,
                 modules: Container[int] | None = None, *, min_modules: int = 1,
                 raw: bool | None = None, parallel_gain: bool = False) -> None:
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw)
        self.parallel_gain = parallel_gain
        if parallel_gain and (self.frame_map.train_counts() % 3).any():
            raise ValueError("parallel_gain=True needs the frames in each train to be "
                             "divisible by 3")


class LPDSolo(LPD1M):
    __doc__ = xtdf_doc("LPDSolo", "FXE_DET_LPD_SOLO-1", """
        LPD Solo: a single LPD module of 256 x 256 pixels; the API of :class:`LPD1M`.""",
                       parallel_gain=True)

    kind = kinds.LPD_SOLO
