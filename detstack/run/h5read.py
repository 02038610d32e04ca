"""Low-level h5py reads for the index: one HDF5 call each, no high-level wrappers.

Opening thousands of files spends its time in per-call overhead, so the few datasets
read at open go through `h5py.h5d` directly.
"""

from __future__ import annotations

import h5py
import numpy as np


def read_whole(loc: h5py.h5g.GroupID | h5py.h5f.FileID, name: str) -> np.ndarray:
    """A whole numeric dataset, read with one H5Dread."""
    dset = h5py.h5d.open(loc, name.encode())
    out = np.empty(dset.shape, dtype=dset.dtype)
    if out.size:
        dset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def exists(fid: h5py.h5f.FileID, path: str) -> bool:
    """Does every component of `path` exist (links only: nothing is opened)."""
    parts = path.split("/")
    return all(fid.links.exists("/".join(parts[:i + 1]).encode()) for i in range(len(parts)))
