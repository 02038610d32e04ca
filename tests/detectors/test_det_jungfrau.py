"""JUNGFRAU vs EXtra-data: cells axis, module numbering, cell_ids(), dask, trains()."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from detcheck import assert_same_values, assert_same_xarray, compare, det_pair, raises_like

import detstack

ROI = np.s_[:, :6, :100]   # every cell, the random band at rows 0-3


@pytest.fixture(scope="module")
def jf(ed_jf_filled):
    """Modules 1 and 5 hold random adc values in the first 4 trains."""
    return det_pair(ed_jf_filled, "JUNGFRAU", trains=np.s_[:4])


def test_get_array_full(jf):
    """The one full-frame read: 8 modules x 1 train x 16 cells of 512 x 1024."""
    ours, ref = (d.select_trains(np.s_[1:2]) for d in jf)
    out = compare(lambda: ours.get_array("data.adc"), lambda: ref.get_array("data.adc"))
    assert out.shape == (8, 1, 16, 512, 1024)
    assert out.dims == ("module", "train", "cell", "slow_scan", "fast_scan")
    assert out.coords["module"].values.tolist() == list(range(1, 9))
    assert out.values[0].any() and out.values[4].any() and not out.values[1].any()


@pytest.mark.parametrize("kwargs", [
    {"roi": ROI}, {"roi": ROI, "astype": np.float64}, {"roi": ROI, "astype": np.float16},
    {"roi": np.s_[3:5, 40:44, ::50]}, {"roi": ROI, "fill_value": -1},
    {"roi": ROI, "astype": np.int32},
])
def test_get_array_options(jf, kwargs):
    ours, ref = jf
    out = compare(lambda: ours.get_array("data.adc", **kwargs),
                  lambda: ref.get_array("data.adc", **kwargs))
    assert out.coords["train"].values.tolist() == [10000, 10001, 10002, 10003]


@pytest.mark.parametrize("roi", [np.s_[2, :4], np.s_[7], np.s_[:, 3], np.s_[1:3, 0, ::8]],
                         ids=repr)
def test_integer_roi(jf, roi):
    """An integer ROI drops its axis. EXtra-data fails here (dims mismatch or a TypeError
    on a bare int): the right answer is its full result indexed the same way."""
    ours, ref = (d.select_trains(np.s_[2:3]) for d in jf)
    with pytest.raises((ValueError, TypeError)):
        ref.get_array("data.adc", roi=roi)
    full = ref.get_array("data.adc")
    roi_t = roi if isinstance(roi, tuple) else (roi,)
    expected = full[(slice(None), slice(None)) + roi_t]
    got = ours.get_array("data.adc", roi=roi)
    assert_same_xarray(got, expected)
    assert got.values.any()


@pytest.mark.parametrize("key", ["data.memoryCell", "data.trainId", "data.frameNumber",
                                 "data.timestamp", "data.gain", "data.mask"])
def test_other_keys(jf, key):
    ours, ref = jf
    kw = {"roi": np.s_[:, 40:42, :9]} if key in ("data.gain", "data.mask") else {}
    compare(lambda: ours.get_array(key, **kw), lambda: ref.get_array(key, **kw))


def test_keydata(jf):
    ours, ref = jf
    kd_o, kd_r = ours["data.adc"], ref["data.adc"]
    assert kd_o.shape == kd_r.shape == (8, 4, 16, 512, 1024)
    assert kd_o.ndim == kd_r.ndim and kd_o.dtype == kd_r.dtype
    assert list(kd_o.dimensions) == list(kd_r.dimensions)
    for gaps in (False, True):
        for roi in [(), np.s_[:, :25, :35]]:
            assert kd_o.buffer_shape(module_gaps=gaps, roi=roi) == kd_r.buffer_shape(
                module_gaps=gaps, roi=roi)
    compare(lambda: kd_o.ndarray(roi=ROI), lambda: kd_r.ndarray(roi=ROI))
    compare(lambda: kd_o.xarray(roi=ROI), lambda: kd_r.xarray(roi=ROI))
    compare(lambda: kd_o[1:3].ndarray(roi=ROI), lambda: kd_r[1:3].ndarray(roi=ROI))
    compare(lambda: ours.data_availability(), lambda: ref.data_availability())
    compare(lambda: ours.data_availability(module_gaps=True),
            lambda: ref.data_availability(module_gaps=True))
    raises_like(lambda: iter(kd_o), lambda: iter(kd_r))


def test_modules_and_gaps(ed_jf_filled):
    ours, ref = det_pair(ed_jf_filled, "JUNGFRAU", trains=np.s_[:2], modules=[2, 5, 8],
                         n_modules=10)
    assert ours.n_modules == ref.n_modules == 10
    arr = compare(lambda: ours["data.adc"].ndarray(module_gaps=True, roi=ROI, fill_value=3),
                  lambda: ref["data.adc"].ndarray(module_gaps=True, roi=ROI, fill_value=3))
    assert arr.shape == (10, 2, 16, 6, 100)
    assert (arr[[0, 2, 3, 5, 6, 8, 9]] == 3).all() and arr[4].any()
    compare(lambda: ours.get_array("data.adc", roi=ROI), lambda: ref.get_array("data.adc",
                                                                                roi=ROI))


@pytest.mark.parametrize(("name", "kwargs", "modnos", "n_modules"), [
    ("jungfrau", {}, list(range(1, 9)), 8),
    ("jungfrau", {"first_modno": 0}, list(range(2, 10)), 9),
    ("fxe_jungfrau", {"detector_name": "FXE_XAD_JF500K"}, [3], 3),
    ("fxe_jungfrau", {"detector_name": "FXE_XAD_JF500K", "first_modno": 3}, [1], 1),
    ("fxe_jungfrau", {"detector_name": "FXE_XAD_JF1M"}, [1, 2], 2),
])
def test_first_modno(ed_mocks, name, kwargs, modnos, n_modules):
    ours, ref = det_pair(ed_mocks(name), "JUNGFRAU", trains=np.s_[:1], **kwargs)
    assert ours.n_modules == ref.n_modules == n_modules
    out = compare(lambda: ours.get_array("data.adc", roi=np.s_[:2, :2, :2]),
                  lambda: ref.get_array("data.adc", roi=np.s_[:2, :2, :2]))
    assert out.coords["module"].values.tolist() == modnos
    compare(lambda: ours["data.adc"].ndarray(module_gaps=True, roi=np.s_[:1, :1, :1]),
            lambda: ref["data.adc"].ndarray(module_gaps=True, roi=np.s_[:1, :1, :1]))


def test_cell_ids(jf, ed_mocks):
    ours, ref = jf
    got = compare(lambda: ours.cell_ids(), lambda: ref.cell_ids())
    assert got.shape == (16,) and got.tolist() == list(range(15, -1, -1))
    ours, ref = det_pair(ed_mocks("jungfrau"), "JUNGFRAU", trains=np.s_[:2])
    assert compare(lambda: ours.cell_ids(), lambda: ref.cell_ids()).tolist() == [0] * 16


def test_cell_ids_inconsistent(ed_mocks):
    run = ed_mocks.copy("fxe_jungfrau")
    with h5py.File(run / "RAW-R0012-JNGFR02-S00000.h5", "r+") as f:
        f["INSTRUMENT/FXE_XAD_JF1M/DET/JNGFR02:daqOutput/data/memoryCell"][0, 3] = 7
    ours, ref = det_pair(run, "JUNGFRAU", detector_name="FXE_XAD_JF1M")
    exc = raises_like(lambda: ours.cell_ids(), lambda: ref.cell_ids())
    assert "Inconsistent memoryCell" in str(exc)


def test_dask(jf, ed_mocks, ed_jf_filled):
    ours, ref = jf
    for kw in ({}, {"fill_value": 2}):
        o, r = ours.get_dask_array("data.adc", **kw), ref.get_dask_array("data.adc", **kw)
        assert_same_xarray(o, r, values=False)
        assert o.data.chunks == r.data.chunks
    sub_o, sub_r = det_pair(ed_jf_filled, "JUNGFRAU", trains=np.s_[1:2], modules=[1, 5])
    o, r = sub_o.get_dask_array("data.adc"), sub_r.get_dask_array("data.adc")
    assert_same_xarray(o.compute(), r.compute())
    o, r = sub_o["data.memoryCell"].dask_array(), sub_r["data.memoryCell"].dask_array()
    assert o.chunks == r.chunks
    assert_same_values(o.compute(), r.compute())
    # astype: our declared dtype is the astype one (EXtra-data declares the source dtype)
    o = sub_o.get_dask_array("data.memoryCell", astype=np.int16)
    assert o.dtype == np.int16 and o.compute().dtype == np.int16
    # the whole mock run: labels only
    ours, ref = det_pair(ed_mocks("jungfrau"), "JUNGFRAU")
    o, r = ours.get_dask_array("data.adc"), ref.get_dask_array("data.adc")
    assert_same_xarray(o, r, values=False)
    assert o.shape == (8, 100, 16, 512, 1024)
    assert o.dims == ("module", "train", "cell", "slow_scan", "fast_scan")
    assert o.coords["train"].values.tolist() == list(range(10000, 10100))


def test_trains(ed_jf_filled):
    ours, ref = det_pair(ed_jf_filled, "JUNGFRAU", trains=np.s_[1:2], modules=[1, 2])
    n = 0
    for (tid, data), (ref_tid, ref_data) in zip(ours.trains(), ref.trains(), strict=True):
        assert tid == ref_tid
        assert sorted(data) == sorted(ref_data)
        for key in ref_data:
            assert_same_xarray(data[key], ref_data[key])
        assert data["data.adc"].dims == ("module", "cell", "slow_scan", "fast_scan")
        assert data["data.memoryCell"].dims == ("module", "cell")
        assert data["data.trainId"].dims == ("module",)
        n += 1
    assert n == 1


def test_errors(jf):
    ours, ref = jf
    raises_like(lambda: ours.get_array("data.adc", fill_value=np.nan, astype=np.uint16),
                lambda: ref.get_array("data.adc", fill_value=np.nan, astype=np.uint16))
    raises_like(lambda: ours.get_array("data.nonsense"), lambda: ref.get_array("data.nonsense"))
    raises_like(lambda: ours["data.adc"].ndarray(out=np.zeros((1, 2))),
                lambda: ref["data.adc"].ndarray(out=np.zeros((1, 2))))
    with pytest.raises(TypeError):
        ours.get_array("data.adc", pulses=np.s_[:2])  # no pulses for JUNGFRAU
    assert isinstance(ours, detstack.JUNGFRAU)
