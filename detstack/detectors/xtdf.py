"""AGIPD, DSSC and LPD: detectors recording many pulses per train, one row per frame."""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any

import numpy as np
import xarray as xr

from ..run.collection import DataCollection
from . import kinds
from .base import MultimodDetectorBase
from .keydata import as_roi
from .pulses import FrameLabels, label_frames, normalize_pulses, read_inner_ids
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

    def select_trains(self, trains: Any) -> XtdfDetectorBase:
        new = super().select_trains(trains)
        assert isinstance(new, XtdfDetectorBase)
        new._labels = {}
        return new

    def frame_labels(self, subtrain_index: str = "pulseId") -> FrameLabels:
        """Train, position and pulse/cell ID of every frame (read once, then kept)."""
        if subtrain_index not in self._labels:
            key = self.kind.pulse_key if subtrain_index == "pulseId" else self.kind.cell_key
            shape, _ = self.data.key_info(next(iter(self.source_to_modno)), key)
            src_index = (0,) if shape[:1] == (1,) else ()
            inner = read_inner_ids(self.frame_map, key, subtrain_index, src_index)
            self._labels[subtrain_index] = label_frames(self.frame_map, inner, self.parallel_gain)
        return self._labels[subtrain_index]

    def get_array(self, key: str, pulses: Any = np.s_[:], unstack_pulses: bool = True, *,
                  fill_value: Any = None, subtrain_index: str = "pulseId", roi: Any = (),
                  astype: Any = None) -> xr.DataArray:
        """Labelled array of one key, modules first, optionally one train/pulse axis each."""
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
        """Lazy labelled array, chunked by whole trains."""
        if subtrain_index not in SUBTRAIN_INDEXES:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        kd = self[key]
        if isinstance(kd, XtdfImageKeyData):
            return kd.detector_dask_array(subtrain_index, fill_value=fill_value, astype=astype)
        return kd.dask_array(labelled=True, fill_value=fill_value, astype=astype)

    def trains(self, pulses: Any = np.s_[:], require_all: bool = True
               ) -> Iterator[tuple[int, dict[str, xr.DataArray]]]:
        """Iterate over trains: {key: labelled array with a module axis}."""
        normalize_pulses(pulses)  # fail early on a bad selection
        return iter_trains(self, pulses, require_all)

    def masked_data(self, key: str | None = None, *, mask_bits: Any = None,
                    masked_value: Any = np.nan) -> Any:
        """Key data like ``det[key]`` whose reads replace bad pixels (non-zero mask, or
        any of ``mask_bits``, an int or a list of ints) by ``masked_value``."""
        from .masked import masked_key_data
        return masked_key_data(self, key, mask_bits, masked_value)


class AGIPD1M(XtdfDetectorBase):
    """AGIPD-1M: 16 modules of 512 x 128 pixels."""

    kind = kinds.AGIPD1M


class AGIPD500K(XtdfDetectorBase):
    """AGIPD-500K: 8 modules of 512 x 128 pixels."""

    kind = kinds.AGIPD500K


class DSSC1M(XtdfDetectorBase):
    """DSSC-1M: 16 modules of 128 x 512 pixels."""

    kind = kinds.DSSC1M


class LPD1M(XtdfDetectorBase):
    """LPD-1M: 16 modules of 256 x 256 pixels; optionally parallel-gain data."""

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
    """LPD Solo: a single LPD module."""

    kind = kinds.LPD_SOLO
