"""masked_data() vs EXtra-data: mask bits, masked value, ROI, pulse and train selections."""

from __future__ import annotations

import numpy as np
import pytest
from detcheck import assert_same_values, compare, det_pair, raises_like, to_ours
from extra_data import by_id

ROI = np.s_[98:106, :40]   # covers the random mask band (rows 100-103)
JF_ROI = np.s_[:2, 38:46, 10:40]


@pytest.fixture(scope="module")
def reduced(ed_reduced_filled):
    """Corrected AGIPD modules 8 and 9 with random data and mask bits, first 4 trains."""
    return det_pair(ed_reduced_filled, "AGIPD1M", modules=[8, 9], trains=np.s_[:4])


@pytest.mark.parametrize("kwargs", [
    {}, {"mask_bits": 1}, {"mask_bits": [1, 4], "masked_value": -1},
    {"mask_bits": np.uint32(2), "masked_value": 1e6}, {"masked_value": 0},
    {"key": "image.gain", "masked_value": 255},
    {"key": "image.gain", "mask_bits": [2], "masked_value": 3},
])
def test_xtdf_masked(reduced, kwargs):
    ours, ref = reduced
    m_o, m_r = ours.masked_data(**kwargs), ref.masked_data(**kwargs)
    assert repr(m_o) == repr(m_r)
    assert m_o.shape == m_r.shape and m_o.dtype == m_r.dtype
    for kw in ({"roi": ROI}, {"roi": ROI, "module_gaps": True}, {"roi": np.s_[:2, :32]}):
        got = compare(lambda kw=kw: m_o.ndarray(**kw), lambda kw=kw: m_r.ndarray(**kw))
    assert got.any()
    compare(lambda: m_o.xarray(roi=ROI), lambda: m_r.xarray(roi=ROI))
    compare(lambda: m_o.xarray(roi=ROI, unstack_pulses=True, subtrain_index="cellId"),
            lambda: m_r.xarray(roi=ROI, unstack_pulses=True, subtrain_index="cellId"))
    for sel in (np.s_[:3], by_id[[1, 4, 9]]):
        s_o, s_r = m_o.select_pulses(to_ours(sel)), m_r.select_pulses(sel)
        assert s_o.shape == s_r.shape
        compare(lambda s_o=s_o: s_o.ndarray(roi=ROI), lambda s_r=s_r: s_r.ndarray(roi=ROI))
    t_o, t_r = m_o.select_trains(np.s_[1:3]), m_r.select_trains(np.s_[1:3])
    compare(lambda: t_o.ndarray(roi=ROI), lambda: t_r.ndarray(roi=ROI))
    compare(lambda: t_o[:1].ndarray(roi=ROI), lambda: t_r[:1].ndarray(roi=ROI))


def test_xtdf_masked_reference_values(reduced):
    """EXtra-data's test_xtdf_masked_data: module 9 mask[0, 0, :32] = 0..31."""
    ours, _ = reduced
    masked = ours.masked_data().select_trains(np.s_[:1])
    arr = masked.ndarray()
    assert arr.shape == masked.shape and arr.dtype == np.float32
    row = arr[1, 0, 0, :32]
    assert np.isnan(row[1:]).all() and not np.isnan(row[0])
    assert not np.isnan(arr[0, 0, 0, :32]).any()
    assert_same_values(masked.ndarray(roi=np.s_[:2, 10:40]), arr[:, :, :2, 10:40])
    sub = masked.select_pulses(np.s_[:3])
    assert sub.shape[1] <= 3 and sub.ndarray().shape == sub.shape
    assert_same_values(sub.ndarray(roi=np.s_[:2, 10:40]), arr[:, :sub.shape[1], :2, 10:40])
    arr = ours.masked_data(mask_bits=[1, 4], masked_value=-1).select_trains(
        np.s_[:1]).ndarray()
    bad = (np.arange(32) & 5) != 0
    assert (arr[1, 0, 0, :32][bad] == -1).all() and (arr[1, 0, 0, :32][~bad] != -1).all()


def test_xtdf_masked_other_methods(reduced):
    ours, ref = reduced
    m_o, m_r = ours.masked_data(mask_bits=4), ref.masked_data(mask_bits=4)
    o, r = m_o.dask_array(), m_r.dask_array()
    assert o.shape == r.shape and o.chunks == r.chunks
    assert_same_values(o.compute(), r.compute())
    compare(lambda: m_o.ndarray(roi=ROI, fill_value=0, astype=np.float64, module_gaps=True),
            lambda: m_r.ndarray(roi=ROI, fill_value=0, astype=np.float64, module_gaps=True))
    parts_o, parts_r = list(m_o.split_trains(parts=2)), list(m_r.split_trains(parts=2))
    assert len(parts_o) == len(parts_r) == 2
    for p_o, p_r in zip(parts_o, parts_r, strict=True):
        compare(lambda p=p_o: p.ndarray(roi=ROI), lambda p=p_r: p.ndarray(roi=ROI))
    compare(lambda: m_o.train_id_coordinates(), lambda: m_r.train_id_coordinates())
    # NaN cannot mask integer data
    g_o, g_r = ours.masked_data("image.gain"), ref.masked_data("image.gain")
    raises_like(lambda: g_o.ndarray(roi=ROI), lambda: g_r.ndarray(roi=ROI))


def test_masked_raw_error(ed_mocks):
    ours, ref = det_pair(ed_mocks("fxe_raw", "1.0"), "LPD1M", trains=np.s_[:1])
    exc = raises_like(lambda: ours.masked_data(), lambda: ref.masked_data())
    assert isinstance(exc, RuntimeError) and "image.mask" in str(exc)


def test_jungfrau_masked(ed_fxe_jf_filled):
    """EXtra-data's test_jungfrau_masked_data, on random adc values and mask bits."""
    ours, ref = det_pair(ed_fxe_jf_filled, "JUNGFRAU", detector_name="FXE_XAD_JF500K",
                         trains=np.s_[:3])
    for kwargs in ({}, {"mask_bits": 1, "masked_value": 99}, {"mask_bits": [2, 4]},
                   {"key": "data.gain", "masked_value": 255}):
        m_o, m_r = ours.masked_data(**kwargs), ref.masked_data(**kwargs)
        assert repr(m_o) == repr(m_r)
        first_o, first_r = m_o.select_trains(np.s_[:1]), m_r.select_trains(np.s_[:1])
        arr = compare(lambda f=first_o: f.ndarray(roi=np.s_[:1, :1]),
                      lambda f=first_r: f.ndarray(roi=np.s_[:1, :1]))
        assert arr.shape == (1, 1, 1, 1, 1024)
        row = arr[0, 0, 0, 0, :32]
        if kwargs == {}:
            assert np.isnan(row[1:]).all() and not np.isnan(row[0])
            full = compare(lambda f=first_o: f.ndarray(), lambda f=first_r: f.ndarray())
            assert full.shape == (1, 1, 16, 512, 1024) and full.dtype == np.float32
        elif kwargs.get("mask_bits") == 1:
            assert (row[1::2] == 99).all() and (row[::2] != 99).all()
        elif "key" in kwargs:
            assert arr.dtype == np.uint8 and (row[1:] == 255).all()
        compare(lambda m=m_o: m.ndarray(roi=JF_ROI), lambda m=m_r: m.ndarray(roi=JF_ROI))
        compare(lambda m=m_o: m.xarray(roi=JF_ROI), lambda m=m_r: m.xarray(roi=JF_ROI))
        compare(lambda m=m_o: m.ndarray(roi=JF_ROI, module_gaps=True),
                lambda m=m_r: m.ndarray(roi=JF_ROI, module_gaps=True))
