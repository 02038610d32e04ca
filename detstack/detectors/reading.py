"""Copy rows from the module files into one preallocated output array.

The plan comes from the frame map (``FrameMap.runs``): each run is one read of
contiguous rows into contiguous output rows, so the cost is one HDF5 call per
block, not per frame.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

from ..frames import FrameMap
from ..layout import RowLayout, row_layout
from ..run.handles import POOL

DEFAULT_THREADS = min(8, 2 * (os.cpu_count() or 1))


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


def _whole_rows(src_index: tuple[Any, ...], ds: h5py.Dataset) -> bool:
    """True if ``src_index`` keeps every byte of a row (nothing, or ``0:1`` on length-1 axes)."""
    for axis, i in enumerate(src_index, start=1):
        if axis >= ds.ndim or not isinstance(i, slice):
            return False
        if i.indices(ds.shape[axis]) != (0, ds.shape[axis], 1):
            return False
    return True


class _DirectReader:
    """Copies plain byte ranges of files into arrays with ``os.preadv`` (no HDF5 lock)."""

    PIECE = 32 << 20

    def __init__(self) -> None:
        self.jobs: list[tuple[str, int, memoryview]] = []
        self._layouts: dict[tuple[str, str], RowLayout | None] = {}

    def layout(self, path: str, dset_path: str, ds: h5py.Dataset) -> RowLayout | None:
        key = (path, dset_path)
        if key not in self._layouts:
            self._layouts[key] = row_layout(ds)
        return self._layouts[key]

    def plan(self, path: str, pieces: list[tuple[int, int]], dest: memoryview) -> None:
        pos = 0
        for offset, nbytes in pieces:
            for start in range(0, nbytes, self.PIECE):
                n = min(self.PIECE, nbytes - start)
                self.jobs.append((path, offset + start, dest[pos + start:pos + start + n]))
            pos += nbytes

    def run(self, threads: int) -> None:
        # as many files open at once as the HDF5 handle pool: runs can have more files
        # than `ulimit -n` allows
        step = POOL.limit
        paths = list(dict.fromkeys(j[0] for j in self.jobs))
        for i in range(0, len(paths), step):
            batch = set(paths[i:i + step])
            self._run([j for j in self.jobs if j[0] in batch], threads)

    def _run(self, jobs: list[tuple[str, int, memoryview]], threads: int) -> None:
        if not jobs:
            return
        fds = {p: os.open(p, os.O_RDONLY) for p in {j[0] for j in jobs}}
        try:
            def copy(job: tuple[str, int, memoryview]) -> None:
                path, offset, view = job
                done = 0
                while done < len(view):
                    n = os.preadv(fds[path], [view[done:]], offset + done)
                    if n <= 0:
                        raise OSError(f"{path}: file ended at byte {offset + done} while "
                                      "reading detector data; the file is truncated")
                    done += n
            if threads > 1 and len(jobs) > 1:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(copy, jobs))
            else:
                for job in jobs:
                    copy(job)
        finally:
            for fd in fds.values():
                os.close(fd)


def read_rows(fmap: FrameMap, key: str, out: np.ndarray, slots: list[int],
              selected: np.ndarray | None = None, src_index: tuple[Any, ...] = (),
              per_train: bool = False, threads: int = DEFAULT_THREADS) -> None:
    """Fill ``out[slots[m], rows]`` with module ``m``'s rows of ``key``.

    ``src_index`` is applied to every source row after the row index (ROI,
    hidden length-1 axes); HDF5 converts dtypes on the way. Blocks that are
    plain bytes on disk in the output's dtype are copied directly, in threads.
    """
    src_index, kept_shape = _keep_axes(src_index, out.shape[2:])
    direct = _DirectReader()
    contiguous = out.flags.c_contiguous

    for m in range(fmap.n_modules):
        dest = out[slots[m]].reshape((out.shape[1],) + kept_shape)
        dest_bytes = memoryview(dest.reshape(-1).view(np.uint8)) if contiguous else None
        datasets: dict[int, tuple[Any, h5py.Dataset, RowLayout | None]] = {}
        for run in fmap.runs(m, selected, per_train):
            f = fmap.files[run.file]
            h5 = f.h5   # from the handle pool: re-fetch if it was closed and reopened
            hit = datasets.get(run.file)
            if hit is None or hit[0] is not h5:
                dpath = f.dataset_path(fmap.sources[m], key)
                ds = h5[dpath]
                layout = None
                if (dest_bytes is not None and isinstance(ds, h5py.Dataset)
                        and ds.dtype == out.dtype and _whole_rows(src_index, ds)):
                    layout = direct.layout(str(f.path), dpath, ds)
                datasets[run.file] = hit = (h5, ds, layout)
            _, ds, layout = hit
            pieces = layout.extents(run.src_start, run.length) if layout else None
            if pieces is not None and dest_bytes is not None:
                row_bytes = layout.row_bytes
                view = dest_bytes[run.dst_start * row_bytes:(run.dst_start + run.length) * row_bytes]
                direct.plan(str(fmap.files[run.file].path), pieces, view)
                continue
            ds.read_direct(dest, source_sel=(slice(run.src_start, run.src_start + run.length),)
                           + src_index,
                           dest_sel=np.s_[run.dst_start:run.dst_start + run.length])
    direct.run(threads)
