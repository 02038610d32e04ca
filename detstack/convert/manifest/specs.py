"""The arrays of a manifest: referenced keys, copied small keys, coordinates."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Zlib

from ..plan import KeyPlan, ViewPlan
from .coords import Window, coordinate_window
from .copied import whole_array
from .keyrefs import KeyReferences
from .refs import RefBatch, dataset, source_datasets
from .storage import Storage, UnsupportedKeyError, dataset_storage

log = logging.getLogger(__name__)

INLINE_BELOW = 4096          # rows smaller than this (bytes) are copied into the manifest
INLINE_CHUNK_BYTES = 1 << 20  # chunk size of copied arrays
_ZLIB = Zlib(level=1)

# -- arrays of the manifest -------------------------------------------------------------


@dataclass
class ArraySpec:
    """One Zarr array: metadata plus referenced chunks or chunk bytes to inline."""

    name: str
    dims: list[str]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill: Any
    filters: list[dict[str, Any]] | None = None
    compressor: dict[str, Any] | None = None
    # referenced chunks: batches of references in ascending chunk order (RefBatch)
    refs: Callable[[], Iterator[RefBatch]] | None = None
    data: np.ndarray | None = None   # inlined arrays: the whole array
    lazy: Callable[[], np.ndarray] | None = None   # ... or how to read it, when written
    window: Window | None = None     # ... and how to read trains t0:t1 (its ``train`` axis)
    copied: bool = False             # values copied from the run (inline or in the sidecar)
    copy_from: tuple[ViewPlan, KeyPlan] | None = None   # a key to copy, not read yet
    unallocated: list[list[int]] = field(default_factory=list)  # see holes.py
    source: KeyReferences | None = None   # a referenced key: how to build its references

    @property
    def referenced(self) -> bool:
        return self.refs is not None

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    def zarray(self) -> dict[str, Any]:
        fill = zarr_fill(self.fill, self.dtype)
        return {"zarr_format": 2, "shape": list(self.shape), "chunks": list(self.chunks),
                "dtype": self.dtype.str, "compressor": self.compressor,
                "filters": self.filters, "fill_value": fill, "order": "C",
                "dimension_separator": "."}

    @property
    def last_chunk(self) -> int:
        return math.prod(self.grid) - 1

    @property
    def inline(self) -> bool:
        """Values to copy (read already, or when written), not references yet."""
        return (self.data is not None or self.copy_from is not None
                or self.lazy is not None)

    def load(self) -> np.ndarray:
        """The whole array of a copied key or coordinate (read on first use)."""
        if self.data is None:
            if self.lazy is not None:
                self.data = np.ascontiguousarray(self.lazy(), self.dtype)
            else:
                assert self.copy_from is not None
                self.data = whole_array(*self.copy_from)
        return self.data

    def inline_chunks(self) -> Iterator[tuple[int, bytes]]:
        """(raveled chunk index, zlib-compressed bytes) of an inlined array."""
        self.load()
        assert self.data is not None
        grid = self.grid
        for i, idx in enumerate(np.ndindex(*grid)):
            sel = tuple(slice(j * c, (j + 1) * c) for j, c in zip(idx, self.chunks, strict=True))
            block = self.data[sel]
            if block.shape != self.chunks:  # zarr v2 stores edge chunks at full size
                full = np.full(self.chunks, self.fill, self.dtype)
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            yield i, bytes(_ZLIB.encode(np.ascontiguousarray(block, self.dtype)))


def zarr_fill(value: Any, dtype: np.dtype) -> Any:
    """A zarr v2 ``fill_value``, always explicit (floats NaN, masks all bits set, other
    integers 0): with ``null``, zarr-python 2 returns uninitialised memory for the chunks
    of absent modules and trains. Plain xarray CF-masks explicit integer fills unless
    opened with ``mask_and_scale=False`` (README, "Fill values")."""
    if dtype.kind in "fc":
        return "NaN" if np.isnan(value) else float(value)
    return bool(value) if dtype.kind == "b" else int(value)


def inline_chunks(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """Chunks of an array copied into the manifest: along its first two axes."""
    chunks = list(shape) or [1]
    row = dtype.itemsize * math.prod(shape[2:]) if len(shape) > 1 else dtype.itemsize
    if len(shape) >= 2:
        chunks[0] = 1
        chunks[1] = max(1, min(shape[1], INLINE_CHUNK_BYTES // max(row, 1)))
    return tuple(max(c, 1) for c in chunks)


Storages = dict[tuple[int, int], Storage]


def key_storages(plan: ViewPlan, kps: list[KeyPlan]) -> dict[str, Storages | UnsupportedKeyError]:
    """The storage of every source dataset of each key (or why the key cannot be
    referenced), file by file: each file is opened once for all keys (a run has more
    files than the pool of open handles keeps)."""
    work = []
    for kp in kps:
        fmap = plan.frame_map(kp)
        work += [(str(fmap.files[fi].path), kp.key, fi, m, kp, fmap)
                 for fi, m in source_datasets(plan, kp)]
    out: dict[str, Storages | UnsupportedKeyError] = {kp.key: {} for kp in kps}
    for _, key, fi, m, kp, fmap in sorted(work, key=lambda w: w[:4]):
        found = out[key]
        if isinstance(found, dict):
            try:
                found[fi, m] = dataset_storage(dataset(fmap, fi, m, key), kp)
            except UnsupportedKeyError as exc:
                out[key] = exc
    return out


def referenced_spec(plan: ViewPlan, kp: KeyPlan, url_of: dict[Path, int],
                    storages: Storages | UnsupportedKeyError | None = None) -> ArraySpec:
    """References to every stored chunk of ``kp``, after checking they decode exactly
    (``storages``: from ``key_storages``, else read here); the references themselves are
    built when a writer asks for them, module by module."""
    if storages is None:
        storages = key_storages(plan, [kp])[kp.key]
    if isinstance(storages, UnsupportedKeyError):
        raise storages
    signatures = {st.signature for st in storages.values()}
    if len(signatures) > 1:
        raise UnsupportedKeyError(kp.key, "its files differ in chunk shape or HDF5 filters "
                                  f"({sorted(map(str, signatures))[:2]}); one Zarr array has "
                                  "one chunk shape and one codec pipeline")
    first = next(iter(storages.values())) if storages else Storage(kp.entry_shape, 1, (), -1)
    filters, compressor = first.codecs()
    lead = (1,) * len(plan.lead_shape(kp))
    stored_chunk = tuple(first.chunk[i] for i in kp.kept_axes)  # dropped axes: length 1
    spec = ArraySpec(kp.key, list(plan.dims(kp)), plan.shape(kp), lead + stored_chunk,
                     kp.dtype, kp.fill_value, filters, compressor)
    # the source shares the spec's list of holes and never refers to the spec: no cycle
    # keeps the run (and its open files) alive after the writer returns
    spec.source = KeyReferences(plan, kp, storages, first.chunk, url_of, spec.unallocated,
                                spec.last_chunk)
    spec.refs = spec.source
    return spec


def copied_spec(plan: ViewPlan, kp: KeyPlan) -> ArraySpec:
    """A small key copied from the files (IDs, headers); read when written (``copied``)."""
    shape = plan.shape(kp)
    return ArraySpec(kp.key, list(plan.dims(kp)), shape, inline_chunks(shape, kp.dtype),
                     kp.dtype, kp.fill_value, None, {"id": "zlib", "level": 1}, copied=True,
                     copy_from=(plan, kp))


def coordinate_specs(plan: ViewPlan, keys: list[str]) -> list[ArraySpec]:
    """The view's coordinate arrays (``ViewPlan.coordinates``) for the keys written, read
    when written (the sidecar: those with a train axis a window at a time, ``coords``)."""
    out = []
    for name, c in plan.coordinates(keys).items():
        window = coordinate_window(plan, name, c)
        lazy = (functools.partial(window, 0, c.shape[c.dims.index("train")])
                if window is not None else functools.partial(getattr, c, "values"))
        out.append(ArraySpec(name, list(c.dims), c.shape, inline_chunks(c.shape, c.dtype),
                             c.dtype, 0, None, {"id": "zlib", "level": 1}, lazy=lazy,
                             window=window, copied=True))
    return out


