"""Files a run folder may hold that are not run files: views made from the run.

Users (and older tools) write views beside the data: detstack HDF5 views and CXI
files, EXtra-data's virtual CXI files. They are HDF5 but have no INDEX, so opening
them as run files fails; run readers leave them out quietly instead of warning.
"""

from __future__ import annotations

import os
import stat

import h5py

VIEW_RECORD_ATTR = "detstack_record"   # the record attribute of detstack HDF5 views
SIDECAR_ATTR = "detstack_manifest_arrays"  # marks the small-array file of a zarr manifest


def is_derived_view(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is an HDF5 view of a run (detstack view or virtual CXI file).

    Parameters
    ----------
    path : str or path-like
        An HDF5 file that failed to open as a run file.

    Returns
    -------
    bool
        True for a file with no ``INDEX`` group that carries a detstack view record,
        the mark of a manifest's sidecar, or a CXI ``cxi_version``; False for anything else (including unreadable files).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False    # a FIFO or device is never opened (the caller refuses it)
        with h5py.File(path, "r") as f:
            if "INDEX" in f:
                return False
            return (VIEW_RECORD_ATTR in f.attrs or SIDECAR_ATTR in f.attrs
                    or "cxi_version" in f)
    except (OSError, ValueError):
        return False
