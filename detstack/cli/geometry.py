"""One frame of every module placed where the modules sit: the real detector geometry
from ``extra_geom`` when it is installed (``detstack[geom]``), else a plain tiling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Approximate quadrant positions (extra_geom's units: pixels for AGIPD, mm for LPD/DSSC)
# that give a recognisable detector picture; real geometries come from a geometry file.
QUAD_POSITIONS: dict[str, list[tuple[float, float]]] = {
    "AGIPD1M": [(-525, 625), (-550, -10), (520, -160), (542.5, 475)],
    "LPD1M": [(11.4, 299), (-11.5, 8), (254.5, -16), (278.5, 275)],
    "DSSC1M": [(-124.1, 3.1), (-133.1, -110.6), (1.0, -125.2), (4.5, -4.9)],
}


def assemble(kind: str, frames: np.ndarray) -> tuple[np.ndarray, str]:
    """(2-D image, how it was placed) of ``frames`` shaped (module slot, y, x)."""
    try:
        image = _extra_geom(kind, frames)
    except ImportError:
        return tile(frames), "tiled (pip install 'detstack[geom]' for the detector geometry)"
    if image is not None:
        return image, "extra_geom"
    return tile(frames), f"tiled (no built-in {kind} geometry)"


def _extra_geom(kind: str, frames: np.ndarray) -> np.ndarray | None:
    import extra_geom

    if kind in QUAD_POSITIONS:
        cls = {"AGIPD1M": extra_geom.AGIPD_1MGeometry, "LPD1M": extra_geom.LPD_1MGeometry,
               "DSSC1M": extra_geom.DSSC_1MGeometry}[kind]
        geom = cls.from_quad_positions(quad_pos=QUAD_POSITIONS[kind])
    elif kind == "AGIPD500K":
        geom = extra_geom.AGIPD_500K2GGeometry.from_origin()
    else:
        return None
    image, _ = geom.position_modules(frames.astype(np.float32))
    return np.asarray(image)


def tile(frames: np.ndarray) -> np.ndarray:
    """Modules side by side in a grid about as wide as it is high, NaN between them."""
    n, h, w = frames.shape
    cols = min(n, max(1, round(math.sqrt(n * h / w))))
    rows = math.ceil(n / cols)
    gap = max(2, min(h, w) // 16)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = frames[i]
    return out


def frames_in_train(det: Any, train_id: int) -> int:
    """Frames (pulses or memory cells) the detector recorded in one train."""
    tids = det.frame_map.train_ids
    pos = int(np.searchsorted(tids, np.uint64(train_id)))
    if pos >= len(tids) or int(tids[pos]) != train_id:
        return 0
    return int(det.frame_map.train_counts()[pos]) * det._frames_per_entry


def frame_of(det: Any, train_id: int, pulse: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(module slot, y, x) float frame ``pulse`` (position in the train) of one train."""
    from ..errors import EmptySelectionError
    from ..run.selection import by_id, by_index

    n_frames = frames_in_train(det, train_id)
    if pulse >= n_frames:
        raise EmptySelectionError(
            f"--pulse {pulse} is beyond the {n_frames} frames of train {train_id}; pick "
            f"--pulse 0 to {n_frames - 1}" if n_frames else
            f"train {train_id} has no frames of {det.detector_name}; pick another --train "
            f"({det.train_ids[0]}-{det.train_ids[-1]})")
    one = det.select_trains(by_id[[train_id]])
    key = det.kind.main_key
    if det.kind.xtdf:
        arr = one.get_array(key, pulses=by_index[pulse:pulse + 1]).isel(pulse=0)
    else:
        arr = one.get_array(key).isel(cell=pulse)
    arr = arr.isel(train=0)
    if "data_gain" in arr.dims:
        arr = arr.isel(data_gain=0)
    data = np.asarray(arr.values, dtype=np.float32)
    frames = np.full((det.n_modules,) + data.shape[1:], np.nan, np.float32)
    for row, m in enumerate(arr["module"].values):
        frames[det.module_slot(int(m))] = data[row]
    label: dict[str, Any] = {"train": train_id, "frame": pulse, "key": key}
    if "pulse" in arr.coords:
        label["pulse_id"] = int(arr["pulse"].values)
    return frames, label
