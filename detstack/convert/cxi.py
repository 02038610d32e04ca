"""Virtual CXI 1.5 files: the reference layout for CrystFEL, plus a bulk-friendly copy.

The CXI part reproduces EXtra-data's ``write_virtual_cxi`` dataset by dataset (paths,
shapes, dtypes, attributes, values, one mapping per module per contiguous block of
source rows), written with HDF5 1.10 format bounds so CrystFEL builds linked against
HDF5 1.10 open it::

    /cxi_version                       [150]
    /entry_1                           attrs name, euxfelProposalNumber, euxfelRunNumber
      experiment_identifier (F,)       "trainId:pulseId" ("trainId:memoryCell" for JUNGFRAU)
      trainId, pulseId|memoryCell (F,) uint64 per frame
      cellId (F, M)                    virtual
      data_1 -> instrument_1/detector_1
      instrument_1/detector_1          attr name; data, gain, mask (F, M, ...) virtual;
                                       module_identifier (M,); experiment_identifier link
      by_module/                       the same data module-first (see below), coordinates

The frames-first ``(frame, module, ...)`` datasets read frame by frame quickly, but a
bulk read of many frames from chunked sources goes down HDF5's slow path (each mapping
pairs ``(n, 1, ...)`` with ``(n, ...)``). ``/entry_1/by_module`` holds the same data laid
out for bulk reads, mapping the same source rows: XTDF detectors ``(module, frame, ...)``
with the CXI frame order, JUNGFRAU ``(module, train, cell, ...)``. ``detstack.open_view``
reads a CXI file through it.

Long runs: a dataset of more than ``vds.NEST_MAPPINGS`` mappings (128: more than 8 sequence
files per module) maps virtual blocks of itself in the same file (``/_blocks/<path>/...``,
cut along frames) instead of the sequence files directly, so that writing holds one
block's mappings at a time (``vds/nested.py``); every element reads the same.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..detectors.pulses import MISSING, read_inner_ids
from ..detectors.reading import read_rows
from ..progress import track
from .atomic import atomic_h5
from .frame_ids import IdsDisagree, agreed_ids, agreed_key_blocks
from .plan import ViewPlan, as_detector, fill_to_json, fill_value_for
from .vds import (
    LIBVER,
    NestedBuilder,
    SourceNames,
    block_runs,
    small_metadata_cache,
    store_record,
    view_record,
    write_coords,
)
from .writer_docs import writer_docs

log = logging.getLogger(__name__)

CXI_VERSION = 150
ID_BATCH = 1 << 16        # frames per batch of experiment_identifier strings (bounded memory)
BULK_GROUP = "entry_1/by_module"
DET_GROUP = "entry_1/instrument_1/detector_1"


class CxiSpec:
    """What the CXI file holds for one detector: names, keys, frames."""

    def __init__(self, det: Any) -> None:
        self.det = det
        kind = det.kind
        self.xtdf = kind.xtdf
        self.group = kind.index_group
        self.cpe = 1 if self.xtdf else int(det._frames_per_entry)
        self.pulse_label = "pulseId" if self.xtdf else "memoryCell"
        self.cell_key = kind.cell_key
        self.fmap = det.frame_map
        src = next(iter(det.source_to_modno))
        present = det.data.keys_for_source(src)
        self.corrected = (f"{self.group}.gain" in present) if self.xtdf else True
        # CXI dataset name -> detstack key
        self.pixel_keys = {"data": kind.main_key}
        if self.corrected and f"{self.group}.gain" in present:
            self.pixel_keys["gain"] = f"{self.group}.gain"
        if self.corrected and kind.mask_key in present:
            self.pixel_keys["mask"] = kind.mask_key
        self.bulk_keys = dict(self.pixel_keys)
        self.bulk_keys["cellId" if self.xtdf else "memoryCell"] = self.cell_key
        if self.xtdf:
            self.bulk_keys["pulseId"] = kind.pulse_key
        self.frame_counts = self.fmap.train_counts().astype(np.int64) * self.cpe  # per train
        self.n_frames = int(self.frame_counts.sum())
        self.modulenos = [slot + kind.modno_base for slot in range(det.n_modules)]

    def entry(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        shape, dtype = self.det.data.key_info(next(iter(self.det.source_to_modno)), key)
        return tuple(shape), np.dtype(dtype)

    def frames_first_shape(self, name: str, key: str) -> tuple[int, ...]:
        head = (self.n_frames, self.det.n_modules)
        if name == "cellId":
            return head
        if self.xtdf and not self.corrected:
            return head + self.entry(key)[0]
        return head + tuple(self.det.module_shape)

    def bulk_shape(self, key: str) -> tuple[int, ...]:
        entry = self.entry(key)[0]
        if self.xtdf:
            return (self.det.n_modules, self.n_frames) + entry
        return (self.det.n_modules, len(self.fmap.train_ids)) + entry

    def pulse_ids(self) -> np.ndarray:
        """One pulse ID (JUNGFRAU: memory cell) per frame, agreed by every module."""
        key = self.det.kind.pulse_key
        entry, dtype = self.entry(key)
        if self.xtdf:
            index = (0,) if entry[:1] == (1,) else ()
            ids = agreed_ids(self.fmap, key, dtype, index)   # module by module: bounded memory
            if ids is None:     # modules disagree: the detector's reader names where
                ids = read_inner_ids(self.fmap, key, "pulseId", index)
            return ids
        ids = np.full((self.fmap.n_modules, len(self.fmap.train_ids)) + entry, MISSING, np.int64)
        read_rows(self.fmap, key, ids, list(range(self.fmap.n_modules)), per_train=True)
        ids = ids.reshape(self.fmap.n_modules, -1)
        missing = ids == MISSING
        if ids.shape[1] and missing.all(axis=0).any():
            raise ValueError("Failed to find memoryCell for some data")
        lo = np.where(missing, MISSING, ids).min(axis=0)
        hi = np.where(missing, -1, ids).max(axis=0)
        if (lo != hi).any():
            raise ValueError("Inconsistent memoryCell for different modules")
        return lo.astype(np.uint64)


def _fill_values(spec: CxiSpec, fillvalues: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults by the view convention (``plan.fill_value_for``), which are also the
    reference's: data NaN (float) or 0, gain 0, mask all bits set (0xffffffff)."""
    dtypes = {name: spec.entry(key)[1] for name, key in spec.pixel_keys.items()}
    fills: dict[str, Any] = {name: fill_value_for(key, dtypes[name])
                             for name, key in spec.pixel_keys.items()}
    given = dict(fillvalues or {})
    if not spec.xtdf and "adc" in given:  # the reference's name for JUNGFRAU data
        given.setdefault("data", given.pop("adc"))
    unknown = set(given) - {"data", "gain", "mask"}
    if unknown:
        raise ValueError(f"fillvalues keys must be 'data', 'gain' or 'mask', not {sorted(unknown)}")
    fills.update(given)
    out = {}
    for name, dtype in dtypes.items():
        value = fills[name]
        if dtype.kind in "iub" and isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"fill value {value} does not fit the {dtype} {name!r} dataset: "
                             "use an integer")
        try:
            out[name] = dtype.type(value)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"fill value {value!r} does not fit the {dtype} {name!r} dataset"
                             ) from exc
    return out


def _map(spec: CxiSpec, builder: NestedBuilder, key: str, names: SourceNames,
         frames_first: bool) -> None:
    """One mapping per module and block of source rows contiguous in file and output."""
    fmap = spec.fmap
    entry, _ = spec.entry(key)
    shape = builder.shape
    cpe = spec.cpe
    for m in range(fmap.n_modules):
        slot = spec.det.module_slot(int(fmap.modules[m]))
        for run in block_runs(fmap, m, per_train=not spec.xtdf):
            ref = names.ref(fmap, run.file, fmap.sources[m], key)
            zeros = (0,) * len(entry)
            if frames_first:
                vstart = (run.dst_start * cpe, slot) + (0,) * (len(shape) - 2)
                vcount = (run.length * cpe, 1) + tuple(shape[2:])
                scount = (run.length,) + entry
            else:
                vstart = (slot, run.dst_start) + zeros
                vcount = (1, run.length) + entry
                scount = (run.length,) + entry
            builder.add(vstart, vcount, ref, (run.src_start,) + zeros, scount)


def _close(ds: h5py.Dataset) -> None:
    """Free a finished dataset's mappings now (HDF5 holds ~20 KB per mapping in the open
    dataset) instead of when the file closes."""
    ds.id.close()


def _bulk_axes(spec: CxiSpec, entry: tuple[int, ...]) -> str:
    """CXI-style axes of a by_module dataset, e.g. module_identifier:experiment_identifier:y:x."""
    names = ["module_identifier"] + (["experiment_identifier"] if spec.xtdf else ["train"])
    rest = list(entry)
    if not spec.xtdf and rest:
        names.append("cell")
        rest = rest[1:]
    tail = []
    if len(rest) >= 2 and tuple(rest[-2:]) == tuple(spec.det.module_shape):
        tail, rest = ["y", "x"], rest[:-2]
    names += ["data_gain" if tail else f"dim_{i}" for i in range(len(rest))] + tail
    return ":".join(names)


def _frame_id_blocks(spec: CxiSpec) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first frame, train ID per frame, pulse ID (JUNGFRAU: memory cell) per frame) of
    blocks of trains, so that a long run's frame identifiers (16 bytes per frame) are
    never held whole. XTDF IDs that disagree between modules go to the detector's
    reader, which raises naming the module."""
    fmap = spec.fmap
    if spec.xtdf:
        key = spec.det.kind.pulse_key
        entry, dtype = spec.entry(key)
        index = (0,) if entry[:1] == (1,) else ()
        try:
            for t0, t1, base, block in agreed_key_blocks(fmap, [(key, dtype, index)]):
                yield base, np.repeat(fmap.train_ids[t0:t1], spec.frame_counts[t0:t1]), \
                    block[key]
            return
        except IdsDisagree:
            ids = read_inner_ids(fmap, key, "pulseId", index)
    else:
        ids = spec.pulse_ids()
    yield 0, np.repeat(fmap.train_ids.astype(np.uint64), spec.frame_counts), ids


def _write_entry(h5: h5py.File, spec: CxiSpec) -> None:
    h5.create_dataset("cxi_version", data=[CXI_VERSION])
    entry = h5.create_group("entry_1")
    n = spec.n_frames
    d = entry.create_dataset("experiment_identifier", shape=(n,), dtype=h5py.string_dtype())
    pulses = entry.create_dataset(spec.pulse_label, shape=(n,), dtype=np.uint64)
    trains = entry.create_dataset("trainId", shape=(n,), dtype=np.uint64)
    for base, tids, ids in track(_frame_id_blocks(spec), "CXI frame identifiers"):
        pulses[base:base + len(ids)] = ids
        trains[base:base + len(tids)] = tids
        for a in range(0, len(tids), ID_BATCH):   # "trainId:pulseId" strings, a batch at a time
            b = min(a + ID_BATCH, len(tids))
            d[base + a:base + b] = np.char.add(np.char.add(tids[a:b].astype(str), ":"),
                                               ids[a:b].astype(str)).astype(object)
    try:
        meta = spec.det.data.run_metadata()
    except ValueError:
        meta = {}
    if "proposalNumber" in meta and "runNumber" in meta:
        entry.attrs["name"] = f"EuXFEL proposal {meta['proposalNumber']} run {meta['runNumber']}"
        entry.attrs["euxfelProposalNumber"] = meta["proposalNumber"]
        entry.attrs["euxfelRunNumber"] = meta["runNumber"]


@writer_docs
def to_cxi(det_or_run: Any, path: str | os.PathLike[str], *,
           fillvalues: dict[str, Any] | None = None, overwrite: bool = False,
           relative: bool = False) -> Path:
    """Write a virtual CXI 1.5 file of a detector (as ``det.write_virtual_cxi``).

    The reference layout (frames first, ``/entry_1/instrument_1/detector_1/data``)
    for CrystFEL-style tools, plus ``/entry_1/by_module/`` mapping the same rows
    module-first for fast bulk reads. No data is copied.

    Parameters
    ----------
    $det_or_run
    path : str or path-like
        The ``.cxi`` file to write.
    fillvalues : dict, optional
        ``{'data'|'gain'|'mask': value}`` for frames a module lacks (defaults NaN
        or 0, 0, 0xffffffff: the convention of every view form). The file is
        frame-first by nature: its ``by_module`` arrays are the view's frame layout
        (``layout="frames"`` of the other forms), which ``open_view`` reads.
    $overwrite
    relative : bool, default False
        Refer to sources relative to the file's folder (the reference tool stores
        absolute paths, the default here too).

    Returns
    -------
    $returns_path

    Raises
    ------
    $path_exists
    ValueError
        A fill value the dtype cannot hold, modules disagreeing on pulse/cell IDs,
        or a run with several detectors.
    MultiRunError
        The data combines several runs.
    """
    det = as_detector(det_or_run)
    spec = CxiSpec(det)
    fills = _fill_values(spec, fillvalues)
    names = SourceNames(path, relative)
    plan = ViewPlan(det, sorted(spec.bulk_keys.values()), layout="frames")
    mappings: dict[str, int] = {}
    with atomic_h5(path, overwrite, libver=LIBVER) as h5:   # on disk: bounded memory
        small_metadata_cache(h5)    # finished datasets' mappings freed
        _write_entry(h5, spec)
        dgrp = h5.create_group(DET_GROUP)
        dgrp.attrs["name"] = det.detector_name
        data_shape = spec.frames_first_shape("data", spec.pixel_keys["data"])
        if len(data_shape) == 4:
            axes = "experiment_identifier:module_identifier:y:x"
        else:
            axes = "experiment_identifier:module_identifier:data_gain:y:x"
            ndg = data_shape[2]
            d = h5.create_dataset("entry_1/data_gain", shape=(ndg,), dtype=h5py.string_dtype())
            d[:] = ["data", "gain"] if ndg == 2 else ["data"]
            dgrp["data_gain"] = h5py.SoftLink("/entry_1/data_gain")
        for name, key in track(list(spec.pixel_keys.items()) + [("cellId", spec.cell_key)],
                               "building CXI datasets"):
            dtype = spec.entry(key)[1]
            b = NestedBuilder(spec.frames_first_shape(name, key), dtype, fills.get(name, 0),
                              axis=0)
            _map(spec, b, key, names, frames_first=True)
            where = h5["entry_1"] if name == "cellId" else dgrp
            ds = b.create(where, name)
            ds.attrs["axes"] = ("experiment_identifier:module_identifier" if name == "cellId"
                                else axes)
            mappings[ds.name.lstrip("/")] = b.count
            _close(ds)
            names.forget(key)
        dgrp["experiment_identifier"] = h5py.SoftLink("/entry_1/experiment_identifier")
        h5["entry_1/data_1"] = h5py.SoftLink("/" + DET_GROUP)
        dgrp.create_dataset("module_identifier", data=spec.modulenos)

        bulk = h5.create_group(BULK_GROUP)
        arrays, used_fills = {}, {}
        for name, key in track(list(spec.bulk_keys.items()), "building CXI by_module"):
            entry, dtype = spec.entry(key)
            used_fills[key] = fills.get(name, plan.key(key).fill_value)
            b = NestedBuilder(spec.bulk_shape(key), dtype, used_fills[key], axis=1)
            _map(spec, b, key, names, frames_first=False)
            ds = b.create(bulk, name)
            ds.attrs["axes"] = _bulk_axes(spec, entry)
            ds.attrs["layout"] = "frames"
            arrays[key] = ds.name.lstrip("/")
            mappings[arrays[key]] = b.count
            _close(ds)
            names.forget(key)
        coords = write_coords(bulk, plan, [spec.group])
        record = view_record(plan, "cxi", path, relative, arrays=arrays, coords=coords,
                             cxi={"fillvalues": {k: fill_to_json(v) for k, v in fills.items()},
                                  "mappings": mappings})
        for key, value in used_fills.items():
            record["keys"][key]["fill_value"] = fill_to_json(value)
        store_record(h5, record)
    log.info("Wrote virtual CXI file %s: %d frames, %d modules", path, spec.n_frames,
             det.n_modules)
    return Path(path)
