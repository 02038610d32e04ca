"""Low-level h5py reads for the index: one HDF5 call each, no high-level wrappers.

Opening thousands of files spends its time in per-call overhead, so the few datasets
read at open go through `h5py.h5d` directly.
"""

from __future__ import annotations

import h5py
import numpy as np

FAPL = h5py.h5p.create(h5py.h5p.FILE_ACCESS)   # what h5py.File uses by default
FAPL.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)


def open_file(path: str) -> h5py.File:
    """`h5py.File(path, "r")`, without building a property list for every file."""
    return h5py.File(h5py.h5f.open(path.encode(), h5py.h5f.ACC_RDONLY, fapl=FAPL))


def read_whole(loc: h5py.h5g.GroupID | h5py.h5f.FileID, name: str) -> np.ndarray:
    """A whole dataset (numbers or strings), read with one H5Dread."""
    return read_dataset(h5py.h5d.open(loc, name.encode()))


def read_dataset(dset: h5py.h5d.DatasetID) -> np.ndarray:
    """All of an open dataset (numbers or strings), read with one H5Dread."""
    out = np.empty(dset.shape, dtype=dset.dtype)
    if out.size:
        dset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def exists(fid: h5py.h5f.FileID, path: str) -> bool:
    """Does every component of `path` exist (links only: nothing is opened)."""
    parts = path.split("/")
    return all(fid.links.exists("/".join(parts[:i + 1]).encode()) for i in range(len(parts)))
