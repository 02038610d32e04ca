"""Copy rows from the module files into one preallocated output array.

The plan comes from the frame map (``FrameMap.runs``): each run is one read of
contiguous rows into contiguous output rows, so the cost is one HDF5 call per
block, not per frame.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

from ..frames import FrameMap


def default_fill(dtype: np.dtype) -> float | int:
    return np.nan if np.dtype(dtype).kind in "fc" else 0


def checked_fill(fill_value: float | int | None, dtype: np.dtype) -> Any:
    """The fill value as a scalar of ``dtype``; NaN into integers is refused."""
    dtype = np.dtype(dtype)
    if fill_value is None:
        fill_value = default_fill(dtype)
    if dtype.kind in "iub" and isinstance(fill_value, float) and not np.isfinite(fill_value):
        raise ValueError(f"cannot use fill value {fill_value} for integer dtype {dtype}: "
                         "pass an integer fill_value, or astype=np.float32")
    return dtype.type(fill_value)


def roi_shape(entry_shape: tuple[int, ...], roi: tuple[Any, ...]) -> tuple[int, ...]:
    """Shape of one entry after numpy-style ``roi`` indexing, without allocating."""
    return np.broadcast_to(np.empty((), bool), entry_shape)[roi].shape


def _keep_axes(src_index: tuple[Any, ...], out_entry: tuple[int, ...]
               ) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """Integers become length-1 slices, and the output view keeps those axes.

    HDF5 copies fast only when file and memory selections have the same shape;
    an integer index drops an axis and sends every read down its slow path.
    """
    if not any(isinstance(i, (int, np.integer)) for i in src_index):
        return src_index, out_entry
    index: list[Any] = []
    shape: list[int] = []
    rest = iter(out_entry)
    for i in src_index:
        if isinstance(i, (int, np.integer)):
            index.append(slice(int(i), int(i) + 1) if i != -1 else slice(-1, None))
            shape.append(1)
        else:
            index.append(i)
            shape.append(next(rest))
    shape.extend(rest)
    return tuple(index), tuple(shape)


def read_rows(fmap: FrameMap, key: str, out: np.ndarray, slots: list[int],
              selected: np.ndarray | None = None, src_index: tuple[Any, ...] = (),
              per_train: bool = False, threads: int = 1) -> None:
    """Fill ``out[slots[m], rows]`` with module ``m``'s rows of ``key``.

    ``src_index`` is applied to every source row after the row index (ROI,
    hidden length-1 axes); HDF5 converts dtypes on the way.
    """
    src_index, kept_shape = _keep_axes(src_index, out.shape[2:])

    def one_module(m: int) -> None:
        dest = out[slots[m]].reshape((out.shape[1],) + kept_shape)
        datasets: dict[int, h5py.Dataset] = {}
        for run in fmap.runs(m, selected, per_train):
            ds = datasets.get(run.file)
            if ds is None:
                f = fmap.files[run.file]
                ds = datasets[run.file] = f.h5[f.dataset_path(fmap.sources[m], key)]
            if run.length == 0:
                continue
            ds.read_direct(dest, source_sel=(slice(run.src_start, run.src_start + run.length),)
                           + src_index,
                           dest_sel=np.s_[run.dst_start:run.dst_start + run.length])

    if threads > 1 and fmap.n_modules > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_module, range(fmap.n_modules)))
    else:
        for m in range(fmap.n_modules):
            one_module(m)
