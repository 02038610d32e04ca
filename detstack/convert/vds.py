"""HDF5 virtual view: each key of a detector as one virtual dataset, no data copied.

Layout of the file (see ``detstack.convert.plan`` for the view contract)::

    /<key>                 virtual (module slot, train, frame, *entry) for per-frame keys
                           (image.*), (module slot, train, *entry) for per-train keys;
                           absent modules/trains/frames read as the key's fill value
    /train_ids             (n_trains,) uint64
    /module_numbers        (n_slots,) int64, the module number of every slot
    /counts/<group>        (n_slots, n_trains) uint64 rows per slot and train
    attribute detstack_record on the root: the view record (JSON)

Raw AGIPD keeps its ``data_gain`` axis: ``image.data`` is
``(module, train, pulse, 2, 512, 128)`` with plane 0 the ADC value and plane 1 the gain
bits, exactly the array ``get_array("image.data")`` returns. Select a plane with a
length-1 slice (``ds[..., 0:1, :, :]``): an integer index changes the rank of the read
and sends HDF5 down its slow path.

Mapping forms, chosen per key from measurements with HDF5 2.0 (``benchmarks/
bench_views_h5.py``): HDF5 copies chunked source data quickly only when a mapping's
virtual and source selections have the same shape after dropping *leading* length-1
axes. A mapping that covers several trains of a per-frame key pairs a virtual block
``(1, n_trains, n_frames, ...)`` with source rows ``(n_trains * n_frames, ...)`` and
bulk reads run 50-100x slower than the sources. So:

* per-frame keys with large entries (pixel data, gain, mask) from chunked sources get one
  mapping per (module, train): ``(1, 1, n, ...)`` against ``(n, ...)``; reads run at the
  speed of the sources;
* per-train keys get one mapping per (module, run of consecutive trains in one file):
  ``(1, n, ...)`` against ``(n, ...)``, already the same shape;
* small per-frame keys (pulse/cell IDs, status...) and contiguous (unchunked) sources get
  one mapping per run of full trains: few mappings, and the reshaped read costs little.

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
from ..frames import FrameMap
from ..progress import track
from ..run.files import RunFile
from .atomic import atomic_h5
from .plan import KeyPlan, ViewPlan, as_detector

log = logging.getLogger(__name__)

RECORD_ATTR = "detstack_record"
LIBVER = ("v110", "v110")          # readable by HDF5 >= 1.10
SMALL_ENTRY_BYTES = 1024           # per-frame entries below this share one mapping per run
PER_TRAIN, PER_RUN = "per-train", "per-run"


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

    def file_name(self, path: str | os.PathLike[str]) -> str:
        full = os.path.abspath(path)
        return os.path.relpath(full, self.folder) if self.relative else full

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
                            h5py.h5s.create_simple(tuple(shape)))
            self._refs[cache_key] = ref
        return ref

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


def axis_labels(det: Any, kp: KeyPlan) -> list[str]:
    """Names of the view axes of a key, as ``get_array`` names them."""
    lead = ["module", "train"] + (["pulse"] if kp.per_frame else [])
    entry = list(kp.entry_shape)
    tail: list[str] = []
    if len(entry) >= 2 and tuple(entry[-2:]) == tuple(det.module_shape):
        tail = ["slow_scan", "fast_scan"]
        entry = entry[:-2]
    mid = [f"dim_{i}" for i in range(len(entry))]
    if mid and kp.per_frame:
        mid[0] = "data_gain" if tail else mid[0]
    elif mid and entry[0] == det._frames_per_entry and det._frames_per_entry > 1:
        mid[0] = "cell"
    return lead + mid + tail


# -- the 5-D view -------------------------------------------------------------------------------

def mapping_form(kp: KeyPlan, fmap: FrameMap, names: SourceNames) -> str:
    """Per-train mappings only where a shared mapping would read slowly (module docstring)."""
    if not kp.per_frame:
        return PER_RUN
    if kp.dtype.itemsize * int(np.prod(kp.entry_shape, dtype=np.int64)) < SMALL_ENTRY_BYTES:
        return PER_RUN
    for m in range(fmap.n_modules):
        for fi in np.unique(fmap.file[m][fmap.counts[m] > 0]).tolist():
            if names.chunked(fmap, fi, fmap.sources[m], kp.key):
                return PER_TRAIN
    return PER_RUN


def add_key_mappings(builder: MappingBuilder, kp: KeyPlan, plan: ViewPlan, names: SourceNames,
                     form: str) -> None:
    """Map every (slot, train) of a key in the view layout ``(slot, train[, frame], *entry)``."""
    fmap = plan.frame_map(kp)
    entry = tuple(kp.entry_shape)
    zero = (0,) * len(entry)
    frames = plan.max_frames
    for m, slot in enumerate(plan.slots):
        src = fmap.sources[m]
        ts = np.flatnonzero(fmap.counts[m])
        if not len(ts):
            continue
        fi = fmap.file[m, ts]
        first = fmap.first[m, ts].astype(np.int64)
        count = fmap.counts[m, ts].astype(np.int64) if kp.per_frame else np.ones(len(ts), np.int64)
        if form == PER_TRAIN:
            refs = {f: names.ref(fmap, f, src, kp.key) for f in np.unique(fi).tolist()}
            add = builder.add
            for t, f, s, c in zip(ts.tolist(), fi.tolist(), first.tolist(), count.tolist(),
                                  strict=True):
                add((slot, t, 0) + zero, (1, 1, c) + entry, refs[f], (s,) + zero, (c,) + entry)
            continue
        joins = (np.diff(ts) == 1) & (np.diff(fi) == 0) & (np.diff(first) == count[:-1])
        if kp.per_frame:
            full = count == frames
            joins &= full[:-1] & full[1:]
        for a, b in run_breaks(joins):
            n, t, s = b - a, int(ts[a]), int(first[a])
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


def write_coords(h5: h5py.Group, plan: ViewPlan, groups: list[str]) -> dict[str, Any]:
    """Train IDs, module numbers and row counts; returns their paths for the record."""
    h5.create_dataset("train_ids", data=plan.train_ids, dtype=np.uint64)
    base = plan.det.kind.modno_base
    h5.create_dataset("module_numbers", data=np.arange(plan.n_slots, dtype=np.int64) + base)
    paths = {"train_ids": _join(h5.name, "train_ids"),
             "module_numbers": _join(h5.name, "module_numbers"), "counts": {}}
    for g in groups:
        h5.create_dataset(f"counts/{g}", data=plan.counts(g), dtype=np.uint64)
        paths["counts"][g] = _join(h5.name, f"counts/{g}")
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
           relative: bool = True, overwrite: bool = False) -> Path:
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
    """
    det = as_detector(det_or_run)
    t0 = time.perf_counter()
    plan = ViewPlan(det, keys)
    names = SourceNames(path, relative)
    groups = sorted({kp.group for kp in plan.keys})
    forms: dict[str, dict[str, Any]] = {}
    with atomic_h5(path, overwrite, in_memory=True, libver=LIBVER) as h5, no_gc():
        for kp in track(plan.keys, "building view"):
            form = mapping_form(kp, plan.frame_map(kp), names)
            builder = MappingBuilder(plan.shape(kp), kp.dtype, kp.fill_value)
            add_key_mappings(builder, kp, plan, names, form)
            ds = builder.create(h5, kp.path)
            labels = axis_labels(det, kp)
            ds.attrs["axes"] = ":".join(labels)
            ds.attrs["mapping"] = form
            if "data_gain" in labels:  # raw XTDF: plane 0 ADC value, plane 1 gain bits
                planes = ds.shape[labels.index("data_gain")]
                ds.attrs["data_gain"] = ["data", "gain"][:planes]
            forms[kp.key] = {"form": form, "count": builder.count}
        coords = write_coords(h5, plan, groups)
        store_record(h5, view_record(plan, "vds", path, relative, layout="module-train",
                                     arrays={kp.key: kp.path for kp in plan.keys},
                                     coords=coords, mappings=forms))
    log.info("Wrote virtual view %s: %d keys, %d mappings in %.2f s", path, len(plan.keys),
             sum(f["count"] for f in forms.values()), time.perf_counter() - t0)
    return Path(path)
