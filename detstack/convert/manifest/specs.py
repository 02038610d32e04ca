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
from .copied import whole_array
from .holes import index_ranges
from .refs import (
    RefBatch,
    chunk_table,
    concat,
    dataset,
    key_rows,
    row_groups,
    source_datasets,
    url_numbers,
)
from .storage import Storage, UnsupportedKeyError, dataset_storage, same_fill

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
    copied: bool = False             # values copied from the run (inline or in the sidecar)
    copy_from: tuple[ViewPlan, KeyPlan] | None = None   # a key to copy, not read yet
    unallocated: list[list[int]] = field(default_factory=list)  # see holes.py

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
    def inline(self) -> bool:
        """Values to copy (read already, or when written), not references yet."""
        return self.data is not None or self.copy_from is not None

    def load(self) -> np.ndarray:
        """The whole array of a copied key (read from the run on first use)."""
        if self.data is None:
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
    """A zarr v2 ``fill_value``: explicit where it is not zero (floats NaN, masks all bits
    set); ``null`` for zero-filled integers, so that plain xarray does not CF-mask their
    zeros (cell IDs, ADC values; detstack and zarr-python 3 read ``null`` as 0)."""
    if dtype.kind in "fc":
        return "NaN" if np.isnan(value) else float(value)
    if not value:
        return None
    return bool(value) if dtype.kind == "b" else int(value)


def inline_chunks(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """Chunks of an array copied into the manifest: along its first two axes."""
    chunks = list(shape) or [1]
    row = dtype.itemsize * math.prod(shape[2:]) if len(shape) > 1 else dtype.itemsize
    if len(shape) >= 2:
        chunks[0] = 1
        chunks[1] = max(1, min(shape[1], INLINE_CHUNK_BYTES // max(row, 1)))
    return tuple(max(c, 1) for c in chunks)


def inline_spec(name: str, dims: list[str], data: np.ndarray, fill: Any = 0) -> ArraySpec:
    """An array copied into the manifest, chunked along its first two axes."""
    data = np.ascontiguousarray(data)
    return ArraySpec(name, dims, data.shape, inline_chunks(data.shape, data.dtype),
                     data.dtype, fill, None, {"id": "zlib", "level": 1}, data=data,
                     copied=True)


def referenced_spec(plan: ViewPlan, kp: KeyPlan, url_of: dict[Path, int]) -> ArraySpec:
    """References to every stored chunk of ``kp``, after checking they decode exactly;
    the references themselves are built when a writer asks for them, module by module."""
    fmap = plan.frame_map(kp)
    storages = {(fi, m): dataset_storage(dataset(fmap, fi, m, kp.key), kp)
                for fi, m in source_datasets(plan, kp)}
    signatures = {st.signature for st in storages.values()}
    if len(signatures) > 1:
        raise UnsupportedKeyError(kp.key, "its files differ in chunk shape or HDF5 filters "
                                  f"({sorted(map(str, signatures))[:2]}); one Zarr array has "
                                  "one chunk shape and one codec pipeline")
    first = next(iter(storages.values())) if storages else Storage(kp.entry_shape, 1, (), -1)
    filters, compressor = first.codecs()
    lead = (1,) * len(plan.lead_shape(kp))
    stored_chunk = tuple(first.chunk[i] for i in kp.kept_axes)  # dropped axes: length 1
    holes: list[list[int]] = []
    return ArraySpec(
        kp.key, list(plan.dims(kp)), plan.shape(kp), lead + stored_chunk, kp.dtype,
        kp.fill_value, filters, compressor,
        refs=functools.partial(_reference_batches, plan, kp, storages, first.chunk, url_of,
                               holes), unallocated=holes)


def _reference_batches(plan: ViewPlan, kp: KeyPlan, storages: dict[tuple[int, int], Storage],
                       chunk: tuple[int, ...], url_of: dict[Path, int],
                       holes: list[list[int]]) -> Iterator[RefBatch]:
    """One batch of references per module, in the view's chunk order (slot by slot);
    ``holes`` receives the chunks the counts promise but the files never allocated."""
    holes.clear()
    entry_grid = tuple(-(-e // c) for e, c in zip(kp.entry_shape, chunk, strict=True))
    n_e = math.prod(entry_grid)
    part_bytes = kp.dtype.itemsize * math.prod(chunk)
    fmap = plan.frame_map(kp)
    urls = url_numbers(fmap, url_of)
    for m in np.argsort(plan.slots, kind="stable").tolist():
        rows, _ = key_rows(plan, kp, [m])
        parts = []
        for fi, mi, sel in row_groups(rows):
            ds = dataset(fmap, fi, mi, kp.key)
            st = storages[fi, mi]
            src = rows.src_row[sel]
            k = st.rows_per_chunk
            n_row_chunks = -(-ds.shape[0] // k) if ds.shape[0] else 0
            if len(src) and int(src.max()) >= ds.shape[0]:
                raise UnsupportedKeyError(kp.key, f"INDEX of {ds.file.filename} points past "
                                          f"the end of {ds.name}")
            t_off, t_size, t_mask = chunk_table(ds, k, bool(st.filters), st.contiguous_offset,
                                                entry_grid, n_row_chunks)
            rc, within = src // k, src % k
            off = t_off[rc]                             # (n rows, n_e)
            if st.filters:
                size = t_size[rc]
                if (t_mask[rc][off >= 0] != 0).any():
                    raise UnsupportedKeyError(kp.key, f"some chunks of {ds.file.filename}:"
                                              f"{ds.name} skip HDF5 filters (filter_mask != 0)")
            else:
                off = np.where(off >= 0, off + (within * part_bytes)[:, None], -1)
                size = np.full(off.shape, part_bytes, np.int64)
            have = off >= 0
            if not have.all() and not same_fill(ds, kp):
                raise UnsupportedKeyError(kp.key, f"rows of {ds.file.filename}:{ds.name} are "
                                          "not allocated and read as "
                                          f"{ds.fillvalue!r}, not the view's fill value "
                                          f"{kp.fill_value!r}")
            cidx = rows.view_row[sel][:, None] * n_e + np.arange(n_e)[None, :]
            holes += index_ranges(cidx[~have])
            parts.append(RefBatch(cidx[have], np.full(int(have.sum()), urls[fi], np.int32),
                                  off[have], size[have]))
        if parts:
            yield concat(parts)


def copied_spec(plan: ViewPlan, kp: KeyPlan) -> ArraySpec:
    """A small key copied from the files (IDs, headers); read when written (``copied``)."""
    shape = plan.shape(kp)
    return ArraySpec(kp.key, list(plan.dims(kp)), shape, inline_chunks(shape, kp.dtype),
                     kp.dtype, kp.fill_value, None, {"id": "zlib", "level": 1}, copied=True,
                     copy_from=(plan, kp))


def coordinate_specs(plan: ViewPlan, keys: list[str]) -> list[ArraySpec]:
    """The view's coordinate arrays (``ViewPlan.coordinates``) for the keys written."""
    return [inline_spec(name, list(c.dims), c.values)
            for name, c in plan.coordinates(keys).items()]


