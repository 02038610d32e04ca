"""Train timestamps from ``INDEX/timestamp`` (format >= 1.0 files)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .collection import DataCollection


def _raw_timestamps(dc: DataCollection) -> np.ndarray:
    """uint64 ns since the epoch per selected train (0: unknown)."""
    tids = dc.train_ids_array
    out = np.zeros(len(tids), np.uint64)
    missing = np.ones(len(tids), bool)
    for f in dc.files:
        if not missing.any():
            break
        if "INDEX/timestamp" not in f.h5:
            continue
        stamps = np.asarray(f.h5["INDEX/timestamp"][:], dtype=np.uint64)
        positions = f._positions
        usable = positions < len(stamps)
        if not dc.inc_suspect_trains:
            usable &= f.validity
        file_tids, file_stamps = f.train_ids[usable], stamps[positions[usable]]
        _, at, in_file = np.intersect1d(tids, file_tids, return_indices=True)
        take = missing[at]
        out[at[take]] = file_stamps[in_file[take]]
        missing[at[take]] = False
    return out


def train_timestamps(dc: DataCollection, *, labelled: bool, pydatetime: bool,
                     euxfel_local_time: bool) -> Any:
    if euxfel_local_time and not (labelled or pydatetime):
        raise ValueError("euxfel_local_time=True needs labelled=True or pydatetime=True")
    arr = _raw_timestamps(dc).astype("datetime64[ns]")
    arr[arr == np.datetime64(0, "ns")] = np.datetime64("NaT")
    if labelled:
        import pandas as pd
        series = pd.Series(arr, index=dc.train_ids_array).dt.tz_localize("UTC")
        return series.dt.tz_convert("Europe/Berlin") if euxfel_local_time else series
    if pydatetime:
        from zoneinfo import ZoneInfo
        result = []
        for value in arr:
            if np.isnat(value):
                result.append(None)
                continue
            when = value.astype("datetime64[us]").item().replace(tzinfo=dt.UTC)
            result.append(when.astimezone(ZoneInfo("Europe/Berlin"))
                          if euxfel_local_time else when)
        return result
    return arr
