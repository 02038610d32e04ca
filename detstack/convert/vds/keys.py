"""Mappings of one key of the 5-D view (train layout) or the frame layout, its labels,
the coordinates and the record of a view (shared with the CXI writer)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ...frames import FrameMap
from ..axes import SINGLETON, SINGLETON_NOTE
from ..frame_ids import write_frame_coordinates
from ..plan import KeyPlan, ViewPlan
from .mappings import MappingBuilder, SourceNames, block_runs, run_breaks

if TYPE_CHECKING:
    from .nested import NestedBuilder

RECORD_ATTR = "detstack_record"
SMALL_ENTRY_BYTES = 1024           # per-frame entries below this share one mapping per run
PER_TRAIN, PER_RUN, BLOCKS = "per-train", "per-run", "blocks"   # forms of one key
PER_BLOCK = "per-block"            # frame layout: one mapping per block of source rows
AUTO, COMPACT = "auto", "compact"  # what to_vds(mapping=...) accepts besides the forms
MAPPINGS = (AUTO, BLOCKS, PER_TRAIN, COMPACT)
BLOCK_GROUP = "_blocks"
BLOCK_TRAINS = 256                 # trains per block of a blocked key
LONG_VIEW_MAPPINGS = 200_000       # beyond this, to_vds suggests the frame layout


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


def add_key_mappings(builder: MappingBuilder | NestedBuilder, kp: KeyPlan, plan: ViewPlan,
                     names: SourceNames, form: str, t0: int = 0, t1: int | None = None) -> None:
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


def add_frame_mappings(builder: MappingBuilder | NestedBuilder, kp: KeyPlan, plan: ViewPlan,
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
        grp = h5.create_group("frames")
        names = write_frame_coordinates(grp, plan.det)      # in blocks of trains
        if names is None:                                   # the detector's own labels
            for name, values in plan.frame_coordinates().items():
                grp.create_dataset(name, data=values)
            names = list(grp)
        paths["frames"] = {name: _join(h5.name, f"frames/{name}") for name in names}
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


