"""The low-level mapping machinery of HDF5 views (shared with the CXI writer).

Mappings are built with h5py's low-level API (``VirtualSource`` slicing costs ~100 us per
mapping, the low-level calls a fifth of that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ...errors import DetstackError
from ...frames import FrameMap, Run
from ...run.files import RunFile

LIBVER = ("v110", "v110")          # readable by HDF5 >= 1.10
# metadata cache of a view being written (bytes): see ``small_metadata_cache``
WRITE_CACHE_BYTES = 128 * 1024


class ViewSourceError(DetstackError, ValueError):
    """A detector whose data are not in EuXFEL HDF5 files cannot back a virtual view."""


def run_file(fmap: FrameMap, file_index: int) -> RunFile:
    """The run file a mapping names; anything else cannot back a view."""
    f = fmap.files[file_index]
    if not isinstance(f, RunFile):
        raise ViewSourceError(
            f"{f!r} is not an EuXFEL HDF5 file: an HDF5 view maps the original run "
            "files. Convert from the run itself (or use convert.materialize to copy a "
            "view)")
    return f


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
            f = run_file(fmap, file_index)
            dset = f.dataset_path(source, key)
            shape = f.source_keys(source)[key][0]
            ref = SourceRef(self.file_name(f.path).encode(), dset.encode(),
                            self.space(tuple(shape)))
            self._refs[cache_key] = ref
        return ref

    def forget(self, key: str) -> None:
        """Drop the references of a finished key (one per file and module: memory that
        would grow with run length)."""
        self._refs = {k: v for k, v in self._refs.items() if k[2] != key}

    def space(self, shape: tuple[int, ...]) -> h5py.h5s.SpaceID:
        """A dataspace of ``shape`` (shared: a mapping copies its selection)."""
        space = self._spaces.get(shape)
        if space is None:
            space = self._spaces[shape] = h5py.h5s.create_simple(shape)
        return space

    @staticmethod
    def chunked(fmap: FrameMap, file_index: int, source: str, key: str) -> bool:
        f = run_file(fmap, file_index)
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


def small_metadata_cache(h5: h5py.File, size: int = WRITE_CACHE_BYTES) -> None:
    """Keep HDF5's metadata cache of a view being written small, so a finished virtual
    dataset's mappings are freed soon after it is closed.

    HDF5 keeps a closed dataset's object header in the file's metadata cache with the
    decoded layout attached: ~7 KB per mapping. The cache sizes entries by their
    encoded size (~0.2 KB per mapping), so its default 2 MB held the mappings of every
    small key of a long run (18 keys x 2,055 mappings at 30,000 AGIPD-1M trains) and of
    the last few blocks: memory that grew with run length. A writer only creates
    objects, so a small cache costs it nothing measurable.
    """
    cfg = h5.id.get_mdc_config()
    cfg.set_initial_size = True
    cfg.initial_size = cfg.max_size = size
    cfg.min_size = min(cfg.min_size, size)
    cfg.incr_mode = cfg.flash_incr_mode = 0   # never grow
    h5.id.set_mdc_config(cfg)


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
