"""Blocked keys: a pixel key as a virtual dataset over block virtual datasets of the
same file (``/_blocks/<key>/<first train>``), built here or in forked worker processes.

A block holds the per-train mappings of ``block_trains`` trains and the key maps each
block whole (same shape on both sides: HDF5's fast path). HDF5 spends ~25 us of CPU on
each per-train mapping (copying its selections into the property list, then encoding
them when the dataset is created), 1.44 million of them for the three pixel keys of a
30,000-train corrected AGIPD-1M run. With ``workers > 1`` forked processes build the
blocks into temporary files beside the view while this process writes the other keys,
then copies each finished block into the view (``H5Ocopy``, ~6 us per mapping) and maps
it: the view is the same single file as a serial build, byte for byte the same mappings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import remove_path, temp_sibling
from ..forked import Reported, can_fork, cores, fork_pool, run_reporting, unpack
from ..plan import KeyPlan, ViewPlan
from .keys import BLOCK_GROUP, PER_TRAIN, add_key_mappings
from .mappings import LIBVER, MappingBuilder, SourceNames, small_metadata_cache
from .nested import map_whole

log = logging.getLogger(__name__)

WORKERS_ENV = "DETSTACK_VDS_WORKERS"   # overrides to_vds(workers=None)
PARALLEL_MAPPINGS = 100_000   # workers=None: fewer per-train mappings are built here
TASK_BLOCKS = 8               # blocks per worker task (one temporary file each)

_STATE: list[Any] = []        # the forked workers' job (inherited, never pickled)


def block_ranges(n_trains: int, block_trains: int) -> list[tuple[int, int]]:
    return [(b0, min(n_trains, b0 + block_trains)) for b0 in range(0, n_trains, block_trains)]


def build_block(kp: KeyPlan, plan: ViewPlan, names: SourceNames, b0: int, b1: int
                ) -> MappingBuilder:
    shape = plan.shape(kp)
    part = MappingBuilder((shape[0], b1 - b0) + shape[2:], kp.dtype, kp.fill_value)
    add_key_mappings(part, kp, plan, names, PER_TRAIN, b0, b1)
    return part


def map_block(top: MappingBuilder, grp: h5py.Group, name: str, shape: tuple[int, ...],
              b0: int) -> None:
    """Map block ``grp/name`` of this file whole at train ``b0`` of the key."""
    map_whole(top, grp, name, shape, (0, b0) + (0,) * (len(shape) - 2))


def write_blocked(h5: h5py.File, kp: KeyPlan, plan: ViewPlan, names: SourceNames,
                  block_trains: int) -> tuple[h5py.Dataset, int]:
    """The key as a blocked virtual dataset, built in this process, one block's mappings
    in memory at a time. Returns the dataset and the number of mappings."""
    shape = plan.shape(kp)
    top = MappingBuilder(shape, kp.dtype, kp.fill_value)
    grp = h5.require_group(f"{BLOCK_GROUP}/{kp.path}")
    total = 0
    for b0, b1 in block_ranges(shape[1], block_trains):
        part = build_block(kp, plan, names, b0, b1)
        if not part.count:
            continue
        name = f"{b0:07d}"
        part.create(grp, name).id.close()
        total += part.count + 1
        map_block(top, grp, name, part.shape, b0)
        del part
    return top.create(h5, kp.path), total


def block_workers(workers: int | None, plan: ViewPlan, kps: list[KeyPlan]) -> int:
    """Processes to build the blocked keys ``kps`` with (1: this process)."""
    if workers is None:
        env = os.environ.get(WORKERS_ENV, "")
        if env.isdigit() and int(env) > 0:
            workers = int(env)
        else:
            n_maps = sum(int(np.count_nonzero(plan.frame_map(kp).counts)) for kp in kps)
            workers = min(2, cores()) if n_maps >= PARALLEL_MAPPINGS else 1
    if int(workers) < 1:
        raise ValueError(f"workers must be a positive number of processes, not {workers}")
    if not kps or not can_fork():
        return 1
    return int(workers)


@dataclass(frozen=True)
class _Job:
    plan: ViewPlan
    kps: list[KeyPlan]
    names: SourceNames
    tasks: list[tuple[int, list[tuple[int, int]]]]   # (key, blocks (b0, b1)) per task
    folder: Path


def _build_task(i: int) -> tuple[str, list[tuple[int, int, int]]]:
    """Worker: the blocks of task ``i`` into a file of their own; (file, [(b0, b1, count)])."""
    job: _Job = _STATE[0]
    k, blocks = job.tasks[i]
    kp = job.kps[k]
    path = job.folder / f"part-{i:05d}.h5"
    done = []
    with h5py.File(path, "w", libver=LIBVER) as f:
        small_metadata_cache(f)
        for b0, b1 in blocks:
            part = build_block(kp, job.plan, job.names, b0, b1)
            if part.count:
                part.create(f, f"{b0:07d}").id.close()
                done.append((b0, b1, part.count))
            del part
    return str(path), done


def _run(i: int) -> Reported:
    return run_reporting(_build_task, i)


class ParallelBlocks:
    """The blocked keys of a view, built by forked worker processes.

    ``start()`` forks the workers (before the view file is opened: they must not inherit
    it) and hands out the tasks; ``write(h5, kp)`` then waits for the key's blocks, in
    order, copies them into the view and maps them; ``close()`` stops the workers and
    removes their temporary files (also after a failure).
    """

    def __init__(self, target: Path, plan: ViewPlan, kps: list[KeyPlan], names: SourceNames,
                 block_trains: int, workers: int) -> None:
        self.kps = kps
        self.workers = workers
        self.folder = temp_sibling(target)      # removed by the next writer if we die
        tasks = []
        for k, kp in enumerate(kps):
            ranges = block_ranges(plan.shape(kp)[1], block_trains)
            tasks += [(k, ranges[i:i + TASK_BLOCKS]) for i in range(0, len(ranges), TASK_BLOCKS)]
        self.job = _Job(plan, kps, names, tasks, self.folder)
        for kp in kps:   # every source name and dataspace resolved here, not in the workers
            fmap = plan.frame_map(kp)
            for m in range(fmap.n_modules):
                for fi in np.unique(fmap.file[m][fmap.counts[m] > 0]).tolist():
                    names.ref(fmap, fi, fmap.sources[m], kp.key)
        self.pool: ProcessPoolExecutor | None = None
        self.results: Iterator[tuple[str, Any, str]] | None = None

    def start(self) -> None:
        self.folder.mkdir()
        _STATE[:] = [self.job]
        self.pool = fork_pool(self.workers)
        self.results = self.pool.map(_run, range(len(self.job.tasks)))

    def _next(self) -> tuple[str, list[tuple[int, int, int]]]:
        assert self.results is not None
        return unpack(next(self.results))

    def write(self, h5: h5py.File, kp: KeyPlan) -> tuple[h5py.Dataset, int]:
        """Like ``write_blocked``, from the workers' blocks (keys in the order given)."""
        k = self.kps.index(kp)
        shape = self.job.plan.shape(kp)
        top = MappingBuilder(shape, kp.dtype, kp.fill_value)
        grp = h5.require_group(f"{BLOCK_GROUP}/{kp.path}")
        total = 0
        for task_key, _ in self.job.tasks:
            if task_key != k:
                continue
            path, done = self._next()
            with h5py.File(path, "r") as part:
                small_metadata_cache(part)     # each copied block's mappings freed
                for b0, b1, count in done:
                    name = f"{b0:07d}"
                    h5py.h5o.copy(part.id, name.encode(), grp.id, name.encode())
                    map_block(top, grp, name, (shape[0], b1 - b0) + shape[2:], b0)
                    total += count + 1
            os.unlink(path)
        return top.create(h5, kp.path), total

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        _STATE.clear()
        remove_path(self.folder)
