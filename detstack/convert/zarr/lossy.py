"""Opt-in lossy storage of corrected (float) pixel data in zarr stores, with a stated bound.

Two modes, both applied to the values before the (lossless, standard) codecs, so the
store keeps its float32 dtype and every Zarr v3 reader (zarr-python, tensorstore, zarrs,
xarray) reads the rounded values with no detstack code; NaN and inf are kept as they are:

* ``photons``: each value becomes the nearest multiple of the photon energy E (in the
  data's unit, keV for EuXFEL corrected data): error <= E/2, plus float32 rounding of the
  result (relative 2**-24). On realistic corrected AGIPD frames ~18x.
* ``bits``: float32 mantissas rounded to ``keepbits`` bits (numcodecs' BitRound, round to
  nearest): relative error <= 2**-(keepbits + 1).

Storing photon counts as small integers with numcodecs' FixedScaleOffset would compress
~40x, but only zarr-python (through numcodecs.zarr3) can decode that codec, and integers
have no NaN for padding and bad pixels; rounded floats cost 2x in ratio and nothing else.
The mode, its parameters and its bound are in the view record (``keys[key]["lossy"]``)
and in the array's ``detstack_lossy`` attribute; ``error_bound`` gives verify the check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LOSSY_ATTR = "detstack_lossy"
QUANTIZE = "detstack.quantize"   # pseudo-codec name the chunk encoder applies first
FLOAT_EPS = 2.0**-24             # float32 round-to-nearest, relative


@dataclass(frozen=True)
class LossyMode:
    """A parsed lossy mode: ``photons`` with ``photon_energy``, or ``bits`` with ``keepbits``."""

    mode: str
    photon_energy: float | None = None
    keepbits: int | None = None

    def to_json(self) -> dict[str, Any]:
        kind, bound = self.bound()
        params = ({"photon_energy": self.photon_energy} if self.mode == "photons"
                  else {"keepbits": self.keepbits})
        desc = (f"values rounded to the nearest multiple of {self.photon_energy} (one photon)"
                if self.mode == "photons" else
                f"float32 mantissas rounded to {self.keepbits} bits")
        return {"mode": self.mode, **params,
                "error_bound": {"kind": kind, "bound": bound, "float_eps": FLOAT_EPS},
                "description": desc}

    def bound(self) -> tuple[str, float]:
        if self.mode == "photons":
            assert self.photon_energy is not None
            return "absolute", self.photon_energy / 2
        assert self.keepbits is not None
        return "relative", 2.0 ** -(self.keepbits + 1)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The rounded values (a new float array of the same dtype)."""
        if self.mode == "photons":
            e = np.float64(self.photon_energy)
            return (np.rint(values / e) * e).astype(values.dtype)
        from numcodecs import BitRound
        out = np.ascontiguousarray(values).copy()
        return np.asarray(BitRound(keepbits=int(self.keepbits or 0)).encode(out)
                          ).view(values.dtype).reshape(values.shape)


def parse_lossy(spec: str | Mapping[str, Any] | LossyMode) -> LossyMode:
    """``"photons:9.3"``, ``"bits:7"``, ``{"mode": "photons", "photon_energy": 9.3}``, ..."""
    if isinstance(spec, LossyMode):
        return spec
    if isinstance(spec, str):
        mode, _, arg = spec.partition(":")
        conf: dict[str, Any] = {"mode": mode}
        if mode == "photons":
            conf["photon_energy"] = arg
        elif mode == "bits":
            conf["keepbits"] = arg
    elif isinstance(spec, Mapping):
        conf = dict(spec)
    else:
        raise TypeError(f"lossy must be a string such as 'photons:9.3' or 'bits:7', or a "
                        f"mapping, not {spec!r}")
    mode = conf.get("mode")
    try:
        if mode == "photons":
            e = float(conf.get("photon_energy"))  # type: ignore[arg-type]
            if not math.isfinite(e) or e <= 0:
                raise ValueError
            return LossyMode("photons", photon_energy=e)
        if mode == "bits":
            raw = conf.get("keepbits")
            bits = int(raw)  # type: ignore[arg-type]
            if str(raw).strip() != str(bits) or not 1 <= bits <= 22:
                raise ValueError
            return LossyMode("bits", keepbits=bits)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"lossy mode {spec!r} is not understood: use 'photons:E' (E the photon "
                     "energy in the data's unit, > 0: error <= E/2) or 'bits:N' (N mantissa "
                     "bits kept, 1..22: relative error <= 2**-(N+1))")


def lossy_keys(keys: Mapping[str, tuple[np.dtype, bool]]) -> list[str]:
    """The keys a lossy mode applies to: float pixel keys ({key: (dtype, large)})."""
    return [k for k, (dtype, large) in keys.items() if large and np.dtype(dtype).kind == "f"]


def quantize_step(mode: LossyMode) -> dict[str, Any]:
    """The pseudo-codec entry placed first in a layout's codecs (never in zarr.json)."""
    return {"name": QUANTIZE, "configuration": mode.to_json()}


def error_bound(record: Mapping[str, Any], key: str) -> tuple[str, float] | None:
    """(``"absolute"`` | ``"relative"``, bound) for a key stored lossy, None if lossless.

    A value ``x`` stored as ``y`` is within the bound when
    ``|y - x| <= bound + FLOAT_EPS * |y|`` (absolute) or ``|y - x| <= bound * |x|``
    (relative); NaN must stay NaN (see ``within_bound``).
    """
    spec = record.get("keys", {}).get(key, {}).get("lossy")
    if not spec:
        return None
    eb = spec["error_bound"]
    return str(eb["kind"]), float(eb["bound"])


def within_bound(original: np.ndarray, stored: np.ndarray, kind: str, bound: float) -> np.ndarray:
    """Per value: does ``stored`` respect the bound for ``original``? (NaN == NaN)"""
    x = np.asarray(original, np.float64)
    y = np.asarray(stored, np.float64)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    with np.errstate(invalid="ignore"):
        err = np.abs(y - x)
        limit = bound + FLOAT_EPS * np.abs(y) if kind == "absolute" else bound * np.abs(x)
        return same | (err <= limit)
