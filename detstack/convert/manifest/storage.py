"""How a source dataset is stored, and whether a manifest can reference it chunk by chunk."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ...errors import DetstackError
from ..plan import KeyPlan

log = logging.getLogger(__name__)

# HDF5 filter id -> (name, numcodecs config from the filter's client data)
_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "deflate",
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
}


class UnsupportedKeyError(DetstackError, ValueError):
    """A key whose data cannot be referenced exactly by a Zarr manifest."""

    def __init__(self, key: str, reason: str) -> None:
        self._made_from = (key, reason)   # travels from a worker process unchanged
        self.key = key
        self.reason = reason
        super().__init__(f"key {key!r} cannot be referenced by a zarr manifest: {reason}. "
                         "Copy it into a zarr store with detstack.convert.to_zarr instead, "
                         "or pass on_unsupported='skip' to leave it out of the manifest")


# -- HDF5 storage ---------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """How the rows of one source dataset are stored."""

    chunk: tuple[int, ...]          # chunk extent over the entry axes
    rows_per_chunk: int             # rows per HDF5 chunk (1 for contiguous storage)
    filters: tuple[tuple[str, int], ...]  # (name, parameter): deflate level, shuffle size
    contiguous_offset: int | None   # file offset of contiguous data (-1: unallocated)

    @property
    def signature(self) -> tuple[Any, ...]:
        """What must agree between files: chunk shape and filters (not deflate levels)."""
        return self.chunk, tuple((n, 0 if n == "deflate" else p) for n, p in self.filters)

    def codecs(self) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """Zarr v2 (filters, compressor): the HDF5 pipeline in its encoding order, all as
        filters (kerchunk's own form, and the one VirtualiZarr reads)."""
        conf = []
        for name, param in self.filters:
            if name == "deflate":
                conf.append({"id": "zlib", "level": param})
            elif name == "shuffle":
                conf.append({"id": "shuffle", "elementsize": param})
            else:
                conf.append({"id": "fletcher32"})
        return conf or None, None


def dataset_storage(ds: h5py.Dataset, kp: KeyPlan) -> Storage:
    """The storage of ``ds``, or UnsupportedKeyError saying why it cannot be referenced."""
    where = f"{ds.file.filename}:{ds.name}"
    if ds.is_virtual:
        raise UnsupportedKeyError(kp.key, f"{where} is a virtual dataset; build the manifest "
                                  "from the run's own files")
    if ds.dtype != kp.dtype or tuple(ds.shape[1:]) != kp.entry_shape:
        raise UnsupportedKeyError(kp.key, f"{where} has dtype {ds.dtype} and rows "
                                  f"{ds.shape[1:]}, unlike the other files")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count():
        raise UnsupportedKeyError(kp.key, f"{where} keeps its data in external files")
    layout = dcpl.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        return Storage(kp.entry_shape, 1, (), -1 if offset is None else int(offset))
    if layout != h5py.h5d.CHUNKED:
        raise UnsupportedKeyError(kp.key, f"{where} uses HDF5 compact storage")
    filters = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, name = dcpl.get_filter(i)
        if code not in _FILTERS:
            raise UnsupportedKeyError(kp.key, f"{where} uses the HDF5 filter "
                                      f"{name.decode(errors='replace')!r} (id {code}), which "
                                      "has no Zarr codec here")
        kind = _FILTERS[code]
        param = 0
        if kind == "deflate":
            param = int(values[0]) if values else 6
        elif kind == "shuffle":
            param = int(values[0]) if values else ds.dtype.itemsize
        filters.append((kind, param))
    storage = Storage(tuple(ds.chunks[1:]), int(ds.chunks[0]), tuple(filters), None)
    if filters and storage.rows_per_chunk > 1:
        raise UnsupportedKeyError(
            kp.key, f"{where} stores {storage.rows_per_chunk} rows per compressed chunk; a "
            "compressed chunk cannot be split into the per-frame chunks of the view, and its "
            "rows cross train boundaries")
    return storage


def same_fill(ds: h5py.Dataset, kp: KeyPlan) -> bool:
    """Does HDF5 read unallocated storage as the view's fill value?"""
    hdf5_fill = np.asarray(ds.fillvalue, dtype=kp.dtype)
    view_fill = np.asarray(kp.fill_value, dtype=kp.dtype)
    return bool(np.array_equal(hdf5_fill, view_fill, equal_nan=kp.dtype.kind in "fc"))


