"""Detector data with bad pixels (non-zero mask bits) replaced by a chosen value."""

from __future__ import annotations

from copy import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from .base import MultimodDetectorBase


class MaskedKeyData:
    """A key read together with the detector's mask key."""

    def __init__(self, det: MultimodDetectorBase, key: str, mask_bits: Any,
                 masked_value: Any) -> None:
        mask_key = det.kind.mask_key
        if mask_key not in det:
            raise RuntimeError(f"masked_data() needs {mask_key!r} in every module of "
                               f"{det.detector_name}, which is missing: is this raw instead of "
                               "corrected data?")
        self.det = det
        self.key = key
        self._data = det[key]
        self._mask = det[mask_key]
        bits = mask_bits
        if bits is not None and not isinstance(bits, (int, np.integer)):
            bits = int(np.bitwise_or.reduce(np.asarray(list(bits), dtype=np.uint64)))
        self.mask_bits = bits
        self.masked_value = masked_value

    def __repr__(self) -> str:
        return (f"<Masked {self.key!r} detector data for {len(self._data.modules)} modules>")

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _with(self, data: Any, mask: Any) -> MaskedKeyData:
        new = copy(self)
        new._data, new._mask = data, mask
        return new

    def select_trains(self, trains: Any) -> MaskedKeyData:
        return self._with(self._data.select_trains(trains), self._mask.select_trains(trains))

    def select_pulses(self, pulses: Any) -> MaskedKeyData:
        return self._with(self._data.select_pulses(pulses), self._mask.select_pulses(pulses))

    def _bad(self, roi: Any, module_gaps: bool) -> np.ndarray:
        mask = self._mask.ndarray(roi=roi, module_gaps=module_gaps)
        if self.mask_bits is None:
            return mask != 0
        return (mask & np.asarray(self.mask_bits).astype(mask.dtype)) != 0

    def ndarray(self, *, roi: Any = (), module_gaps: bool = False) -> np.ndarray:
        data = self._data.ndarray(roi=roi, module_gaps=module_gaps)
        data[self._bad(roi, module_gaps)] = self.masked_value
        return data

    def xarray(self, *, roi: Any = ()) -> xr.DataArray:
        arr = self._data.xarray(roi=roi)
        arr.values[self._bad(roi, False)] = self.masked_value
        return arr
