"""Copy rows from the module files into one preallocated output array.

The plan comes from the frame map (``FrameMap.runs``): each run is one read of
contiguous rows into contiguous output rows. Plain bytes, compressed chunks and
zarr shards become independent jobs run on a thread pool outside HDF5's lock;
only what we cannot decode ourselves goes through HDF5, one call per block.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError
from ..frames import FrameMap
from ..layout import RowLayout, row_layout
from ..run.handles import POOL
from .chunk_jobs import CompressedReader, corrupt_chunk
from .row_plan import plan_runs

DEFAULT_THREADS = min(8, 2 * (os.cpu_count() or 1))   # plain copies: waits on I/O overlap
# decoding is CPU-bound: one thread per core (more only add cache thrash and switches:
# measured 0.79x of the single-core decode per CPU-second with 4 threads on 2 cores,
# 0.87x with 2, 0.96x with 1; benchmarks/bench_paths.py)
DECODE_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else (os.cpu_count() or 1))


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
        self.pieces: list[tuple[str, int, memoryview]] = []
        self._layouts: dict[tuple[str, str], RowLayout | None] = {}
        self._fds: dict[str, int] = {}

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
                self.pieces.append((path, offset + start, dest[pos + start:pos + start + n]))
            pos += nbytes

    def open_files(self, paths: set[str]) -> None:
        for path in paths - set(self._fds):
            self._fds[path] = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def jobs(self) -> list[tuple[str, Callable[[], None]]]:
        """(file, job) pairs."""
        return [(piece[0], lambda piece=piece: self._copy(*piece)) for piece in self.pieces]

    def _copy(self, path: str, offset: int, view: memoryview) -> None:
        done = 0
        while done < len(view):
            n = os.preadv(self._fds[path], [view[done:]], offset + done)
            if n <= 0:
                raise FileFormatError(path, f"the file ended at byte {offset + done} while "
                                      "reading detector data; the file is truncated")
            done += n


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One process-wide pool: reading a train at a time would otherwise pay for new threads."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(DEFAULT_THREADS, 1), thread_name_prefix="detstack-read")
        return _POOL


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist (and its lock may be held)."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def run_jobs(jobs: list[Callable[[], None]], threads: int) -> None:
    """Run independent jobs on up to ``threads`` threads; the first error is raised.

    Each thread takes the next job from a shared list (jobs differ in cost), and
    stops taking jobs once one has failed. The calling thread is one of them: it
    would only wait otherwise, and a small read (one frame) then costs no hand-over
    to a pool thread and back.
    """
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    todo = iter(jobs)
    lock = threading.Lock()
    failed = threading.Event()

    def lane() -> None:
        while not failed.is_set():
            with lock:
                job = next(todo, None)
            if job is None:
                return
            try:
                job()
            except BaseException:
                failed.set()
                raise

    helpers = min(threads, len(jobs)) - 1
    if threads > DEFAULT_THREADS:
        with ThreadPoolExecutor(helpers) as pool:
            _lanes(lane, [pool.submit(lane) for _ in range(helpers)])
    else:
        _lanes(lane, [_pool().submit(lane) for _ in range(helpers)])


def _lanes(lane: Callable[[], None], futures: list[Any]) -> None:
    """Run ``lane`` here beside the ``futures``' lanes; when all have stopped, raise the
    first error (this thread's, else the first helper's): jobs still running must not
    outlive the caller's output array or open files."""
    error: BaseException | None = None
    try:
        lane()
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the helpers
        error = exc
    for f in futures:
        exc = f.exception()
        if error is None and exc is not None:
            error = exc
    if error is not None:
        raise error


def _train_of(fmap: FrameMap, m: int, file: int) -> Callable[[int], str]:
    """A description of where a source row of module ``m`` in ``file`` belongs."""
    def describe(row: int) -> str:
        first = fmap.first[m].astype(np.int64)
        inside = ((fmap.file[m] == file) & (first <= row)
                  & (row < first + fmap.counts[m].astype(np.int64)))
        trains = fmap.train_ids[inside]
        where = f"module {int(fmap.modules[m])}, source {fmap.sources[m]}"
        return where + (f", train {int(trains[0])}" if len(trains) else "")
    return describe


def _h5_read(ds: Any, dest: np.ndarray, source_sel: tuple[Any, ...], dest_sel: slice,
             path: str, dpath: str, describe: Callable[[int], str]) -> None:
    """HDF5's own read (filters we do not decode, conversions); failures are typed."""
    if not isinstance(ds, h5py.Dataset):
        ds.read_direct(dest, source_sel=source_sel, dest_sel=dest_sel)
        return
    try:
        ds.read_direct(dest, source_sel=source_sel, dest_sel=dest_sel)
    except OSError as exc:
        if isinstance(exc, FileFormatError):
            raise
        rows = source_sel[0]
        bad = _first_bad_row(ds, rows.start, rows.stop, source_sel[1:])
        raise corrupt_chunk(path, dpath, (bad, bad + 1), describe(bad),
                            f"HDF5 failed to read it ({exc})") from None


def _first_bad_row(ds: h5py.Dataset, start: int, stop: int, rest: tuple[Any, ...]) -> int:
    """The first row HDF5 cannot read (to name its train); ``start`` if none fails alone."""
    for row in range(start, stop):
        try:
            ds[(slice(row, row + 1),) + rest]
        except OSError:
            return row
    return start


def read_rows(fmap: FrameMap, key: str, out: np.ndarray, slots: list[int],
              selected: np.ndarray | None = None, src_index: tuple[Any, ...] = (),
              per_train: bool = False, threads: int | None = None) -> None:
    """Fill ``out[slots[m], rows]`` with module ``m``'s rows of ``key``.

    ``src_index`` is applied to every source row after the row index (ROI,
    hidden length-1 axes). Blocks that are plain bytes on disk in the output's
    dtype are copied directly, compressed chunks (deflate, shuffle) are fetched
    and decoded by us, and views that can plan their own reads (zarr stores)
    decode shards: all in threads, outside HDF5's lock. Anything else is read by
    HDF5 (which converts dtypes on the way).
    """
    reader = RowReader()
    reader.add(fmap, key, out, slots, selected, src_index, per_train)
    reader.run(threads)


class RowReader:
    """Reads of several keys planned first, then run as one round of jobs.

    A labelled read needs the pulse IDs and the pixels of the same frames: planned
    together, both are decoded by the same threads at once instead of one pool
    round after the other (``read_rows`` is one key in a reader of its own).
    """

    def __init__(self) -> None:
        self.direct = _DirectReader()
        self.compressed = CompressedReader()
        self.other_jobs: list[Callable[[], None]] = []
        self.batch: dict[Any, Any] = {}      # lets views share one job per stored object

    def add(self, fmap: FrameMap, key: str, out: np.ndarray, slots: list[int],
            selected: np.ndarray | None = None, src_index: tuple[Any, ...] = (),
            per_train: bool = False) -> None:
        """Plan filling ``out[slots[m], rows]`` with module ``m``'s rows of ``key`` (as
        ``read_rows``); blocks only HDF5 can read are read here and now."""
        src_index, kept_shape = _keep_axes(src_index, out.shape[2:])
        direct, compressed = self.direct, self.compressed
        contiguous = out.flags.c_contiguous
        for m, runs in enumerate(plan_runs(fmap, selected, per_train)):
            if not runs:
                continue
            dest = out[slots[m]].reshape((out.shape[1],) + kept_shape)
            dest_bytes = memoryview(dest.reshape(-1).view(np.uint8)) if contiguous else None
            datasets: dict[int, tuple[Any, Any, str, str, RowLayout | None, Any]] = {}
            for file_no, src_start, dst_start, length in runs:
                f = fmap.files[file_no]
                h5 = f.h5   # from the handle pool: re-fetch if it was closed and reopened
                hit = datasets.get(file_no)
                if hit is None or hit[0] is not h5:
                    dpath = f.dataset_path(fmap.sources[m], key)
                    ds = h5[dpath]
                    path = str(f.path)
                    layout = chunks = None
                    if isinstance(ds, h5py.Dataset):
                        if (dest_bytes is not None and ds.dtype == out.dtype
                                and _whole_rows(src_index, ds)):
                            layout = direct.layout(path, dpath, ds)
                        if layout is None:
                            chunks = compressed.source(path, dpath, ds, out.dtype, src_index)
                    datasets[file_no] = hit = (h5, ds, path, dpath, layout, chunks)
                _, ds, path, dpath, layout, chunks = hit
                rows = dest[dst_start:dst_start + length]
                pieces = layout.extents(src_start, length) if layout else None
                if pieces is not None and dest_bytes is not None:
                    row_bytes = layout.row_bytes
                    direct.plan(path, pieces,
                                dest_bytes[dst_start * row_bytes:(dst_start + length) * row_bytes])
                    continue
                describe = _train_of(fmap, m, file_no)
                if chunks is not None:
                    compressed.plan(chunks, src_start, length, rows, src_index,
                                    _whole_rows(src_index, ds), describe)
                    continue
                planner = getattr(ds, "read_jobs", None)
                jobs = (planner(src_start, length, src_index, rows, self.batch) if planner
                        else None)
                if jobs is not None:
                    self.other_jobs.extend(jobs)
                    continue
                _h5_read(ds, dest, (slice(src_start, src_start + length),) + src_index,
                         np.s_[dst_start:dst_start + length], path, dpath, describe)

    def run(self, threads: int | None = None) -> None:
        """Run every planned job; the first error is raised once all have stopped."""
        direct, compressed = self.direct, self.compressed
        direct_jobs, decode_jobs = direct.jobs(), compressed.jobs()
        file_jobs = direct_jobs + decode_jobs
        if threads is None:     # CPU-bound decoding alone (HDF5 chunks, zarr shards): one per core
            threads = DEFAULT_THREADS if direct_jobs else DECODE_THREADS
        # as many files open at once as the HDF5 handle pool: runs can have more files
        # than `ulimit -n` allows
        paths = list(dict.fromkeys(p for p, _ in file_jobs))
        step = POOL.limit
        try:
            run_jobs(self.other_jobs, threads)
            for i in range(0, len(paths), step):
                group = set(paths[i:i + step])
                direct.open_files(group)
                compressed.open_files(group)
                try:
                    run_jobs([job for p, job in file_jobs if p in group], threads)
                finally:
                    direct.close()
                    compressed.close()
        finally:
            direct.close()
            compressed.close()
