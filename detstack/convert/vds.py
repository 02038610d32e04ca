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
  when it reads from it; the writer holds one block at a time;
* ``per-train``: the per-train mappings in the key itself (default for short runs);
* ``compact``: one mapping per run of full trains (few mappings, slow bulk reads).

Per-train keys always get one mapping per (module, run of consecutive trains in one
file): ``(1, n, ...)`` against ``(n, ...)``, already the same shape; so do small
per-frame keys (pulse/cell IDs, status...) and contiguous (unchunked) sources, where
the reshaped read costs little.

Mappings are built with h5py's low-level API (``VirtualSource`` slicing costs ~100 us per
mapping, the low-level calls a fifth of that).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DetstackError
from ..frames import FrameMap, Run
from ..progress import track
from ..run.files import RunFile
from .atomic import atomic_h5
from .axes import SINGLETON, SINGLETON_NOTE
from .plan import KeyPlan, ViewPlan, as_detector

log = logging.getLogger(__name__)

RECORD_ATTR = "detstack_record"
LIBVER = ("v110", "v110")          # readable by HDF5 >= 1.10
SMALL_ENTRY_BYTES = 1024           # per-frame entries below this share one mapping per run
PER_TRAIN, PER_RUN, BLOCKS = "per-train", "per-run", "blocks"   # forms of one key
PER_BLOCK = "per-block"            # frame layout: one mapping per block of source rows
AUTO, COMPACT = "auto", "compact"  # what to_vds(mapping=...) accepts besides the forms
MAPPINGS = (AUTO, BLOCKS, PER_TRAIN, COMPACT)
BLOCK_GROUP = "_blocks"
BLOCK_TRAINS = 256                 # trains per block of a blocked key
LONG_VIEW_MAPPINGS = 200_000       # beyond this, to_vds suggests the frame layout


class ViewSourceError(DetstackError, ValueError):
    """A detector whose data are not in EuXFEL HDF5 files cannot back a virtual view."""


# -- low-level mapping machinery (shared with the CXI writer) ---------------------------------

@dataclass
class SourceRef:
    """One source dataset as mappings name it, with a reusable dataspace."""

    name: bytes            # file name as stored: relative to the view, or absolute
    dset: bytes            # dataset path inside the file
    space: h5py.h5s.SpaceID


class SourceNames:
    """File names for mappings: relative to the view's folder, or absolute."""

    def __init__(self, view_path: str | os.PathLike[str], relative: bool) -> None:
        self.folder = os.path.dirname(os.path.abspath(view_path))
        self.relative = relative
        self._refs: dict[tuple[int, str, str], SourceRef] = {}
        self._names: dict[str, str] = {}
        # one dataspace per shape, not per source: h5py's file close visits every live
        # HDF5 object of the process, so 10,000 kept dataspaces made each close 16 ms
        self._spaces: dict[tuple[int, ...], h5py.h5s.SpaceID] = {}

    def file_name(self, path: str | os.PathLike[str]) -> str:
        name = self._names.get(os.fspath(path))   # 2,000 files, ~20 keys each
        if name is None:
            full = os.path.abspath(path)
            name = os.path.relpath(full, self.folder) if self.relative else full
            self._names[os.fspath(path)] = name
        return name

    def ref(self, fmap: FrameMap, file_index: int, source: str, key: str) -> SourceRef:
        cache_key = (file_index, source, key)
        ref = self._refs.get(cache_key)
        if ref is None:
            f = fmap.files[file_index]
            if not isinstance(f, RunFile):
                raise ViewSourceError(
                    f"{f!r} is not an EuXFEL HDF5 file: an HDF5 view maps the original run "
                    "files. Convert from the run itself (or use convert.materialize to copy a "
                    "view)")
            dset = f.dataset_path(source, key)
            shape = f.source_keys(source)[key][0]
            ref = SourceRef(self.file_name(f.path).encode(), dset.encode(),
                            self.space(tuple(shape)))
            self._refs[cache_key] = ref
        return ref

    def space(self, shape: tuple[int, ...]) -> h5py.h5s.SpaceID:
        """A dataspace of ``shape`` (shared: a mapping copies its selection)."""
        space = self._spaces.get(shape)
        if space is None:
            space = self._spaces[shape] = h5py.h5s.create_simple(shape)
        return space

    @staticmethod
    def chunked(fmap: FrameMap, file_index: int, source: str, key: str) -> bool:
        f = fmap.files[file_index]
        dcpl = h5py.h5d.open(f.h5.id, f.dataset_path(source, key).encode()).get_create_plist()
        return dcpl.get_layout() == h5py.h5d.CHUNKED


class MappingBuilder:
    """Collects the mappings of one virtual dataset in a dataset-creation property list."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, fillvalue: Any) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.fillvalue = fillvalue
        self.dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        self.dcpl.set_fill_value(np.asarray(fillvalue, dtype=self.dtype))
        self.vspace = h5py.h5s.create_simple(self.shape)
        self.count = 0

    def add(self, vstart: tuple[int, ...], vcount: tuple[int, ...], src: SourceRef,
            sstart: tuple[int, ...], scount: tuple[int, ...]) -> None:
        self.vspace.select_hyperslab(vstart, vcount)
        src.space.select_hyperslab(sstart, scount)
        self.dcpl.set_virtual(self.vspace, src.name, src.dset, src.space)
        self.count += 1

    def create(self, group: h5py.Group, name: str) -> h5py.Dataset:
        """The virtual dataset; without mappings an unallocated dataset reading as fill."""
        if not self.count:
            return group.create_dataset(name, shape=self.shape, dtype=self.dtype,
                                        fillvalue=self.fillvalue,
                                        chunks=True if all(self.shape) else None)
        tid = h5py.h5t.py_create(self.dtype, logical=True)
        dsid = h5py.h5d.create(group.id, name.encode(), tid,
                               h5py.h5s.create_simple(self.shape), dcpl=self.dcpl)
        return h5py.Dataset(dsid)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building ~50 000 mappings allocates millions of
    short-lived tuples, and the collector's passes cost a fifth of the build time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_breaks(ok_next: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of items joined where ``ok_next[i]`` joins i and i+1."""
    n = len(ok_next) + 1
    cuts = np.flatnonzero(~ok_next) + 1
    starts = np.concatenate([[0], cuts]).tolist()
    stops = np.concatenate([cuts, [n]]).tolist()
    return list(zip(starts, stops, strict=True))


def block_runs(fmap: FrameMap, m: int, per_train: bool = False) -> list[Run]:
    """``fmap.runs(m, per_train=per_train)`` computed per train instead of per frame
    (rows of a train are contiguous): 64x less work, which at 30,000 trains is most of
    the time of a frame-layout view."""
    counts = fmap.counts[m].astype(np.int64)
    if per_train:
        counts = np.minimum(counts, 1)
    ts = np.flatnonzero(counts)
    if not len(ts):
        return []
    dst = fmap.offsets(per_train)[ts]
    src = fmap.first[m, ts].astype(np.int64)
    fi = fmap.file[m, ts]
    n = counts[ts]
    joins = (np.diff(fi) == 0) & (np.diff(src) == n[:-1]) & (np.diff(dst) == n[:-1])
    out = []
    for a, b in run_breaks(joins):
        out.append(Run(int(fi[a]), int(src[a]), int(dst[a]),
                       int(dst[b - 1] + n[b - 1] - dst[a])))
    return out


# -- the 5-D view -------------------------------------------------------------------------------

def needs_per_train(kp: KeyPlan, fmap: FrameMap, names: SourceNames) -> bool:
    """Would a mapping over several trains of this key read slowly (module docstring)?"""
    if not kp.per_frame:
        return False
    if kp.dtype.itemsize * int(np.prod(kp.entry_shape, dtype=np.int64)) < SMALL_ENTRY_BYTES:
        return False
    for m in range(fmap.n_modules):
        for fi in np.unique(fmap.file[m][fmap.counts[m] > 0]).tolist():
            if names.chunked(fmap, fi, fmap.sources[m], kp.key):
                return True
    return False


def mapping_form(kp: KeyPlan, fmap: FrameMap, names: SourceNames, mapping: str = AUTO,
                 n_trains: int = 0, block_trains: int = BLOCK_TRAINS) -> str:
    """The form one key gets for the ``mapping`` the user asked for (see ``to_vds``)."""
    if mapping == COMPACT or not needs_per_train(kp, fmap, names):
        return PER_RUN
    if mapping == AUTO:
        return BLOCKS if n_trains > block_trains else PER_TRAIN
    return mapping


def add_key_mappings(builder: MappingBuilder, kp: KeyPlan, plan: ViewPlan, names: SourceNames,
                     form: str, t0: int = 0, t1: int | None = None) -> None:
    """Map every (slot, train) of a key in the view layout ``(slot, train[, frame], *entry)``;
    only trains ``t0:t1``, placed from train 0 of ``builder``, if given."""
    fmap = plan.frame_map(kp)
    entry = tuple(kp.entry_shape)
    zero = (0,) * len(entry)
    frames = plan.max_frames
    t1 = len(plan.train_ids) if t1 is None else t1
    for m, slot in enumerate(plan.slots):
        src = fmap.sources[m]
        ts = np.flatnonzero(fmap.counts[m, t0:t1]) + t0
        if not len(ts):
            continue
        fi = fmap.file[m, ts]
        first = fmap.first[m, ts].astype(np.int64)
        count = fmap.counts[m, ts].astype(np.int64) if kp.per_frame else np.ones(len(ts), np.int64)
        if form == PER_TRAIN:
            refs = {f: names.ref(fmap, f, src, kp.key) for f in np.unique(fi).tolist()}
            add = builder.add
            for t, f, s, c in zip((ts - t0).tolist(), fi.tolist(), first.tolist(),
                                  count.tolist(), strict=True):
                add((slot, t, 0) + zero, (1, 1, c) + entry, refs[f], (s,) + zero, (c,) + entry)
            continue
        joins = (np.diff(ts) == 1) & (np.diff(fi) == 0) & (np.diff(first) == count[:-1])
        if kp.per_frame:
            full = count == frames
            joins &= full[:-1] & full[1:]
        for a, b in run_breaks(joins):
            n, t, s = b - a, int(ts[a]) - t0, int(first[a])
            ref = names.ref(fmap, int(fi[a]), src, kp.key)
            if not kp.per_frame:
                builder.add((slot, t) + zero, (1, n) + entry, ref, (s,) + zero, (n,) + entry)
            elif n == 1:
                c = int(count[a])
                builder.add((slot, t, 0) + zero, (1, 1, c) + entry, ref, (s,) + zero,
                            (c,) + entry)
            else:
                builder.add((slot, t, 0) + zero, (1, n, frames) + entry, ref, (s,) + zero,
                            (n * frames,) + entry)


def write_blocked(h5: h5py.File, kp: KeyPlan, plan: ViewPlan, names: SourceNames,
                  block_trains: int) -> tuple[h5py.Dataset, int]:
    """The key as a virtual dataset over per-block virtual datasets of the same file.

    Block ``/_blocks/<key>/<first train>`` holds the per-train mappings of
    ``block_trains`` trains; the key maps each block whole (same shape on both sides, so
    reads stay on HDF5's fast path). A reader opening the key decodes one mapping per
    block, and a block's mappings only when a read touches it; the writer holds one
    block's mappings at a time. Returns the dataset and the number of mappings.
    """
    shape = plan.shape(kp)
    n_trains = shape[1]
    top = MappingBuilder(shape, kp.dtype, kp.fill_value)
    grp = h5.require_group(f"{BLOCK_GROUP}/{kp.path}")
    total = 0
    tail = (0,) * (len(shape) - 2)
    for b0 in range(0, n_trains, block_trains):
        b1 = min(n_trains, b0 + block_trains)
        part = MappingBuilder((shape[0], b1 - b0) + shape[2:], kp.dtype, kp.fill_value)
        add_key_mappings(part, kp, plan, names, PER_TRAIN, b0, b1)
        if not part.count:
            continue
        name = f"{b0:07d}"
        part.create(grp, name).id.close()
        total += part.count + 1
        ref = SourceRef(b".", f"/{grp.name.strip('/')}/{name}".encode(),
                        h5py.h5s.create_simple(part.shape))
        top.add((0, b0) + tail, part.shape, ref, (0,) * len(shape), part.shape)
        del part
    return top.create(h5, kp.path), total


def add_frame_mappings(builder: MappingBuilder, kp: KeyPlan, plan: ViewPlan,
                       names: SourceNames) -> None:
    """Map a per-frame key in the frame layout ``(slot, frame, *entry)``: one mapping per
    module and block of source rows contiguous in one file and on the frame axis."""
    fmap = plan.frame_map(kp)
    entry = tuple(kp.entry_shape)
    zero = (0,) * len(entry)
    for m, slot in enumerate(plan.slots):
        for run in block_runs(fmap, m):
            ref = names.ref(fmap, run.file, fmap.sources[m], kp.key)
            builder.add((slot, run.dst_start) + zero, (1, run.length) + entry, ref,
                        (run.src_start,) + zero, (run.length,) + entry)


def label_dataset(ds: h5py.Dataset, plan: ViewPlan, kp: KeyPlan) -> None:
    """Axis names, layout and fill value of a view dataset, for plain-h5py users."""
    dims = plan.dims(kp)
    ds.attrs["axes"] = ":".join(dims)
    ds.attrs["layout"] = plan.layout if kp.per_frame else "trains"
    ds.attrs["fill_value"] = np.asarray(kp.fill_value, kp.dtype)
    singletons = [i for i, d in enumerate(dims) if d.startswith(SINGLETON)]
    if singletons:
        ds.attrs["singleton_axes"] = f"axes {singletons}: {SINGLETON_NOTE}"
    if "data_gain" in dims:  # raw XTDF: plane 0 ADC value, plane 1 gain bits
        ds.attrs["data_gain"] = ["data", "gain"][:ds.shape[dims.index("data_gain")]]


def write_coords(h5: h5py.Group, plan: ViewPlan, groups: list[str]) -> dict[str, Any]:
    """Train IDs, module numbers and row counts (and per-frame IDs in the frame layout);
    returns their paths for the record."""
    h5.create_dataset("train_ids", data=plan.train_ids, dtype=np.uint64)
    base = plan.det.kind.modno_base
    h5.create_dataset("module_numbers", data=np.arange(plan.n_slots, dtype=np.int64) + base)
    paths = {"train_ids": _join(h5.name, "train_ids"),
             "module_numbers": _join(h5.name, "module_numbers"), "counts": {}}
    for g in groups:
        h5.create_dataset(f"counts/{g}", data=plan.counts(g), dtype=np.uint64)
        paths["counts"][g] = _join(h5.name, f"counts/{g}")
    if plan.frames:
        paths["frames"] = {}
        for name, values in plan.frame_coordinates().items():
            h5.create_dataset(f"frames/{name}", data=values)
            paths["frames"][name] = _join(h5.name, f"frames/{name}")
    return paths


def _join(group: str, name: str) -> str:
    return f"{group.rstrip('/')}/{name}".lstrip("/")


def view_record(plan: ViewPlan, form: str, path: str | os.PathLike[str], relative: bool,
                **extra: Any) -> dict[str, Any]:
    """The view record with source paths as the view stores them."""
    folder = os.path.dirname(os.path.abspath(path))
    rec = plan.record(form, base=folder)
    if not relative:
        for entry in rec["source_files"]:
            entry["path"] = os.path.normpath(os.path.join(folder, entry["path"]))
    rec["relative_paths"] = relative
    rec.update(extra)
    return rec


def store_record(h5: h5py.File, record: dict[str, Any]) -> None:
    h5.attrs[RECORD_ATTR] = json.dumps(record, sort_keys=True)


def to_vds(det_or_run: Any, path: str | os.PathLike[str], *, keys: list[str] | None = None,
           relative: bool = True, overwrite: bool = False, mapping: str = AUTO,
           block_trains: int = BLOCK_TRAINS, layout: str = "trains") -> Path:
    """Write an HDF5 virtual view of a detector's data: one virtual dataset per key.

    Each key becomes ``(module slot, train, pulse, *entry)`` (per-train keys
    ``(module slot, train, *entry)``) mapping straight into the run files: no data is
    copied, and h5py or any HDF5 >= 1.10 tool reads it. The file appears under its
    name only when complete.

    Parameters
    ----------
    det_or_run : detector or DataCollection
        A detector object (e.g. ``detstack.AGIPD1M(run, raw=True)``, with any
        module/train selection), or a run holding a single detector.
    path : str or path-like
        The ``.h5`` file to write (write it beside the run, not into it).
    keys : list of str, optional
        Keys to write (default: every key all modules have).
    relative : bool, default True
        Refer to the source files relative to the view's folder, so a run folder
        moved together with its view stays readable; ``False`` stores absolute paths.
    overwrite : bool, default False
        Replace an existing output; otherwise an existing one is refused.
    mapping : {'auto', 'blocks', 'per-train', 'compact'}, default 'auto'
        How pixel keys are mapped (see below).
    block_trains : int, optional
        Trains per block for ``mapping='blocks'`` (and the ``'auto'`` threshold).
    layout : {'trains', 'frames'}, default 'trains'
        ``"trains"``: (module, train, pulse, ...), every train padded to the longest;
        ``"frames"``: (module, frame, ...) with per-frame IDs in ``/frames`` (see below).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
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
    forms: dict[str, dict[str, Any]] = {}
    n_trains = len(plan.train_ids)
    # built on disk (memory does not grow with the file), renamed into place when complete
    with atomic_h5(path, overwrite, libver=LIBVER) as h5, no_gc():
        for kp in track(plan.keys, "building view"):
            form = PER_BLOCK if plan.frames and kp.per_frame else \
                mapping_form(kp, plan.frame_map(kp), names, mapping, n_trains, block_trains)
            if form == PER_BLOCK:
                builder = MappingBuilder(plan.shape(kp), kp.dtype, kp.fill_value)
                add_frame_mappings(builder, kp, plan, names)
                ds, count = builder.create(h5, kp.path), builder.count
            elif form == BLOCKS:
                ds, count = write_blocked(h5, kp, plan, names, int(block_trains))
            else:
                builder = MappingBuilder(plan.shape(kp), kp.dtype, kp.fill_value)
                add_key_mappings(builder, kp, plan, names, form)
                ds, count = builder.create(h5, kp.path), builder.count
            label_dataset(ds, plan, kp)
            ds.attrs["mapping"] = form
            forms[kp.key] = {"form": form, "count": count}
            if form == BLOCKS:
                forms[kp.key]["block_trains"] = int(block_trains)
            ds.id.close()       # frees the key's mappings now, not when the file closes
        coords = write_coords(h5, plan, groups)
        store_record(h5, view_record(plan, "vds", path, relative,
                                     arrays={kp.key: kp.path for kp in plan.keys},
                                     coords=coords, mappings=forms))
    total = sum(f["count"] for f in forms.values())
    log.info("Wrote virtual view %s: %d keys, %d mappings in %.2f s", path, len(plan.keys),
             total, time.perf_counter() - t0)
    if not plan.frames and total > LONG_VIEW_MAPPINGS:
        log.info("%s maps %d (module, train) pairs; layout='frames' (--layout frames) maps "
                 "blocks of contiguous rows instead and builds several times faster", path,
                 total)
    return Path(path)
