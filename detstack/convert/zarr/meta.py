"""The metadata of a zarr store: arrays' ``zarr.json``, coordinate arrays, root record.

Built by zarr-python itself in memory, so every document is exactly what zarr
writes and reads, then copied to the target by the converter: arrays and
coordinates first, the root group (consolidated metadata and the view record)
last, as the completion marker.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from ...store.zarr_store import RECORD_ATTR, count_name
from ..plan import ViewPlan
from .layout import ArrayLayout, chunk_codecs_of, default_compressor, resolve_compressor
from .lossy import LOSSY_ATTR, quantize_step

Coordinate = tuple[tuple[str, ...], np.ndarray]   # dims, values


def _frame_id_keys(plan: ViewPlan, layouts: Sequence[ArrayLayout]) -> dict[str, ArrayLayout]:
    """{'pulse_id'/'cell_id': layout of the key holding them} for keys in the store whose
    values are one number per frame (or memory cell)."""
    kind = plan.det.kind
    by_key = {lay.key: lay for lay in layouts}
    out: dict[str, ArrayLayout] = {}
    if plan.frames:      # the frame axis has its own per-frame coordinates
        return out
    for name, key in (("cell_id", kind.cell_key), ("pulse_id", kind.pulse_key)):
        lay = by_key.get(key)
        if lay is None or key in {v.key for v in out.values()}:
            continue
        inner = [d for d, s in zip(lay.dims[2:], lay.shape[2:], strict=True) if s != 1]
        if len(inner) == 1 and inner[0] in ("pulse", "cell"):
            out[name] = lay
    return out


def coordinate_dims(plan: ViewPlan, layouts: Sequence[ArrayLayout]) -> dict[str, tuple[str, ...]]:
    """Names and dims of the coordinate arrays (values come later, in ``coordinates``)."""
    dims: dict[str, tuple[str, ...]] = {"module": ("module",), "train": ("train",)}
    for group in sorted({lay.group for lay in layouts}):
        dims[count_name(group)] = ("module", "train")
    for name, lay in _frame_id_keys(plan, layouts).items():
        dims[name] = ("train", "pulse" if lay.per_frame else "cell")
    if any(lay.frame_axis for lay in layouts):
        for name in plan.frame_coordinates():
            dims[name] = ("frame",)
    return dims


def _frame_ids(plan: ViewPlan, lay: ArrayLayout) -> np.ndarray:
    """(train, frame) IDs, taken from the first module that has each train."""
    n_frames = int(np.prod(lay.shape[2:]))      # the other axes have length 1
    out = np.zeros((len(plan.train_ids), n_frames), lay.dtype)
    fmap = plan.frame_map(plan.key(lay.key))
    taken = np.zeros(len(plan.train_ids), bool)
    for m in range(fmap.n_modules):
        trains = np.flatnonzero((fmap.counts[m] > 0) & ~taken)
        for fi in np.unique(fmap.file[m, trains]):
            f = fmap.files[int(fi)]
            sel = trains[fmap.file[m, trains] == fi]
            first = fmap.first[m, sel].astype(np.int64)
            count = fmap.counts[m, sel].astype(np.int64) if lay.per_frame else np.ones_like(first)
            lo, hi = int(first.min()), int((first + count).max())
            with h5py.File(f.path, "r") as h5:
                rows = np.asarray(h5[f.dataset_path(fmap.sources[m], lay.key)][lo:hi])
            rows = rows.reshape(len(rows), -1)
            for t, a, c in zip(sel, first - lo, count, strict=True):
                vals = rows[a:a + c].reshape(-1)
                out[t, :len(vals)] = vals[:n_frames]
        taken[trains] = True
    return out


def coordinates(plan: ViewPlan, layouts: Sequence[ArrayLayout]) -> dict[str, Coordinate]:
    det = plan.det
    dims = coordinate_dims(plan, layouts)
    numbers = np.arange(plan.n_slots, dtype=np.int64) + det.kind.modno_base
    out: dict[str, Coordinate] = {
        "module": (dims["module"], numbers),
        "train": (dims["train"], np.asarray(plan.train_ids, np.uint64)),
    }
    for group in sorted({lay.group for lay in layouts}):
        out[count_name(group)] = (dims[count_name(group)], plan.counts(group))
    for name, lay in _frame_id_keys(plan, layouts).items():
        out[name] = (dims[name], _frame_ids(plan, lay))
    if any(lay.frame_axis for lay in layouts):
        out.update({name: (dims[name], values)
                    for name, values in plan.frame_coordinates().items()})
    return out


def _coordinates_attr(lay: ArrayLayout, coord_dims: dict[str, tuple[str, ...]]) -> str:
    names = [n for n, d in coord_dims.items()
             if n not in ("module", "train") and set(d) <= set(lay.dims)
             and (not n.startswith("count.") or n == count_name(lay.group))]
    return " ".join(names)


def build_metadata(layouts: Sequence[ArrayLayout], compressor: Any,
                   coord_dims: dict[str, tuple[str, ...]],
                   coords: dict[str, Coordinate] | None = None,
                   record: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every metadata object of the store (and coordinate chunks when ``coords`` given),
    as ``{store key: bytes}``; the root ``zarr.json`` only when ``record`` is given."""
    import zarr
    import zarr.storage
    from zarr.codecs import TransposeCodec

    objects: dict[str, Any] = {}
    store = zarr.storage.MemoryStore(store_dict=objects)
    root = zarr.create_group(store, attributes={RECORD_ATTR: record} if record else {},
                             zarr_format=3)
    for lay in layouts:
        codecs = resolve_compressor(compressor, lay.dtype)
        attrs = {}
        coords_attr = _coordinates_attr(lay, coord_dims)
        if coords_attr:
            attrs["coordinates"] = coords_attr
        if lay.lossy is not None:
            attrs[LOSSY_ATTR] = lay.lossy.to_json()
        root.create_array(lay.key, shape=lay.shape, dtype=lay.dtype, chunks=lay.chunk,
                          shards=lay.unit if lay.sharded else None,
                          filters=[TransposeCodec(order=lay.order)] if lay.order else None,
                          compressors=codecs or None, fill_value=lay.fill_value,
                          dimension_names=list(lay.dims), attributes=attrs)
    for name, (dims, values) in (coords or {}).items():
        arr = root.create_array(name, shape=values.shape, dtype=values.dtype,
                                chunks=tuple(max(s, 1) for s in values.shape),
                                compressors=[default_compressor(values.dtype)], fill_value=0,
                                dimension_names=list(dims))
        if values.size:
            arr[...] = values
    if record is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(store)
    else:
        objects.pop("zarr.json", None)
    return {key: buf.to_bytes() for key, buf in objects.items()}


def with_codecs(layouts: Sequence[ArrayLayout], docs: dict[str, bytes]) -> list[ArrayLayout]:
    """Layouts carrying the exact codec configuration zarr recorded (e.g. blosc typesize)."""
    from dataclasses import replace
    out = []
    for lay in layouts:
        codecs = chunk_codecs_of(json.loads(docs[f"{lay.key}/zarr.json"]))
        if lay.lossy is not None:
            codecs = (quantize_step(lay.lossy), *codecs)
        out.append(replace(lay, codecs=codecs))
    return out


def lossy_record(record: dict[str, Any], layouts: Sequence[ArrayLayout]) -> dict[str, Any]:
    """The view record with each lossy key's mode, parameters and error bound."""
    for lay in layouts:
        if lay.lossy is not None:
            record["keys"][lay.key]["lossy"] = lay.lossy.to_json()
    return record
