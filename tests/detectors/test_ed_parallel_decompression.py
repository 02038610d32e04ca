"""EXtra-data's parallel decompression misreads 4-D compressed datasets; detstack does not.

With the optional ``zlib-into`` package, EXtra-data 1.25 decompresses one-frame chunks in
threads. It asks HDF5 for chunk ``(i, 0, 0)`` whatever the dataset's rank; for 4-D
datasets (raw LPD ``image.data`` is (N, 1, 256, 256), raw AGIPD (N, 2, 512, 128)) h5py
raises ``TypeError``, which EXtra-data takes for an unallocated chunk, leaving the fill
value where the file holds data. Plain h5py is the judge.
"""

from __future__ import annotations

import importlib.util

import h5py
import numpy as np
from conftest import LPD, index_rows, xtdf_source
from detcheck import det_pair


def test_parallel_decompression_vs_h5py(ed_lpd_filled):
    path = ed_lpd_filled / "RAW-R0450-LPD05-S00000.h5"
    src = xtdf_source(LPD, 5)
    rows = index_rows(path, src, "image", [1])
    with h5py.File(path, "r") as f:
        ds = f[f"INSTRUMENT/{src}/image/data"]
        assert ds.ndim == 4 and ds.compression == "gzip" and ds.chunks[0] == 1
        truth = ds[rows[0]:rows[-1] + 1][:, 0]     # the reader drops the length-1 axis
    assert truth.any()

    ours, ref = det_pair(ed_lpd_filled, "LPD1M", trains=np.s_[1:2], modules=[5])
    got = ours["image.data"].ndarray(fill_value=7)[0]
    np.testing.assert_array_equal(got, truth)
    serial = ref["image.data"].ndarray(fill_value=7, decompress_threads=1)[0]
    np.testing.assert_array_equal(serial, truth)
    threaded = ref["image.data"].ndarray(fill_value=7, decompress_threads=2)[0]
    if importlib.util.find_spec("zlib_into") is not None:   # EXtra-data's fast path runs
        assert (threaded == 7).all()                         # ... and reads nothing
    else:                                                    # no fast path: HDF5 reads
        np.testing.assert_array_equal(threaded, truth)
