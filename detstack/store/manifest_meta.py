"""Limits on a manifest's metadata and inline data, checked before zarr sees them.

A manifest is data from someone else. Its Zarr metadata could declare an array
of 10**15 elements, nest JSON a million levels deep, or inline a zlib bomb that
a 2.8 MB manifest expands to gigabytes. Here every array's metadata is checked
once, integer arrays without a fill value get the view's one explicitly (zarr 2
readers would show uninitialised memory), and every inline chunk is decoded
with a bound: never more than the array's chunk size.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ViewLimitError

log = logging.getLogger(__name__)

MAX_ELEMENTS = 2**47          # ~1.4e14: far above any run (a 1M detector, 10 000 trains: 2e13)
MAX_CHUNK_BYTES = 1 << 31     # one decoded chunk
MAX_DEPTH = 64                # JSON nesting of any metadata document
SLACK = 64                    # bytes a size-neutral filter may add (fletcher32: 4)
SIZE_NEUTRAL = {"shuffle", "delta", "fletcher32", "fixedscaleoffset", "bitround", "quantize"}
BOUNDABLE = {None, "zlib", "gzip", "blosc"}


def _depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:        # only containers are stacked: a scalar adds no depth below it
        value, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            return deepest
        items = value.values() if isinstance(value, dict) else value \
            if isinstance(value, list) else ()
        stack.extend((v, d + 1) for v in items if isinstance(v, (dict, list)))
        if d + 1 > deepest and any(not isinstance(v, (dict, list)) for v in items):
            deepest = d + 1
    return deepest


def loads(text: str | bytes, where: str) -> Any:
    """``json.loads`` refusing documents nested deeper than ``MAX_DEPTH``."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise ViewLimitError(f"{where}: JSON nested too deeply to parse; this is not a "
                             "manifest detstack or kerchunk wrote. Do not open it") from exc
    check_depth(value, where)
    return value


def check_depth(value: Any, where: str) -> None:
    if _depth(value) > MAX_DEPTH:
        raise ViewLimitError(f"{where}: JSON nested more than {MAX_DEPTH} levels deep; no "
                             "manifest needs that. Do not open it")


@dataclass(frozen=True)
class ChunkBound:
    """What one chunk of an array may decode to."""

    nbytes: int
    compressor: str | None
    filters: tuple[str, ...]


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                           for v in value)


def check_array(name: str, meta: Any, where: str) -> ChunkBound:
    """Refuse absurd shapes, chunks and dtypes; the bound on one decoded chunk."""
    if not isinstance(meta, dict):
        raise ViewLimitError(f"{where}: metadata of array {name!r} is not a JSON object")
    shape, chunks = meta.get("shape"), meta.get("chunks")
    if not (_ints(shape) and _ints(chunks) and len(shape) == len(chunks)
            and all(s >= 0 for s in shape) and all(c >= 1 for c in chunks)):
        raise ViewLimitError(f"{where}: array {name!r} has an invalid shape {shape!r} or "
                             f"chunks {chunks!r}")
    try:
        dtype = np.dtype(meta.get("dtype"))
    except (TypeError, ValueError) as exc:
        raise ViewLimitError(f"{where}: array {name!r} has an unreadable dtype "
                             f"{meta.get('dtype')!r}") from exc
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise ViewLimitError(f"{where}: array {name!r} declares {n:.3g} elements (shape "
                             f"{shape}), beyond any detector run (limit {MAX_ELEMENTS:.3g}); "
                             "the manifest is damaged or hostile. Do not open it")
    nbytes = math.prod(chunks) * dtype.itemsize
    if nbytes > MAX_CHUNK_BYTES:
        raise ViewLimitError(f"{where}: array {name!r} declares chunks of {nbytes / 2**30:.1f} "
                             f"GiB (chunks {chunks}), above the {MAX_CHUNK_BYTES >> 30} GiB "
                             "limit. Do not open it")
    comp = meta.get("compressor")
    filters = meta.get("filters") or []
    if not isinstance(filters, list):
        filters = []
    return ChunkBound(nbytes, comp.get("id") if isinstance(comp, dict) else None,
                      tuple(f.get("id", "?") if isinstance(f, dict) else "?" for f in filters))


def fill_null_values(metadata: dict[str, Any], record: dict[str, Any], where: str) -> int:
    """Give integer arrays with ``"fill_value": null`` the view's fill value (0, or the
    record's): zarr 2 readers would return uninitialised memory for absent chunks."""
    keys = record.get("keys", {}) if isinstance(record, dict) else {}
    fixed = 0
    for name, meta in metadata.items():
        if not name.endswith(".zarray") or not isinstance(meta, dict):
            continue
        if meta.get("fill_value") is not None:
            continue
        try:
            kind = np.dtype(meta.get("dtype")).kind
        except (TypeError, ValueError):
            continue
        if kind in "iub":
            info = keys.get(name[:-len("/.zarray")], {})
            fill = info.get("fill_value") if isinstance(info, dict) else None
            meta["fill_value"] = fill if isinstance(fill, int) else 0
            fixed += 1
    if fixed:
        log.info("%s: %d integer arrays had no fill value; reading absent chunks as the "
                    "view's fill value (0)", where, fixed)
    return fixed


def check_metadata(metadata: dict[str, Any], where: str) -> dict[str, ChunkBound]:
    """Check every array's metadata; the chunk bound of each array by name."""
    check_depth(metadata, where)
    return {name[:-len("/.zarray")]: check_array(name[:-len("/.zarray")], meta, where)
            for name, meta in metadata.items() if name.endswith(".zarray")}


def check_inline_chunk(key: str, data: bytes, bound: ChunkBound | None, where: str) -> None:
    """Refuse an inline chunk that would decode past its array's chunk size."""
    if bound is None:
        return
    limit = bound.nbytes + SLACK
    chain = [*bound.filters, *([bound.compressor] if bound.compressor else [])]
    outer = chain.pop() if chain and chain[-1] in BOUNDABLE else None  # decoded first
    unknown = [f for f in chain if f not in SIZE_NEUTRAL]
    if unknown:
        raise ViewLimitError(f"{where}: inline chunk {key!r} uses codecs "
                             f"{[*unknown, outer]} whose output size detstack cannot "
                             "bound; open a manifest with zlib/gzip/blosc inline data")
    if outer is None:
        size = len(data)
    elif outer == "blosc":
        from numcodecs.blosc import cbuffer_sizes
        try:
            size = int(cbuffer_sizes(data)[0])
        except (ValueError, RuntimeError) as exc:
            raise ViewLimitError(f"{where}: inline chunk {key!r} is not blosc data") from exc
    else:
        wbits = 31 if outer == "gzip" else 15
        try:
            size = len(zlib.decompressobj(wbits).decompress(data, limit + 1))
        except zlib.error as exc:
            raise ViewLimitError(f"{where}: inline chunk {key!r} is not valid "
                                 f"{outer} data ({exc})") from exc
    if size > limit:
        raise ViewLimitError(f"{where}: inline chunk {key!r} decodes to more than the "
                             f"{bound.nbytes} bytes of one chunk of its array; the manifest is "
                             "damaged or hostile (a decompression bomb). Do not open it")
