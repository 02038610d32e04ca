"""Train-by-train iteration over all keys of a detector's modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from .pulses import select_frames
from .xtdf_keydata import pixel_dims

if TYPE_CHECKING:
    from .base import MultimodDetectorBase


def iter_trains(det: MultimodDetectorBase, pulses: Any = None,
                require_all: bool = True) -> Iterator[tuple[int, dict[str, xr.DataArray]]]:
    """Yield (train ID, {key: DataArray with a module axis}) for each train."""
    sources = list(det.source_to_modno)
    keys = {s: sorted(det.data.keys_for_source(s)) for s in sources}
    groups = {s: sorted({det.data.files_for_source(s)[0].key_group(s, k) for k in keys[s]})
              for s in sources}
    maps = {g: det.group_map(g) for s in sources for g in groups[s]}
    labels = None
    if det.kind.xtdf:
        labels = det.frame_labels("pulseId") if pulses is not None else None
    offsets = det.frame_map.offsets()
    for t, tid in enumerate(det.train_ids):
        complete = all(maps[g].counts[m, t] > 0 for m, s in enumerate(sources) for g in groups[s])
        if require_all and not complete:
            continue
        per_key: dict[str, list[tuple[int, xr.DataArray]]] = {}
        for m, src in enumerate(sources):
            for key in keys[src]:
                group = det.data.files_for_source(src)[0].key_group(src, key)
                fmap = maps[group]
                count = int(fmap.counts[m, t])
                if count == 0:
                    continue
                f = fmap.files[int(fmap.file[m, t])]
                first = int(fmap.first[m, t])
                ds = f.h5[f.dataset_path(src, key)]
                if det.kind.xtdf and key.startswith(det.kind.per_frame_prefix):
                    sel = np.ones(count, bool)
                    if labels is not None:
                        span = slice(int(offsets[t]), int(offsets[t]) + count)
                        sel = select_frames(det.normalized_pulses(pulses), _slice_labels(labels, span))
                    arr = _frames(ds, first, count, sel, det, tid, labels, offsets[t])
                else:
                    arr = _entry(ds, first, count)
                per_key.setdefault(key, []).append((det.source_to_modno[src], arr))
        yield tid, {k: _stack(v) for k, v in per_key.items()}


def _slice_labels(labels: Any, span: slice) -> Any:
    return type(labels)(labels.train[span], labels.position[span], labels.inner[span],
                        None if labels.gain is None else labels.gain[span])


def _entry(ds: Any, first: int, count: int) -> xr.DataArray:
    data = ds[first] if count == 1 else ds[first:first + count]
    return xr.DataArray(data)


def _frames(ds: Any, first: int, count: int, sel: np.ndarray, det: MultimodDetectorBase,
            tid: int, labels: Any, offset: int) -> xr.DataArray:
    data = ds[first:first + count]
    if data.ndim > 1 and data.shape[1] == 1:
        data = data[:, 0]
    data = data[sel]
    lab = det.frame_labels("pulseId") if labels is None else labels
    span = slice(int(offset), int(offset) + count)
    inner = lab.inner[span][sel]
    levels = {"train": np.full(len(inner), tid, np.uint64)}
    if lab.gain is not None:
        levels["gain"] = lab.gain[span][sel]
    levels["pulse"] = inner
    pix = pixel_dims(data.ndim - 1)
    index = pd.MultiIndex.from_arrays(list(levels.values()), names=list(levels))
    coords = xr.Coordinates.from_pandas_multiindex(index, "train_pulse")
    arr = xr.DataArray(data, dims=["train_pulse"] + pix, coords=coords)
    return arr.unstack("train_pulse").transpose(*levels, *pix)


def _stack(items: list[tuple[int, xr.DataArray]]) -> xr.DataArray:
    modnos = [m for m, _ in items]
    return xr.concat([a for _, a in items], dim=pd.Index(modnos, name="module"))
