"""Train-by-train iteration over all keys of a detector's modules.

Each train is read through the same frame-map engine as whole arrays (one
train's slice of the map), so it takes the direct-read path and labels frames
without building a pandas index per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .consistency import check_key
from .pulses import is_all_pulses, normalize_pulses, select_frames
from .reading import read_rows
from .xtdf_keydata import _unstacked, pixel_dims

if TYPE_CHECKING:
    from .base import MultimodDetectorBase


def iter_trains(det: MultimodDetectorBase, pulses: Any = None,
                require_all: bool = True) -> Iterator[tuple[int, dict[str, xr.DataArray]]]:
    """Yield (train ID, {key: DataArray with a module axis}) for each train."""
    sources = list(det.source_to_modno)
    modnos = np.asarray(list(det.source_to_modno.values()))
    key_modules: dict[str, list[int]] = {}
    key_group: dict[str, str] = {}
    for m, src in enumerate(sources):
        f0 = det.data.files_for_source(src)[0]
        for key in det.data.keys_for_source(src):
            key_modules.setdefault(key, []).append(m)
            key_group[key] = f0.key_group(src, key)
    for key, rows in key_modules.items():
        check_key(det.data, [sources[m] for m in rows], key)
    maps = {g: det.group_map(g) for g in set(key_group.values())}
    per_frame = {k for k in key_modules
                 if det.kind.xtdf and k.startswith(det.kind.per_frame_prefix)}
    labels = selected = None
    if per_frame:
        labels = det.frame_labels("pulseId")
        sel = normalize_pulses(np.s_[:] if pulses is None else pulses)
        selected = None if is_all_pulses(sel) else select_frames(sel, labels)
    offsets = det.frame_map.offsets()
    for t, tid in enumerate(det.train_ids):
        if require_all and not all((fm.counts[:, t] > 0).all() for fm in maps.values()):
            continue
        one = np.zeros(len(det.train_ids), bool)
        one[t] = True
        span = slice(int(offsets[t]), int(offsets[t + 1]))
        out: dict[str, xr.DataArray] = {}
        for key in sorted(key_modules):
            fm_all = maps[key_group[key]]
            rows = [m for m in key_modules[key] if fm_all.counts[m, t] > 0]
            if not rows:
                continue
            fmap = fm_all.select_trains(one).select_modules(rows)
            kd_shape, dtype = det.data.key_info(sources[rows[0]], key)
            if key in per_frame:
                out[key] = _read_frames(fmap, key, kd_shape, dtype, modnos[rows], tid,
                                        labels, None if selected is None else selected[span],
                                        span)
            else:
                out[key] = _read_entries(fmap, key, kd_shape, dtype, modnos[rows])
        yield tid, out


def _read_frames(fmap: Any, key: str, entry: tuple[int, ...], dtype: np.dtype,
                 modules: np.ndarray, tid: int, labels: Any, sel: np.ndarray | None,
                 span: slice) -> xr.DataArray:
    hidden = bool(entry) and entry[0] == 1
    entry = entry[1:] if hidden else entry
    n = int(fmap.train_counts()[0]) if sel is None else int(sel.sum())
    buf = np.empty((len(modules), n) + tuple(entry), dtype=dtype)
    read_rows(fmap, key, buf, list(range(len(modules))), sel, (0,) if hidden else ())
    take = (lambda a: a) if sel is None else (lambda a: a[sel])
    levels = {"train": np.full(n, tid, np.uint64)}
    if labels.gain is not None:
        levels["gain"] = take(labels.gain[span])
    levels["pulse"] = take(labels.inner[span])
    return _unstacked(buf, levels, modules, pixel_dims(len(entry)))


def _read_entries(fmap: Any, key: str, entry: tuple[int, ...], dtype: np.dtype,
                  modules: np.ndarray) -> xr.DataArray:
    count = int(fmap.train_counts()[0])
    buf = np.empty((len(modules), count) + tuple(entry), dtype=dtype)
    read_rows(fmap, key, buf, list(range(len(modules))))
    if count == 1:
        buf = buf[:, 0]
    dims = ["module"] + [f"dim_{i}" for i in range(buf.ndim - 1)]
    return xr.DataArray(buf, dims=dims, coords={"module": modules})
