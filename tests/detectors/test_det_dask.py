"""get_dask_array and key data dask_array vs EXtra-data: layout, labels, computed values."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from detcheck import assert_same_values, assert_same_xarray, compare, det_pair


def assert_same_dask(ours, ref, *, compute: bool = True) -> None:
    """Same dims, shape, dtype, coordinates and chunking; equal computed values."""
    assert isinstance(ours.data, da.Array)
    assert_same_xarray(ours, ref, values=False)
    assert ours.data.chunks == ref.data.chunks
    if compute:
        assert_same_xarray(ours.compute(), ref.compute())


def test_lpd_full_run_labels(ed_mocks):
    """EXtra-data's test_get_dask_array: 16 modules x 480 trains, labels only."""
    ours, ref = det_pair(ed_mocks("fxe_raw", "1.0"), "LPD1M")
    o = ours.get_dask_array("image.data", fill_value=42)
    r = ref.get_dask_array("image.data", fill_value=42)
    assert_same_dask(o, r, compute=False)
    assert o.shape == (16, 61440, 1, 256, 256) and o.dtype == np.uint16
    assert o.dims == ("module", "train_pulse", "dim_0", "dim_1", "dim_2")
    assert_same_values(o.coords["trainId"].values,
                       np.repeat(np.arange(10000, 10480, dtype=np.uint64), 128))
    assert_same_values(o.coords["pulseId"].values,
                       np.tile(np.arange(128, dtype=np.uint64), 480))
    o = ours.get_dask_array("image.data", subtrain_index="cellId")
    r = ref.get_dask_array("image.data", subtrain_index="cellId")
    assert_same_dask(o, r, compute=False)
    assert o.coords["cellId"].shape == (61440,)


@pytest.fixture(scope="module")
def lpd(ed_lpd_filled):
    return det_pair(ed_lpd_filled, "LPD1M", trains=np.s_[1:3], modules=[0, 2, 5])


@pytest.mark.parametrize("kwargs", [{}, {"subtrain_index": "cellId"}, {"fill_value": 9}])
def test_lpd_values(lpd, kwargs):
    ours, ref = lpd
    assert_same_dask(ours.get_dask_array("image.data", **kwargs),
                     ref.get_dask_array("image.data", **kwargs))


def test_lpd_keydata_dask_array(lpd):
    ours, ref = lpd
    for key in ("image.data", "image.pulseId", "header.pulseCount"):
        o, r = ours[key].dask_array(), ref[key].dask_array()
        assert isinstance(o, da.Array)
        assert o.shape == r.shape and o.dtype == r.dtype and o.chunks == r.chunks, key
        assert_same_values(o.compute(), r.compute())
    # frames_per_chunk and a pulse selection
    o = ours["image.data"].select_pulses(np.s_[::3]).dask_array(frames_per_chunk=100)
    r = ref["image.data"].select_pulses(np.s_[::3]).dask_array(frames_per_chunk=100)
    assert o.chunks == r.chunks
    assert_same_values(o.compute(), r.compute())
    o = ours["image.data"].dask_array(labelled=True, subtrain_index="cellId")
    r = ref["image.data"].dask_array(labelled=True, subtrain_index="cellId")
    assert_same_dask(o, r)


def test_astype_dtype(lpd):
    """EXtra-data declares the source dtype even with astype (its section 7.7 bug), while
    its chunks compute to the astype dtype: the declared dtype must be the astype one."""
    ours, ref = (d.select_trains(np.s_[1:2]) for d in lpd)
    r = ref.get_dask_array("image.data", astype=np.float32)
    assert r.dtype == np.uint16 and r.compute().dtype == np.float32
    o = ours.get_dask_array("image.data", astype=np.float32)
    assert o.dtype == np.float32 and o.data.dtype == np.float32
    computed = o.compute()
    assert computed.dtype == np.float32
    assert_same_values(computed.values, r.compute().values)
    kd = ours["image.data"].dask_array(astype=np.float64)
    assert kd.dtype == np.float64 and kd.compute().dtype == np.float64


def test_generic_key(lpd):
    ours, ref = lpd
    for key in ("header.pulseCount", "detector.data"):
        assert_same_dask(ours.get_dask_array(key), ref.get_dask_array(key))


def test_reduced(ed_reduced_filled):
    """Variable frames per train: chunks follow whole trains (503 + 53 frames)."""
    ours, ref = det_pair(ed_reduced_filled, "AGIPD1M", modules=[0, 8, 9])
    o, r = ours.get_dask_array("image.data"), ref.get_dask_array("image.data")
    assert_same_dask(o, r, compute=False)
    assert o.shape[2:] == (512, 128)
    assert o.dims == ("module", "train_pulse", "dim_0", "dim_1")
    assert set(np.unique(o.coords["pulseId"].values)) <= set(range(20))
    sub_o, sub_r = ours.select_trains(np.s_[:10]), ref.select_trains(np.s_[:10])
    for kw in ({}, {"subtrain_index": "cellId"}):
        assert_same_dask(sub_o.get_dask_array("image.data", **kw),
                         sub_r.get_dask_array("image.data", **kw))
    o = sub_o["image.data"].dask_array(frames_per_chunk=30)
    r = sub_r["image.data"].dask_array(frames_per_chunk=30)
    assert o.chunks == r.chunks
    assert_same_values(o.compute(), r.compute())


def test_parallel_gain(ed_pg_filled, monkeypatch):
    # EXtra-data's parallel decompression (with zlib-into) misreads these 4-D datasets
    # (test_ed_parallel_decompression.py): its serial path, HDF5's, is the oracle
    monkeypatch.setenv("EXTRA_NUM_THREADS", "1")
    ours, ref = det_pair(ed_pg_filled, "LPD1M", parallel_gain=True, trains=np.s_[:2],
                         modules=[0, 7])
    o, r = ours.get_dask_array("image.data"), ref.get_dask_array("image.data")
    assert o.shape == (2, 600, 1, 256, 256)
    assert o.dims[:2] == ("module", "train_pulse")
    assert_same_values(o.coords["pulseId"].values, np.tile(np.arange(100, dtype=np.uint64), 6))
    assert_same_values(o.coords["gain"].values, np.tile(np.repeat(np.arange(3, dtype=np.uint8),
                                                                  100), 2))
    assert_same_dask(o, r)


def test_errors(lpd):
    ours, ref = lpd
    for kw in ({"subtrain_index": "trainId"}, {"fill_value": np.nan}):
        compare(lambda kw=kw: ours.get_dask_array("image.data", **kw).compute(),
                lambda kw=kw: ref.get_dask_array("image.data", **kw).compute(), errors=True)
