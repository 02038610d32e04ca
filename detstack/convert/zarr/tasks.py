"""Conversion tasks: one module slot x one block of trains (or, for per-frame keys in the
frame layout, one block of frames), every key of that kind.

A task reads its rows from the run's HDF5 files one shard at a time, encodes
whole shards (or chunks) and writes them; no other task writes those objects,
so tasks run in any order, on threads or on dask workers, with memory bounded
by one shard per running task. A task ends by writing its *done* marker, which
lets an interrupted conversion skip it when resumed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import h5py
import numpy as np

from ...detectors.chunk_jobs import CompressedReader, corrupt_chunk
from ...layout import RowLayout, row_layout
from ..checksums import block_checksum, done_marker
from ..plan import ViewPlan
from . import direct_file
from .buffers import release_buffers, thread_buffer, tune_malloc
from .encode import Parts, shard_parts
from .frame_shards import write_frame_shards
from .layout import ArrayLayout, chunk_encoder
from .target import DONE_DIR, Target


@dataclass(frozen=True)
class KeyRows:
    """Where one key's rows of one task come from, train by train."""

    layout: ArrayLayout
    datasets: dict[int, str]   # dataset path in each of the task's files
    file: np.ndarray           # (n,) index into TaskSpec.files; -1: no data
    first: np.ndarray          # (n,) first source row
    count: np.ndarray          # (n,) rows (per-train keys and frame-axis keys: 0 or 1)


@dataclass(frozen=True)
class TaskSpec:
    """Everything a worker needs (plain data, cheap to pickle): no open files."""

    task_id: str
    slot: int
    t0: int                    # first train (frame-axis tasks: first frame)
    t1: int
    files: tuple[str, ...]
    keys: tuple[KeyRows, ...]
    train_ids: tuple[int, ...] = ()   # of trains t0..t1, for error messages
    frame_block: int = 0       # frame-axis tasks: frames per task (checksum block)

    @property
    def n_trains(self) -> int:
        """Rows along axis 1 this task writes: trains (frames for frame-axis tasks)."""
        return self.t1 - self.t0


def make_tasks(plan: ViewPlan, layouts: list[ArrayLayout], block: int,
               frame_block: int = 1) -> list[TaskSpec]:
    """Tasks over every present module and ``block``-train range, in module order
    (each thread then reads its own module's files sequentially); then the tasks of
    frame-axis keys over ``frame_block``-frame ranges."""
    train_axis = [lay for lay in layouts if not lay.frame_axis]
    frame_axis = [lay for lay in layouts if lay.frame_axis]
    return (_train_tasks(plan, train_axis, block) if train_axis else []) + \
        (_frame_tasks(plan, frame_axis, frame_block) if frame_axis else [])


def _frame_tasks(plan: ViewPlan, layouts: list[ArrayLayout], block: int) -> list[TaskSpec]:
    """Per module, ``block``-frame ranges of the frame axis; each frame is one source row
    (or none, where the module lacks the train)."""
    tasks = []
    for m, slot in enumerate(plan.slots):
        rows = []
        for lay in layouts:
            fmap = plan.frame_map(plan.key(lay.key))
            rows.append((lay, fmap, *fmap.frame_sources(m)))
        n_frames = max(len(r[2]) for r in rows)
        for f0 in range(0, n_frames, block):
            f1 = min(f0 + block, n_frames)
            files: dict[str, int] = {}
            keys = []
            for lay, fmap, file, row in rows:
                fidx = file[f0:f1]
                local = np.full(f1 - f0, -1, np.int32)
                datasets = {}
                for fi in np.unique(fidx[fidx >= 0]):
                    f = fmap.files[int(fi)]
                    j = files.setdefault(str(f.path), len(files))
                    local[fidx == fi] = j
                    datasets[j] = f.dataset_path(fmap.sources[m], lay.key)
                keys.append(KeyRows(lay, datasets, local, row[f0:f1].astype(np.int64),
                                    (fidx >= 0).astype(np.int64)))
            if any(k.count.any() for k in keys):
                tasks.append(TaskSpec(f"{slot:03d}-f{f0:09d}", slot, f0, f1, tuple(files),
                                      tuple(keys), frame_block=block))
    return tasks


def _train_tasks(plan: ViewPlan, layouts: list[ArrayLayout], block: int) -> list[TaskSpec]:
    n_trains = len(plan.train_ids)
    maps = [(lay, plan.frame_map(plan.key(lay.key))) for lay in layouts]
    tasks = []
    for m, slot in enumerate(plan.slots):
        for t0 in range(0, n_trains, block):
            t1 = min(t0 + block, n_trains)
            files: dict[str, int] = {}
            keys = []
            for lay, fmap in maps:
                count = fmap.counts[m, t0:t1].astype(np.int64)
                if not lay.per_frame:
                    count = np.minimum(count, 1)
                fidx = fmap.file[m, t0:t1]
                local = np.full(t1 - t0, -1, np.int32)
                datasets = {}
                for fi in np.unique(fidx[count > 0]):
                    f = fmap.files[int(fi)]
                    j = files.setdefault(str(f.path), len(files))
                    local[fidx == fi] = j
                    datasets[j] = f.dataset_path(fmap.sources[m], lay.key)
                keys.append(KeyRows(lay, datasets, local,
                                    fmap.first[m, t0:t1].astype(np.int64), count))
            if any(k.count.any() for k in keys):
                tasks.append(TaskSpec(f"{slot:03d}-{t0:09d}", slot, t0, t1, tuple(files),
                                      tuple(keys), tuple(int(t) for t in plan.train_ids[t0:t1])))
    return tasks


class _Sources:
    """The task's open files; plain-byte rows are copied with ``os.preadv`` and compressed
    chunks decoded by detstack (both without HDF5's lock, so tasks run in parallel).

    ``map_rows``: ``mapped`` may give rows as views of the file's pages instead. Only
    in a forked worker: a file cut short under a mapping raises SIGBUS, which ends that
    process (``WorkerDiedError`` in the parent), never the user's."""

    def __init__(self, paths: tuple[str, ...], map_rows: bool = False) -> None:
        self.paths = paths
        self.map_rows = map_rows
        self.h5: dict[int, h5py.File] = {}
        self.datasets: dict[tuple[int, str], h5py.Dataset] = {}   # h5py lookups cost ~0.2 ms
        self.fds: dict[int, int] = {}
        # per dataset: (dtype, row shape, byte layout); h5py's properties cost microseconds
        # per call, and a task reads thousands of row blocks holding the GIL
        self.facts: dict[tuple[int, str], tuple[np.dtype, tuple[int, ...],
                                                RowLayout | None]] = {}
        self.compressed = CompressedReader()

    def __enter__(self) -> _Sources:
        return self

    def __exit__(self, *exc: Any) -> None:
        for f in self.h5.values():
            f.close()
        for fd in self.fds.values():
            os.close(fd)
        self.compressed.close()

    def _dataset(self, j: int, dset: str) -> h5py.Dataset:
        ds = self.datasets.get((j, dset))
        if ds is None:
            if j not in self.h5:
                self.h5[j] = h5py.File(self.paths[j], "r")
            ds = self.datasets[(j, dset)] = self.h5[j][dset]
        return ds

    def read(self, j: int, dset: str, start: int, count: int, out: np.ndarray,
             where: str = "") -> None:
        """Rows ``start:start+count`` into ``out`` (shape (count, *entry)); ``where``
        names module and train in errors."""
        ds = self._dataset(j, dset)
        if not out.flags.c_contiguous:
            tmp = np.empty(out.shape, out.dtype)
            self.read(j, dset, start, count, tmp, where)
            out[...] = tmp
            return
        dtype, row_shape, lay = self._facts(j, dset, ds)
        if out.shape[1:] != row_shape:          # the store dropped length-1 axes
            out = out.reshape((count, *row_shape))
        if lay is not None and dtype == out.dtype:
            pieces = lay.extents(start, count)
            if pieces is not None and lay.row_bytes * count == out.nbytes:
                self._preadv(j, pieces, memoryview(out.reshape(-1).view(np.uint8)))
                return
        chunks = self.compressed.source(self.paths[j], dset, ds, out.dtype, ())
        if chunks is not None and out.shape[1:] == row_shape:
            self.compressed.plan(chunks, start, count, out, (), True, lambda row: where)
            self.compressed.open_files()
            for _, job in self.compressed.jobs():
                job()
            self.compressed.clear()
            return
        try:
            ds.read_direct(out, np.s_[start:start + count])
        except OSError as exc:
            raise corrupt_chunk(self.paths[j], dset, (start, start + count), where,
                                f"HDF5 failed to read it ({exc})") from None

    def mapped(self, j: int, dset: str, start: int, count: int) -> list[np.ndarray] | None:
        """Rows ``start:start+count``, each a read-only view of the file's pages (one
        mapping of their span), where they are plain bytes inside the file and their span
        is at most twice their size (else None: ``read`` them, which also names a
        truncated file)."""
        if not self.map_rows or count <= 0:
            return None
        dtype, row_shape, lay = self._facts(j, dset, self._dataset(j, dset))
        pieces = lay.extents(start, count) if lay is not None else None
        if not pieces:
            return None
        lo, hi = pieces[0][0], pieces[-1][0] + pieces[-1][1]
        fd = self._fd(j)
        if hi - lo > 2 * count * lay.row_bytes or os.fstat(fd).st_size < hi:
            return None
        lead = lo % mmap.ALLOCATIONGRANULARITY
        pages = np.frombuffer(mmap.mmap(fd, lead + hi - lo, flags=mmap.MAP_SHARED | _POPULATE,
                                        prot=mmap.PROT_READ, offset=lo - lead), np.uint8)
        k, n = lay.rows_per_chunk, lay.row_bytes
        rows = np.arange(start, start + count)
        offsets = lay.chunk_offsets[rows // k] + rows % k * n - (lo - lead)
        return [pages[o:o + n].view(dtype).reshape(row_shape) for o in offsets.tolist()]

    def _facts(self, j: int, dset: str, ds: h5py.Dataset
               ) -> tuple[np.dtype, tuple[int, ...], RowLayout | None]:
        facts = self.facts.get((j, dset))
        if facts is None:
            facts = self.facts[(j, dset)] = (ds.dtype, ds.shape[1:], row_layout(ds))
        return facts

    def _fd(self, j: int) -> int:
        if j not in self.fds:
            self.fds[j] = os.open(self.paths[j], os.O_RDONLY)
        return self.fds[j]

    def _preadv(self, j: int, pieces: list[tuple[int, int]], dest: memoryview) -> None:
        fd, pos = self._fd(j), 0
        for offset, nbytes in pieces:
            done = 0
            while done < nbytes:
                n = os.preadv(fd, [dest[pos + done:pos + nbytes]], offset + done)
                if n <= 0:
                    raise OSError(f"{self.paths[j]}: file ended at byte {offset + done} while "
                                  "reading detector data; the file is truncated")
                done += n
            pos += nbytes


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)   # map every page at once (Linux), not per fault


@lru_cache(maxsize=64)
def _encoder(codecs_json: str, dtype: str, parts: bool) -> Any:
    return chunk_encoder(json.loads(codecs_json), np.dtype(dtype), parts)


def encode_unit(unit: np.ndarray, valid: np.ndarray, lay: ArrayLayout) -> bytes | Parts:
    """One stored object from its values ``unit`` (the unit shape, module axis first):
    a chunk's bytes, or a shard as its pieces in order (``encode.shard_parts``).

    ``valid`` (trains[, frames]) marks entries that have source rows; inner chunks
    without any are left out of the shard (they read as the fill value).
    """
    encode = _encoder(json.dumps(lay.codecs), lay.dtype.str, lay.sharded)
    if not lay.sharded:
        return encode(unit)
    return shard_parts(unit, valid, lay, encode)


def _write_key(task: TaskSpec, rows: KeyRows, src: _Sources, target: Target,
               sums: list[tuple[int, int]]) -> None:
    if write_frame_shards(task, rows, src, target, sums):
        return
    lay = rows.layout
    ut = lay.unit_trains
    natural = tuple(max(s, 1) for s in lay.shape[2:])
    padded = tuple(-(-s // u) * u for s, u in zip(natural, lay.unit[2:], strict=True))
    fill = lay.dtype.type(lay.fill_value)
    # one buffer for every stored object of this key: every entry of ``region`` is
    # rewritten each time, and the padding beyond the array's edge stays fill
    slab = thread_buffer("slab", (ut,) + padded, lay.dtype)
    if padded != natural:
        slab[...] = fill
    region = slab[(slice(None),) + tuple(slice(0, s) for s in natural)]
    crc: int | None = None      # frame-axis keys: one checksum of the task's frames
    for u0 in range(task.t0, task.t1, ut):
        a = u0 - task.t0
        count = rows.count[a:a + ut]
        if not count.any():
            if lay.frame_axis:
                region[...] = fill
                crc = block_checksum(region[:len(count)], crc or 0)
            continue
        if lay.per_frame:
            valid = np.zeros((ut, padded[0]), bool)
            for i in range(ut):
                c = int(count[i]) if i < len(count) else 0
                if c == 0:
                    region[i] = fill
                    continue
                where = f"module slot {task.slot}, train {task.train_ids[a + i]}"
                src.read(int(rows.file[a + i]), rows.datasets[int(rows.file[a + i])],
                         int(rows.first[a + i]), c, region[i, :c], where)
                region[i, c:] = fill
                valid[i, :c] = True
                sums.append((u0 + i, block_checksum(region[i, :c])))
        else:
            valid = _read_row_runs(rows, a, ut, src, region, fill)
            if lay.frame_axis:
                crc = block_checksum(region[:len(count)], crc or 0)
            else:                       # checksums are per (module, train) block
                sums.extend((u0 + int(i), block_checksum(region[i]))
                            for i in np.flatnonzero(valid))
        grid = [range(p // u) for p, u in zip(padded, lay.unit[2:], strict=True)]
        for pos in itertools.product(*grid):
            sel = tuple(slice(p * u, (p + 1) * u) for p, u in zip(pos, lay.unit[2:], strict=True))
            unit_valid = valid[:, sel[0]] if lay.per_frame else valid
            if not unit_valid.any():
                continue
            unit = slab[(slice(None),) + sel][None]
            key = "/".join([lay.key, "c", str(task.slot), str(u0 // ut), *map(str, pos)])
            target.put(key, encode_unit(unit, unit_valid, lay))
    if crc is not None and rows.count.any():
        sums.append((task.t0 // task.frame_block, crc))


def _read_row_runs(rows: KeyRows, a: int, n: int, src: _Sources, region: np.ndarray,
                   fill: Any) -> np.ndarray:
    """Rows ``a:a+n`` of a one-row-per-entry key (per train, or per frame in the frame
    layout) into ``region``, one read per run of consecutive source rows; returns which
    entries had data (the others are set to ``fill``)."""
    count = rows.count[a:a + n]
    valid = np.zeros(n, bool)
    valid[:len(count)] = count > 0
    have = np.flatnonzero(valid)
    if len(have):
        file, first = rows.file[a + have], rows.first[a + have]
        cuts = np.flatnonzero((np.diff(have) != 1) | (np.diff(file) != 0)
                              | (np.diff(first) != 1)) + 1
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(have)].tolist(),
                          strict=True):
            i = int(have[lo])
            j = int(file[lo])
            src.read(j, rows.datasets[j], int(first[lo]), hi - lo, region[i:i + hi - lo])
    region[~valid] = fill
    return valid


def run_task(task: TaskSpec, target: Target, keep_buffers: bool = False,
             map_rows: bool = False) -> int:
    """Convert one task; returns its number of trains (progress units).

    ``keep_buffers``: leave this thread's buffers for its next task (threads that end
    with the conversion); otherwise they are released (long-lived dask workers).
    ``map_rows``: read rows from mapped pages where possible (forked workers only)."""
    tune_malloc()
    sums: dict[str, list[tuple[int, int]]] = {}
    try:
        with _Sources(task.files, map_rows) as src:
            for rows in task.keys:
                _write_key(task, rows, src, target, sums.setdefault(rows.layout.key, []))
    except BaseException:
        with contextlib.suppress(Exception):
            direct_file.settle()        # no write of this task outlives it
        raise
    finally:
        if not keep_buffers:
            release_buffers()
    direct_file.settle()                # its objects are whole before its done marker
    target.put(f"{DONE_DIR}/{task.task_id}", done_marker(task.slot, sums))
    return task.n_trains
