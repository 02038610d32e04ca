"""``to_zarr``: copy a detector's data into a compressed, sharded Zarr v3 store.

The store is readable by any Zarr v3 reader and ``xarray.open_zarr`` (named dims,
coordinates, the view record as a root attribute) and by ``detstack.open_view``.
xarray makes one dask chunk per inner chunk (one pulse of 8 trains, 2 MiB for AGIPD) by
default, as fast as larger ones (``benchmarks/bench_paths.py``); open with
``chunks="auto"`` or ``chunks={"pulse": -1}`` (JUNGFRAU: ``"cell"``) for fewer tasks.

How it stays safe:

* work is split into tasks (one module slot x one block of trains); each task
  writes whole shards that no other task touches, so worker processes, threads or
  dask workers never race on an object (two writers of one shard lose data;
  ``runners``);
* memory is bounded: a task holds one shard's source rows at a time;
* ``.detstack-progress/plan.json`` is written first and a *done* marker after
  each task; the array metadata, coordinates and, last of all, the root
  ``zarr.json`` (the completion marker) are written once every task is done.
  An interrupted store has no root group, so readers refuse it, and running
  again with ``resume=True`` redoes only the unfinished tasks, giving the same
  bytes as an uninterrupted run;
* one writer at a time: a lock beside the store (``Target.lock``) refuses a
  second conversion or resume of it while the first runs;
* replacing a store never passes through a state that reads as complete (see
  ``target``), and a full disk removes what a fresh conversion wrote and
  raises ``OutputWriteError``;
* each task records a checksum of every (module, train) block it wrote
  (``checksums``), kept in the store for ``detstack verify --full``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...store.view_collection import ViewModuleFile
from ...store.zarr_store import PLAN_FILE, PROGRESS_DIR
from ..atomic import clean_stale, is_disk_error, write_failure
from ..checksums import store_document
from ..gc_pause import no_gc
from ..plan import ViewPlan, as_detector
from ..writer_docs import writer_docs
from .buffers import trim_malloc
from .layout import ChunkSpec, ShardSpec, frame_block, plan_layouts, train_block
from .meta import build_metadata, coordinate_dims, coordinates, lossy_record, with_codecs
from .runners import run_distributed, run_local
from .target import CHECKSUMS, DONE_DIR, Target
from .tasks import TaskSpec, make_tasks

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@writer_docs
def to_zarr(det_or_run: Any, url: str | os.PathLike[str], *, keys: list[str] | None = None,
            storage_options: dict[str, Any] | None = None, compressor: Any = None,
            chunks: ChunkSpec = None, shards: ShardSpec = None, client: Any = None,
            progress: Progress | bool | None = None, overwrite: bool = False,
            resume: bool = False, workers: int | None = None, lossy: Any = None,
            layout: str = "trains", threads: int | None = None) -> str:
    """Copy the detector's keys into a compressed, sharded Zarr v3 store at ``url``.

    Any Zarr v3 reader and ``xarray.open_zarr`` read the store (named dims,
    coordinates, the view record as an attribute). Shards are written by tasks that
    each own theirs, so memory stays bounded; the root metadata comes last, so an
    interrupted store reads as incomplete until ``resume=True`` finishes it.

    Parameters
    ----------
    $det_or_run
    url : str or path-like
        A folder, a ``.zip`` file (packed at the end) or an fsspec URL
        (``s3://bucket/run.zarr``; needs the ``s3`` extra).
    $keys
    storage_options : dict, optional
        fsspec options for remote targets.
    compressor : zarr codec, list of codecs or False, optional
        Codec(s) for every key; default blosc zstd level 1 with bit shuffling;
        ``False`` writes uncompressed chunks.
    chunks : tuple or dict, optional
        Inner chunk shape (a tuple for the large keys, or ``{key: shape}``);
        default one pulse (JUNGFRAU: one cell) of the shard's trains, stored train
        axis innermost through the standard ``transpose`` codec.
    shards : tuple, int, dict or False, optional
        Shard shape, a number of trains per shard, or ``False`` for no sharding;
        default 8 trains of one module per shard (fewer to stay under 512 MiB).
    client : distributed.Client, optional
        Run the tasks on these dask workers (they must see the run files and the
        target); otherwise ``workers`` local processes.
    progress : callable or bool, optional
        ``progress(done, total)`` in trains x modules, or ``True`` for a bar on
        stderr.
    $overwrite
    resume : bool, default False
        Finish an interrupted conversion with the same arguments (only unfinished
        tasks are redone; the result is the same store).
    workers : int, optional
        Local worker processes (forked; default one per core, at most 8); threads
        where processes cannot be forked and for remote targets (default cores + 1,
        at most 8). 1: one thread.
    lossy : str or dict, optional
        Opt-in rounding of float pixel data: ``"photons:E"`` (whole photons of
        energy E, error <= E/2) or ``"bits:N"`` (N mantissa bits kept); see
        ``detstack.convert.zarr.lossy``. The mode and bound go into the record and the
        array attributes.
    layout : {'trains', 'frames'}, default 'trains'
        ``"trains"``: (module, train, pulse, ...); ``"frames"``: (module, frame, ...)
        with per-frame ``train_id``, ``pulse_id``, ``cell_id`` coordinates and no
        padding of short trains; there, an integer ``shards`` counts frames per shard.
    threads : int, optional
        The earlier name of ``workers``.

    Returns
    -------
    str
        ``url``.

    Raises
    ------
    FileExistsError
        A store (or an interrupted conversion, or anything else) is at ``url``
        and neither ``overwrite`` nor ``resume`` says what to do.
    ValueError
        ``det_or_run`` reads a view (convert the run itself), or ``resume`` with
        other arguments or data than the interrupted conversion.
    OutputWriteError
        The target filled up or failed; a fresh store is removed, a resumed one
        stays resumable.
    """
    det = as_detector(det_or_run)
    if any(isinstance(f, ViewModuleFile) for f in det.data.files):
        raise ValueError("to_zarr copies a run's HDF5 files, but this detector reads a view; "
                         "convert the run itself (detstack.RunDirectory(...))")
    url = os.fspath(url)
    target = Target(url, storage_options)
    plan = ViewPlan(det, keys, layout=layout, squeeze=True)
    layouts = plan_layouts(plan, chunks, shards, lossy)
    coord_dims = coordinate_dims(plan, layouts)
    docs = build_metadata(layouts, compressor, coord_dims)
    layouts = with_codecs(layouts, docs)
    block = train_block(layouts, len(plan.train_ids), len(plan.slots))
    fblock = frame_block(layouts)
    record = lossy_record(plan.record("zarr", base=_record_base(target)), layouts)
    fingerprint = _fingerprint(plan, docs, (block, fblock), record)

    tasks = make_tasks(plan, layouts, block, fblock)
    fresh = True
    try:
        with target.lock():
            prepared = _prepare(target, fingerprint, record, overwrite=overwrite, resume=resume,
                                n_tasks=len(tasks))
            if prepared is None:
                return url
            record, fresh = prepared
            _convert(target, plan, layouts, tasks, compressor, coord_dims, record, progress,
                     client, workers or threads)
    except BaseException as exc:
        if not is_disk_error(exc):
            raise
        if fresh:               # a resumed store stays resumable once space is freed
            target.wipe()
        raise write_failure(url, exc) from exc
    return url


def _convert(target: Target, plan: ViewPlan, layouts: list[Any], tasks: list[TaskSpec],
             compressor: Any,
             coord_dims: dict[str, tuple[str, ...]], record: dict[str, Any],
             progress: Progress | bool | None, client: Any, workers: int | None) -> None:
    url = target.url
    done = target.names(DONE_DIR)
    todo = [t for t in tasks if t.task_id not in done]
    total = sum(t.n_trains for t in tasks)
    report = _reporter(progress)
    finished = total - sum(t.n_trains for t in todo)
    report(finished, total)
    log.info("to_zarr %s: %d tasks (%d already done)", url, len(tasks), len(tasks) - len(todo))

    def on_done(n: int) -> None:
        nonlocal finished
        finished += n
        report(finished, total)

    if client is None:
        try:
            with no_gc():
                run_local(todo, target, workers, on_done)
        finally:
            trim_malloc()           # the heap our tasks kept (buffers.tune_malloc)
    else:
        run_distributed(client, todo, target, on_done)
    _finish(target, plan, layouts, compressor, coord_dims, record)


def _record_base(target: Target) -> str | None:
    if target.zip_path is not None:
        return os.path.dirname(target.zip_path)
    return os.path.dirname(target.root) if target.is_local else None


def _digest(arrays: Iterable[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _fingerprint(plan: ViewPlan, docs: dict[str, bytes], block: tuple[int, int],
                 record: dict[str, Any]) -> dict[str, Any]:
    """What must match for a resumed conversion to finish the same store."""
    groups = record["index_groups"]
    fp = {"arrays": {k: json.loads(v) for k, v in sorted(docs.items())},
          "train_block": block[0], "frame_block": block[1], "layout": plan.layout,
          "slots": plan.slots,
          "train_ids": _digest([plan.train_ids]),
          "counts": _digest(plan.counts(g) for g in groups),
          "source_files": record["source_files"]}
    return json.loads(json.dumps(fp))


def _prepare(target: Target, fingerprint: dict[str, Any], record: dict[str, Any], *,
             overwrite: bool, resume: bool, n_tasks: int) -> tuple[dict[str, Any], bool] | None:
    """Check what is at the target (holding its lock); return the record to write and
    whether the conversion starts afresh, or None if there is nothing to do."""
    url = target.url
    if target.is_local:
        clean_stale(Path(target.root))      # folders of dead writers' interrupted wipes
    state = target.state()
    if target.zip_path is not None and state in ("complete", "foreign", "absent") \
            and target.fs.exists(target.root):
        target.wipe()         # a staging folder no live writer owns (we hold the lock)
    if state == "removing" and not overwrite:
        raise FileExistsError(f"{url}: the deletion of an earlier store there was interrupted; "
                              "pass overwrite=True (--overwrite) to replace it")
    if state == "complete" and not overwrite:
        if resume:
            log.info("%s is already a complete store; nothing to resume", url)
            target.remove(PROGRESS_DIR)      # a ledger left by a kill after completion
            return None
        raise FileExistsError(f"{url} already holds a complete detstack zarr store; pass "
                              "overwrite=True (--overwrite) to replace it")
    if state in ("partial", "packing") and not overwrite:
        if not resume:
            raise FileExistsError(
                f"{url} holds an interrupted conversion; pass resume=True (--resume) to "
                "finish it, or overwrite=True (--overwrite) to start again")
        if state == "packing":
            target.pack_zip()
            return None
        saved = json.loads(target.get(PLAN_FILE) or b"{}")
        target.clean_temporaries()
        if saved.get("fingerprint") != fingerprint:
            diff = sorted(k for k in fingerprint
                          if saved.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ValueError(f"{url}: the interrupted conversion there was started with other "
                             f"settings or data (differs in: {', '.join(diff)}); resume it with "
                             "the same arguments, or pass overwrite=True to start again")
        return saved["record"], False
    if state == "foreign":
        if not overwrite:
            raise FileExistsError(f"{url} already exists and is not a detstack zarr store; "
                                  "choose another name, or pass overwrite=True to replace it")
        if target.zip_path is None and not target.looks_like_zarr():
            raise FileExistsError(f"{url} is a non-empty folder that is not a zarr store; "
                                  "refusing to delete it even with overwrite=True")
    if state != "absent":
        target.wipe()
    target.put(PLAN_FILE, json.dumps({"fingerprint": fingerprint, "record": record,
                                      "n_tasks": n_tasks}).encode())
    return record, True


def _reporter(progress: Progress | bool | None) -> Progress:
    from ... import progress as bars
    if progress is True:
        with bars.reporting(bars.tqdm_bar):
            return bars.counter("to_zarr")
    if callable(progress):
        return progress
    return bars.counter("copying to zarr")


def _finish(target: Target, plan: ViewPlan, layouts: list[Any], compressor: Any,
            coord_dims: dict[str, tuple[str, ...]], record: dict[str, Any]) -> None:
    """Metadata and coordinates, then the root group last; drop the ledger; pack a zip."""
    objects = build_metadata(layouts, compressor, coord_dims, coordinates(plan, layouts), record)
    root = objects.pop("zarr.json")
    markers = target.get_many([f"{DONE_DIR}/{n}" for n in sorted(target.names(DONE_DIR))])
    fblock = frame_block(layouts)
    frame_blocks = {lay.key: (fblock, -(-lay.shape[1] // fblock))
                    for lay in layouts if lay.frame_axis}
    objects[CHECKSUMS] = store_document(markers, [lay.key for lay in layouts], plan.n_slots,
                                        len(plan.train_ids), frame_blocks)
    for key in sorted(objects):
        target.put(key, objects[key])
    target.put("zarr.json", root)         # the completion marker, last
    target.remove(PROGRESS_DIR)      # if killed before this, resume=True removes it
    if target.zip_path is not None:
        target.pack_zip()
