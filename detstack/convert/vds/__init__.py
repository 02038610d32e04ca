"""HDF5 virtual view: each key of a detector as one virtual dataset, no data copied.

Layout of the file (see ``detstack.convert.plan`` for the view contract)::

    /<key>                 virtual (module slot, train, frame, *entry) for per-frame keys
                           (image.*) in the train layout, (module slot, frame, *entry) in
                           the frame layout; (module slot, train, *entry) for per-train
                           keys; absent modules/trains/frames read as the key's fill value
                           (``plan.FILL_CONVENTION``); attributes ``axes``, ``layout``
    /train_ids             (n_trains,) uint64
    /frames/train_id, pulse_id, cell_id   frame layout: (n_frames,) uint64 per frame
    /module_numbers        (n_slots,) int64, the module number of every slot
    /counts/<group>        (n_slots, n_trains) uint64 rows per slot and train
    /_blocks/<key>/...     virtual datasets of blocks of trains (``mapping="blocks"``)
    attribute detstack_record on the root: the view record (JSON)

Raw AGIPD keeps its ``data_gain`` axis: ``image.data`` is
``(module, train, pulse, 2, 512, 128)`` with plane 0 the ADC value and plane 1 the gain
bits, exactly the array ``get_array("image.data")`` returns. Select a plane with a
length-1 slice (``ds[..., 0:1, :, :]``): an integer index changes the rank of the read
and sends HDF5 down its slow path.

Raw LPD and DSSC frames keep the source's length-1 axis (``(..., 1, 256, 256)``, axis
name ``singleton``, explained by the dataset's ``singleton_axes`` attribute): dropping it
would pair differently shaped virtual and source selections, HDF5's slow path.

The frame layout (``layout="frames"``) needs one mapping per module and block of
contiguous source rows (virtual ``(1, n, ...)`` against source ``(n, ...)``: the fast
path), whatever the frame counts and run length, and never pads trains; ``mapping``
applies to the train layout only.

Mapping forms of the train layout (``benchmarks/bench_views_h5.py``, HDF5 2.0): HDF5 copies chunked source
data quickly only when a mapping's virtual and source selections have the same shape
after dropping *leading* length-1 axes. A mapping that covers several trains of a
per-frame key pairs a virtual block ``(1, n_trains, n_frames, ...)`` with source rows
``(n_trains * n_frames, ...)`` and bulk reads run 50-100x slower than the sources. So
per-frame keys with large entries (pixel data, gain, mask) from chunked sources need one
mapping per (module, train), ``(1, 1, n, ...)`` against ``(n, ...)``; but HDF5 holds
~7 KB per mapping in every reader that opens the dataset (and ~25 KB while writing it),
too much for long runs (480 000 mappings per key at 30 000 trains). ``to_vds(mapping=)``:

* ``blocks`` (default for long runs): the key is a virtual dataset over *block* virtual
  datasets of the same file (``/_blocks/<key>/<first train>``, ``block_trains`` trains
  each, per-train mappings inside); each block is mapped whole, same shape on both
  sides. A reader decodes one mapping per block on opening and a block's mappings only
  when it reads from it; the writer holds one block at a time. HDF5 spends ~25 us of
  CPU per per-train mapping, so long runs build their blocks in forked worker processes
  (``workers``; ``blocks.py``), the file and its mappings the same as a serial build;
* ``per-train``: the per-train mappings in the key itself (default for short runs);
* ``compact``: one mapping per run of full trains (few mappings, slow bulk reads).

Per-train keys always get one mapping per (module, run of consecutive trains in one
file): ``(1, n, ...)`` against ``(n, ...)``, already the same shape; so do small
per-frame keys (pulse/cell IDs, status...) and contiguous (unchunked) sources, where
the reshaped read costs little.

Keys mapped per block of source rows (per-run keys, the frame layout) nest their mappings
once a dataset would hold more than ``NEST_MAPPINGS`` (128; long runs only): HDF5 holds
~25 KB per mapping of a dataset being created, ~50 MB for a key of a 30,000-train run, so
the key maps blocks of itself instead (``nested``; the record says ``nested_blocks``).

Modules: ``mappings`` (the low-level machinery, shared with the CXI writer), ``keys``
(the mappings, labels, coordinates and record of each key), ``blocks`` (blocked keys,
serial or in worker processes), ``nested`` (datasets with many mappings nested in
blocks); this one orchestrates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from ...progress import track
from ..atomic import atomic_h5, check_target
from ..gc_pause import no_gc
from ..plan import ViewPlan, as_detector
from ..writer_docs import writer_docs
from .blocks import ParallelBlocks, block_workers, write_blocked
from .keys import (
    AUTO,
    BLOCK_GROUP,
    BLOCK_TRAINS,
    BLOCKS,
    COMPACT,
    LONG_VIEW_MAPPINGS,
    MAPPINGS,
    PER_BLOCK,
    PER_RUN,
    PER_TRAIN,
    RECORD_ATTR,
    SMALL_ENTRY_BYTES,
    add_frame_mappings,
    add_key_mappings,
    label_dataset,
    mapping_form,
    needs_per_train,
    store_record,
    view_record,
    write_coords,
)
from .mappings import (
    LIBVER,
    MappingBuilder,
    SourceNames,
    SourceRef,
    ViewSourceError,
    block_runs,
    run_breaks,
    small_metadata_cache,
)
from .nested import NEST_MAPPINGS, NestedBuilder

__all__ = [
    "AUTO", "BLOCKS", "BLOCK_GROUP", "BLOCK_TRAINS", "COMPACT", "LIBVER", "LONG_VIEW_MAPPINGS",
    "MAPPINGS", "NEST_MAPPINGS", "PER_BLOCK", "PER_RUN", "PER_TRAIN", "RECORD_ATTR", "SMALL_ENTRY_BYTES",
    "MappingBuilder", "NestedBuilder", "SourceNames", "SourceRef", "ViewSourceError", "add_frame_mappings",
    "add_key_mappings", "block_runs", "label_dataset", "mapping_form", "needs_per_train",
    "no_gc", "run_breaks", "small_metadata_cache", "store_record", "to_vds", "view_record", "write_blocked",
    "write_coords",
]

log = logging.getLogger(__name__)


@writer_docs
def to_vds(det_or_run: Any, path: str | os.PathLike[str], *, keys: list[str] | None = None,
           relative: bool = True, overwrite: bool = False, mapping: str = AUTO,
           block_trains: int = BLOCK_TRAINS, layout: str = "trains",
           workers: int | None = None) -> Path:
    """Write an HDF5 virtual view of a detector's data: one virtual dataset per key.

    Each key becomes ``(module slot, train, pulse, *entry)`` (per-train keys
    ``(module slot, train, *entry)``) mapping straight into the run files: no data is
    copied, and h5py or any HDF5 >= 1.10 tool reads it. The file appears under its
    name only when complete.

    Parameters
    ----------
    $det_or_run
    path : str or path-like
        The ``.h5`` file to write (write it beside the run, not into it).
    $keys
    relative : bool, default True
        Refer to the source files relative to the view's folder, so a run folder
        moved together with its view stays readable; ``False`` stores absolute paths.
    $overwrite
    mapping : {'auto', 'blocks', 'per-train', 'compact'}, default 'auto'
        How pixel keys are mapped (see below).
    block_trains : int, optional
        Trains per block for ``mapping='blocks'`` (and the ``'auto'`` threshold).
    layout : {'trains', 'frames'}, default 'trains'
        ``"trains"``: (module, train, pulse, ...), every train padded to the longest;
        ``"frames"``: (module, frame, ...) with per-frame IDs in ``/frames`` (see below).
    workers : int, optional
        Processes building the blocks of ``mapping='blocks'`` keys (forked; the view is
        the same single file either way). Default: 2 (or the cores available, if fewer)
        for views of 100,000 per-train mappings or more, else 1 (this process);
        environment variable ``DETSTACK_VDS_WORKERS`` overrides the default.

    Returns
    -------
    $returns_path

    Raises
    ------
    $path_exists
    ValueError
        The run holds several detectors (pass a detector object) or none.
    OutputWriteError
        The file could not be written (e.g. the disk is full); nothing is left.

    Notes
    -----
    ``mapping`` decides how pixel keys (per-frame keys of chunked sources) are mapped;
    small keys always get one mapping per run of trains (README, "HDF5 views at scale"):

    * ``"auto"``: ``"per-train"`` up to ``block_trains`` trains, else ``"blocks"``;
    * ``"blocks"``: the key maps blocks of ``block_trains`` trains, each a virtual
      dataset of the same file with one mapping per (module, train): opens in
      milliseconds at any run length, memory bounded while writing, and bulk reads at
      the speed of the sources;
    * ``"per-train"``: one mapping per (module, train) in the key itself (one level,
      every mapping names a run file); opening costs ~7 KB and writing ~25 KB of memory
      per mapping, so keep it to short runs;
    * ``"compact"``: one mapping per (module, run of full trains in one sequence file):
      the fewest mappings and fast per-train reads, but HDF5 reads a selection spanning
      several trains 50-100x slower than the sources.

    Memory does not grow with run length: a dataset that would hold more than 128
    mappings (long runs) maps virtual blocks of itself in the same file
    (``/_blocks/<key>/...``), each with at most 128 mappings, so HDF5 (~25 KB per mapping
    of a dataset being created) holds one block's at a time; short runs keep their
    mappings in the dataset itself.

    The frame layout suits runs whose frame counts vary from train to train (see
    ``convert.plan``); its pixel keys need one mapping per block of contiguous source
    rows, whatever ``mapping``. It is also the fast form for long runs: at 30,000
    AGIPD-1M trains it maps ~2,000 blocks per key where the train layout needs 480,000
    per-train mappings (HDF5 spends 25-35 us of CPU on each), so it builds several
    times faster (README, "HDF5 views of long runs").
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, not {mapping!r}")
    if int(block_trains) < 1:
        raise ValueError(f"block_trains must be a positive number of trains, not {block_trains}")
    det = as_detector(det_or_run)
    t0 = time.perf_counter()
    plan = ViewPlan(det, keys, layout=layout)
    names = SourceNames(path, relative)
    groups = sorted({kp.group for kp in plan.keys})
    n_trains = len(plan.train_ids)
    key_forms = {kp.key: PER_BLOCK if plan.frames and kp.per_frame else
                 mapping_form(kp, plan.frame_map(kp), names, mapping, n_trains, block_trains)
                 for kp in plan.keys}
    blocked = [kp for kp in plan.keys if key_forms[kp.key] == BLOCKS]
    n_workers = block_workers(workers, plan, blocked)
    check_target(path, overwrite)     # refuse before any work is done
    forms: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(no_gc())
        parallel = None
        if n_workers > 1:
            parallel = ParallelBlocks(Path(path), plan, blocked, names, int(block_trains),
                                      n_workers)
            stack.callback(parallel.close)
            parallel.start()        # forked before the view file is opened
        # built on disk (memory does not grow with the file), renamed into place when complete
        h5 = stack.enter_context(atomic_h5(path, overwrite, libver=LIBVER))
        small_metadata_cache(h5)    # finished keys' mappings freed (memory bounded)
        # keys built here first: the workers' blocks meanwhile come in
        order = sorted(plan.keys, key=lambda kp: parallel is not None and kp in blocked)
        for kp in track(order, "building view"):
            form = key_forms[kp.key]
            nested = 0
            if form == BLOCKS:
                ds, count = parallel.write(h5, kp) if parallel is not None else \
                    write_blocked(h5, kp, plan, names, int(block_trains))
            elif form == PER_TRAIN:
                builder = MappingBuilder(plan.shape(kp), kp.dtype, kp.fill_value)
                add_key_mappings(builder, kp, plan, names, form)
                ds, count = builder.create(h5, kp.path), builder.count
            else:       # per module and block of rows: nested beyond NEST_MAPPINGS
                nb = NestedBuilder(plan.shape(kp), kp.dtype, kp.fill_value, axis=1)
                if form == PER_BLOCK:
                    add_frame_mappings(nb, kp, plan, names)
                else:
                    add_key_mappings(nb, kp, plan, names, form)
                ds, count, nested = nb.create(h5, kp.path), nb.count, nb.blocks
            label_dataset(ds, plan, kp)
            ds.attrs["mapping"] = form
            forms[kp.key] = {"form": form, "count": count}
            if form == BLOCKS:
                forms[kp.key]["block_trains"] = int(block_trains)
            if nested:
                forms[kp.key]["nested_blocks"] = nested
            ds.id.close()       # frees the key's mappings now, not when the file closes
            names.forget(kp.key)
        coords = write_coords(h5, plan, groups)
        store_record(h5, view_record(plan, "vds", path, relative,
                                     arrays={kp.key: kp.path for kp in plan.keys},
                                     coords=coords, mappings=forms))
    total = sum(f["count"] for f in forms.values())
    log.info("Wrote virtual view %s: %d keys, %d mappings in %.2f s (%d processes)", path,
             len(plan.keys), total, time.perf_counter() - t0, n_workers)
    if not plan.frames and total > LONG_VIEW_MAPPINGS:
        log.info("%s maps %d (module, train) pairs; layout='frames' (--layout frames) maps "
                 "blocks of contiguous rows instead and builds several times faster", path,
                 total)
    return Path(path)
