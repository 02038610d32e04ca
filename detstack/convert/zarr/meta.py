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

import numpy as np

from ...store.zarr_store import RECORD_ATTR, count_name
from ..plan import ViewPlan
from .layout import ArrayLayout, chunk_codecs_of, default_compressor, resolve_compressor
from .lossy import LOSSY_ATTR, quantize_step

Coordinate = tuple[tuple[str, ...], np.ndarray]   # dims, values


def _keys(layouts: Sequence[ArrayLayout]) -> list[str]:
    return [lay.key for lay in layouts]


def coordinate_dims(plan: ViewPlan, layouts: Sequence[ArrayLayout]) -> dict[str, tuple[str, ...]]:
    """Names and dims of the coordinate arrays (``ViewPlan.coordinates``), no values."""
    return {name: c.dims for name, c in plan.coordinates(_keys(layouts)).items()}


def coordinates(plan: ViewPlan, layouts: Sequence[ArrayLayout]) -> dict[str, Coordinate]:
    """The coordinate arrays of the store, read (``ViewPlan.coordinates``)."""
    return {name: (c.dims, c.values) for name, c in plan.coordinates(_keys(layouts)).items()}


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
