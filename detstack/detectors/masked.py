"""Detector data with bad pixels (non-zero mask bits) replaced by a chosen value.

``det.masked_data()`` returns a key data object of the same kind as ``det[key]``
(selections, ``ndarray``, ``xarray``, ``dask_array``, ``split_trains``... all work),
whose every read also reads the mask key with the same trains, pulses, ROI and module
gaps, and overwrites the bad pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .keydata import MultimodKeyData
from .xtdf_keydata import XtdfImageKeyData

if TYPE_CHECKING:
    from .base import MultimodDetectorBase

MASKED_DOC = """{summary}

Parameters
----------
det : detector
    The detector object the key belongs to.
key : str
    The key to read, e.g. ``'{key}'``.
mask_key : str
    The key holding the mask, e.g. ``'{mask}'``.
mask_bits : int, list of int or None
    Mask bits that mark a pixel bad (None: any non-zero mask value).
masked_value : scalar
    What bad pixels read as.

Raises
------
PropertyNameError
    A module has no such key.
"""


class _Masked:
    """Mixin over a key data class: reads apply the mask."""

    _mask_key: str
    _mask_bits: int | None
    _masked_value: Any

    def __init__(self, det: MultimodDetectorBase, key: str, mask_key: str, mask_bits: Any,
                 masked_value: Any) -> None:
        super().__init__(det, key)  # type: ignore[call-arg]  # the key data class
        self._mask_key = mask_key
        if mask_bits is not None and not isinstance(mask_bits, (int, np.integer)):
            mask_bits = int(np.bitwise_or.reduce(np.asarray(list(mask_bits), dtype=np.uint64)))
        self._mask_bits = None if mask_bits is None else int(mask_bits)
        self._masked_value = masked_value

    @property
    def mask_bits(self) -> int | None:
        """The mask bits that mark a pixel bad, as one int (None: any non-zero bit)."""
        return self._mask_bits

    @property
    def masked_value(self) -> Any:
        """What bad pixels read as."""
        return self._masked_value

    def __repr__(self) -> str:
        return f"<Masked {self.key!r} detector data for {len(self.modules)} modules>"  # type: ignore[attr-defined]

    def _mask_keydata(self) -> Any:
        return self.det[self._mask_key]  # type: ignore[attr-defined]

    def _bad_pixels(self, roi: Any, module_gaps: bool) -> np.ndarray:
        mask = self._mask_keydata()._read(None, None, roi, None, module_gaps)
        if self._mask_bits is None:
            return mask != 0
        return (mask & np.asarray(self._mask_bits).astype(mask.dtype)) != 0

    def _read(self, fill_value: Any, out: np.ndarray | None, roi: Any, astype: Any,
              module_gaps: bool, threads: int = 1, also: Any = None) -> np.ndarray:
        bad = self._bad_pixels(roi, module_gaps)  # first: 1 byte/pixel at peak, not 4
        data = super()._read(fill_value, out, roi, astype, module_gaps,  # type: ignore[misc]
                             threads, also)
        data[bad] = self._masked_value
        return data


class MaskedKeyData(_Masked, MultimodKeyData):
    __doc__ = MASKED_DOC.format(
        summary="A per-train key (JUNGFRAU ``data.adc``...) read with its mask applied.",
        key="data.adc", mask="data.mask")


class MaskedXtdfKeyData(_Masked, XtdfImageKeyData):
    __doc__ = MASKED_DOC.format(
        summary="An ``image.*`` key read with ``image.mask`` applied (same pulse selection).",
        key="image.data", mask="image.mask")

    def _mask_keydata(self) -> Any:
        return self.det[self._mask_key].select_pulses(self._pulses)


def masked_key_data(det: MultimodDetectorBase, key: str | None, mask_bits: Any,
                    masked_value: Any) -> MaskedKeyData | MaskedXtdfKeyData:
    """``det.masked_data(key, mask_bits=, masked_value=)``."""
    key = key or det.kind.main_key
    mask_key = det.kind.mask_key
    if mask_key not in det:
        raise RuntimeError(f"masked_data() needs {mask_key!r} in every module of "
                           f"{det.detector_name}, which is missing: is this raw instead of "
                           "corrected data?")
    kd = det[key]
    if isinstance(kd, XtdfImageKeyData):
        return MaskedXtdfKeyData(det, key, mask_key, mask_bits, masked_value)
    if det.kind.xtdf:
        raise ValueError(f"masked_data() works on per-frame keys ({det.kind.per_frame_prefix}*) "
                         f"of {type(det).__name__}, not {key!r}")
    return MaskedKeyData(det, key, mask_key, mask_bits, masked_value)
