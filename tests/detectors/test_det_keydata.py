"""``det[key]`` objects vs EXtra-data: shape, ndarray options, xarray, availability, IDs."""

from __future__ import annotations

import numpy as np
import pytest
from detcheck import (
    assert_same_values,
    assert_same_xarray,
    compare,
    det_pair,
    raises_like,
    to_ours,
)
from extra_data import by_id, by_index

LPD_ROI = np.s_[:6, 100:140]


@pytest.fixture(scope="module")
def lpd(ed_lpd_filled):
    """Modules 0 and 5 hold random values in these trains, 2 is all zeros."""
    return det_pair(ed_lpd_filled, "LPD1M", trains=np.s_[:3], modules=[0, 2, 5])


def test_shape_and_attributes(lpd):
    ours, ref = lpd
    for key in ["image.data", "image.pulseId", "image.length", "header.pulseCount",
                "detector.data"]:
        o, r = ours[key], ref[key]
        assert o.shape == r.shape, key
        assert o.ndim == r.ndim, key
        assert o.dtype == r.dtype, key
        assert list(o.dimensions) == list(r.dimensions), key
        assert list(o.modules) == list(r.modules), key
        assert [int(t) for t in o.train_ids] == [int(t) for t in r.train_ids], key
        for gaps in (False, True):
            for roi in [(), np.s_[:3,], np.s_[10:60, 100:200]] if key == "image.data" else [()]:
                assert o.buffer_shape(module_gaps=gaps, roi=roi) == r.buffer_shape(
                    module_gaps=gaps, roi=roi), (key, gaps, roi)
    assert ours["image.data"].shape == (3, 384, 256, 256)
    # a bare slice as roi (the reference needs a tuple)
    assert ours["image.data"].buffer_shape(roi=np.s_[:3]) == (3, 384, 3, 256)


def test_module_gaps_fill_value(ed_lpd_filled):
    """EXtra-data's test_ndarray_module_gaps, on real values: only module 5 present."""
    ours, ref = det_pair(ed_lpd_filled, "LPD1M", trains=np.s_[:3], modules=[5])
    assert ours["image.data"].buffer_shape(module_gaps=True) == (16, 384, 256, 256)
    ours, ref = ours.select_trains(np.s_[1:2]), ref.select_trains(np.s_[1:2])
    # EXtra-data's parallel decompression (with zlib-into) misreads these 4-D datasets
    # (test_ed_parallel_decompression.py): compare with its serial path, which is HDF5's
    arr = compare(lambda: ours["image.data"].ndarray(module_gaps=True, fill_value=7),
                  lambda: ref["image.data"].ndarray(module_gaps=True, fill_value=7,
                                                    decompress_threads=1))
    assert arr.shape == (16, 128, 256, 256)
    assert (arr[:5] == 7).all() and (arr[6:] == 7).all() and arr[5].any()


@pytest.mark.parametrize("kwargs", [
    {}, {"module_gaps": True}, {"roi": LPD_ROI}, {"roi": LPD_ROI, "module_gaps": True,
                                                  "fill_value": 3},
    {"astype": np.float32, "roi": LPD_ROI}, {"astype": np.float64, "module_gaps": True,
                                             "roi": LPD_ROI},
    {"astype": np.int8, "roi": LPD_ROI}, {"fill_value": np.nan},
    {"fill_value": np.nan, "astype": np.float32, "module_gaps": True, "roi": LPD_ROI},
    {"roi": (np.s_[3:5], np.s_[::9])},
])
def test_ndarray_options(lpd, kwargs):
    ours, ref = lpd
    full = compare(lambda: ours["image.data"].ndarray(**kwargs),
                   lambda: ref["image.data"].ndarray(**kwargs), errors=True)
    refused = set(kwargs) == {"fill_value"} and np.isnan(kwargs["fill_value"])  # NaN into uint16
    assert isinstance(full, Exception) == refused
    if refused:
        return
    sel = by_id[[2, 50, 100]]
    got = ours["image.data"].select_pulses(to_ours(sel)).ndarray(**kwargs)
    # the right answer: the selected frames of the full read
    frames = np.isin(ref["image.data"].pulse_id_coordinates(), [2, 50, 100])
    assert_same_values(got, full[:, frames])
    if "astype" in kwargs:
        # EXtra-data fails when astype meets a partial pulse selection (TypeError
        # casting into the source dtype)
        with pytest.raises(TypeError):
            ref["image.data"].select_pulses(sel).ndarray(**kwargs)
    else:
        assert_same_values(got, ref["image.data"].select_pulses(sel).ndarray(**kwargs))


def test_infinite_fill_into_integers(lpd):
    """EXtra-data raises OverflowError; we raise ValueError as for NaN."""
    ours, ref = lpd
    with pytest.raises(OverflowError):
        ref["image.data"].ndarray(fill_value=np.inf)
    with pytest.raises(ValueError, match="fill value inf"):
        ours["image.data"].ndarray(fill_value=np.inf)


def test_ndarray_out(lpd):
    ours, ref = lpd
    kd_o, kd_r = ours["image.data"].select_pulses(np.s_[::10]), ref["image.data"].select_pulses(
        np.s_[::10])
    expected = kd_r.ndarray(roi=LPD_ROI)
    out = np.full(expected.shape, 12345, np.uint16)
    got = kd_o.ndarray(out=out, roi=LPD_ROI)
    assert got is out
    assert_same_values(out, expected)
    # module_gaps into a float64 buffer: the missing modules get the buffer's default fill
    # (NaN). EXtra-data fails here (TypeError casting into uint16, as with astype); the
    # right answer is its float64 read of all pulses, then the selected frames.
    shape = kd_r.buffer_shape(module_gaps=True, roi=LPD_ROI)
    with pytest.raises(TypeError):
        kd_r.ndarray(out=np.zeros(shape), roi=LPD_ROI, module_gaps=True)
    frames = np.isin(ref["image.data"].pulse_id_coordinates(), np.arange(0, 128, 10))
    expected = ref["image.data"].ndarray(roi=LPD_ROI, module_gaps=True,
                                         astype=np.float64)[:, frames]
    out = np.zeros(shape, np.float64)
    kd_o.ndarray(out=out, roi=LPD_ROI, module_gaps=True)
    assert_same_values(out, expected)
    assert np.isnan(out[1]).all() and not np.isnan(out[0]).any()
    wrong = np.zeros((3, 10, 6, 40), np.uint16)
    raises_like(lambda: kd_o.ndarray(out=wrong, roi=LPD_ROI),
                lambda: kd_r.ndarray(out=wrong, roi=LPD_ROI))
    with pytest.raises(ValueError, match="requires output array of shape"):
        kd_o.ndarray(out=wrong, roi=LPD_ROI)


@pytest.mark.parametrize("kwargs", [
    {}, {"subtrain_index": "cellId"}, {"unstack_pulses": True},
    {"unstack_pulses": True, "subtrain_index": "cellId", "astype": np.float32},
    {"fill_value": 5, "roi": np.s_[2:4, 120:130]},
])
def test_xarray(lpd, kwargs):
    ours, ref = lpd
    for sel in (np.s_[:], by_index[[0, 5, 100]]):
        kw = dict(kwargs)
        if "roi" not in kw:
            kw["roi"] = LPD_ROI

        def ref_call(sel=sel, kw=kw):
            kw = dict(kw)
            astype = kw.pop("astype", None)
            # EXtra-data fails when astype meets a partial pulse selection: convert its
            # result instead (no frame is missing here, so no fill value is involved)
            arr = ref["image.data"].select_pulses(sel).xarray(**kw)
            if astype is not None:
                arr = arr.astype(astype)
            # xarray's unstack keeps cells in order of appearance for a partial selection
            # (see test_get_array.py::test_lpd_cell_ids): we sort them
            return arr.sortby("cell") if "cell" in arr.dims else arr

        compare(lambda sel=sel, kw=kw: ours["image.data"].select_pulses(to_ours(sel)).xarray(
            **kw), ref_call)


@pytest.mark.parametrize("key", ["header.pulseCount", "detector.data", "trailer.checksum",
                                 "header.majorTrainFormatVersion"])
def test_per_train_keys(lpd, key):
    ours, ref = lpd
    for kw in ({}, {"module_gaps": True, "fill_value": 4}, {"astype": np.float32}):
        compare(lambda kw=kw: ours[key].ndarray(**kw), lambda kw=kw: ref[key].ndarray(**kw))
    compare(lambda: ours[key].xarray(), lambda: ref[key].xarray())
    compare(lambda: ours[key].xarray(astype=np.float64), lambda: ref[key].xarray(
        astype=np.float64))
    compare(lambda: ours[key].dask_array(labelled=True).compute(),
            lambda: ref[key].dask_array(labelled=True).compute())
    compare(lambda: ours[key].data_availability(module_gaps=True),
            lambda: ref[key].data_availability(module_gaps=True))
    compare(lambda: ours[key].train_id_coordinates(), lambda: ref[key].train_id_coordinates())


def test_iteration_disabled(lpd):
    ours, ref = lpd
    for key in ("image.data", "header.pulseCount"):
        raises_like(lambda key=key: iter(ours[key]), lambda key=key: iter(ref[key]))
        with pytest.raises(TypeError):
            list(ours[key])


def test_keydata_select_trains(ed_mocks):
    """EXtra-data's test_keydata_select_trains: 20 trains, kd[:3]."""
    ours, ref = det_pair(ed_mocks("fxe_raw", "1.0"), "LPD1M", trains=np.s_[:20])
    kd_o, kd_r = ours["image.data"], ref["image.data"]
    assert kd_o.shape == kd_r.shape == (16, 2560, 256, 256)
    assert len(kd_o.train_ids) == 20
    for sel in [np.s_[:3], by_id[[10004, 10010]], by_index[5:8], np.s_[-2:]]:
        o, r = kd_o[to_ours(sel)], kd_r[sel]
        assert o.shape == r.shape
        assert [int(t) for t in o.train_ids] == [int(t) for t in r.train_ids]
        o2, r2 = kd_o.select_trains(to_ours(sel)), kd_r.select_trains(sel)
        assert o2.shape == r2.shape
        compare(lambda o=o: o.train_id_coordinates(), lambda r=r: r.train_id_coordinates())
    assert kd_o[:3].shape == (16, 384, 256, 256)
    # select_pulses survives select_trains, and the reverse
    o = kd_o.select_pulses(to_ours(by_id[:4]))[:2]
    r = kd_r.select_pulses(by_id[:4])[:2]
    assert o.shape == r.shape == (16, 8, 256, 256)
    compare(lambda: o.ndarray(roi=np.s_[:2, :2]), lambda: r.ndarray(roi=np.s_[:2, :2]))


def test_keydata_split_trains(lpd):
    ours, ref = lpd
    kd_o, kd_r = ours["image.data"].select_pulses(np.s_[::20]), ref["image.data"].select_pulses(
        np.s_[::20])
    parts_o = list(kd_o.split_trains(frames_per_part=256))
    parts_r = list(kd_r.split_trains(frames_per_part=256))
    assert [p.shape for p in parts_o] == [p.shape for p in parts_r]
    for o, r in zip(parts_o, parts_r, strict=True):
        compare(lambda o=o: o.ndarray(roi=LPD_ROI), lambda r=r: r.ndarray(roi=LPD_ROI))


# -- data availability and per-frame IDs ----------------------------------------------------

def test_data_availability_gap(ed_mocks):
    ours, ref = det_pair(ed_mocks("lpd_mini_gap"), "LPD1M", modules=[0, 1])
    av = compare(lambda: ours.data_availability(), lambda: ref.data_availability())
    assert av.shape == (2, 50) and not av[1, 20:30].any() and av.sum() == 90
    av = compare(lambda: ours.data_availability(module_gaps=True),
                 lambda: ref.data_availability(module_gaps=True))
    assert av.shape == (16, 50) and not av[2:].any() and av.sum() == 90
    # With a pulse selection, EXtra-data fails (AssertionError: (15,) != (50,)); the right
    # answer is the availability of the selected frames.
    for sel in (np.s_[2:5], by_id[[0, 9]]):
        with pytest.raises(AssertionError):
            ref["image.data"].select_pulses(sel).data_availability()
        kd_o = ours["image.data"].select_pulses(to_ours(sel))
        frames = np.isin(ref["image.data"].pulse_id_coordinates(), [2, 3, 4] if isinstance(
            sel, slice) else [0, 9])
        for gaps in (False, True):
            assert_same_values(kd_o.data_availability(module_gaps=gaps),
                               ref.data_availability(module_gaps=gaps)[:, frames])
    for sel in (np.s_[1:4], by_id[[10002]]):
        compare(lambda sel=sel: ours.select_trains(to_ours(sel)).data_availability(),
                lambda sel=sel: ref.select_trains(sel).data_availability())
    compare(lambda: ours["header.pulseCount"].data_availability(),
            lambda: ref["header.pulseCount"].data_availability())


def test_pulse_and_cell_ids_gap(ed_mocks):
    ours, ref = det_pair(ed_mocks("lpd_mini_gap"), "LPD1M", modules=[0, 1])
    kd_o, kd_r = ours["image.data"], ref["image.data"]
    for meth in ("pulse_id_coordinates", "cell_id_coordinates", "train_id_coordinates"):
        got = compare(lambda m=meth: getattr(kd_o, m)(), lambda m=meth: getattr(kd_r, m)())
        if meth != "train_id_coordinates":
            assert_same_values(got, np.tile(np.arange(10, dtype=got.dtype), 5))
        sub_o, sub_r = kd_o.select_pulses(np.s_[2:5]), kd_r.select_pulses(np.s_[2:5])
        got = compare(lambda m=meth, o=sub_o: getattr(o, m)(),
                      lambda m=meth, r=sub_r: getattr(r, m)())
        if meth != "train_id_coordinates":
            assert_same_values(got, np.tile(np.arange(2, 5, dtype=got.dtype), 5))


@pytest.mark.parametrize("fixture", ["ed_lpd_filled", "ed_reduced_filled", "ed_pg_filled"])
def test_id_coordinates(request, fixture):
    path = request.getfixturevalue(fixture)
    kwargs = {"parallel_gain": True} if fixture == "ed_pg_filled" else {}
    cls = "AGIPD1M" if fixture == "ed_reduced_filled" else "LPD1M"
    ours, ref = det_pair(path, cls, trains=np.s_[:12], modules=[0, 8, 9] if cls == "AGIPD1M"
                         else [0, 7], **kwargs)
    for sel in (np.s_[:], by_id[[1, 7, 15, 23]], by_index[3:], by_id[2:40:3]):
        kd_o = ours["image.data"].select_pulses(to_ours(sel))
        kd_r = ref["image.data"].select_pulses(sel)
        assert kd_o.shape == kd_r.shape
        for meth in ("pulse_id_coordinates", "cell_id_coordinates", "train_id_coordinates"):
            got = compare(lambda m=meth, o=kd_o: getattr(o, m)(),
                          lambda m=meth, r=kd_r: getattr(r, m)())
            assert len(got) == kd_o.shape[1]


def test_decompress_threads(ed_mocks):
    """EXtra-data's test_decompress_threads (modern corrected run, first train)."""
    ours, ref = det_pair(ed_mocks("modern_proc"), "AGIPD1M", trains=np.s_[:1])
    expected = ref["image.mask"].ndarray(decompress_threads=1)
    for threads in (1, 16, None):
        got = ours["image.mask"].ndarray(decompress_threads=threads)
        assert_same_values(got, expected)
    assert got[15, 0, 0, 0] == 0 and got[15, 0, 0, 5] == 1
    assert_same_xarray(ours["image.mask"].xarray(decompress_threads=4, roi=np.s_[:1, :8]),
                       ref["image.mask"].xarray(decompress_threads=4, roi=np.s_[:1, :8]))


def test_no_trains_selected(ed_mocks):
    """A selection without trains gives empty arrays (and no trains), like EXtra-data;
    its dask readers fail ('Need array(s) to concatenate') where ours give empty arrays."""
    ours, ref = det_pair(ed_mocks("lpd_mini_gap"), "LPD1M")
    with pytest.warns(UserWarning):
        ref = ref.select_trains(by_id[[1]])
    with pytest.warns(UserWarning, match="None of the 1 requested train IDs"):
        ours = ours.select_trains(to_ours(by_id[[1]]))
    assert ours.train_ids == [] and len(ref.train_ids) == 0
    for unstack in (True, False):
        out = compare(lambda u=unstack: ours.get_array("image.data", unstack_pulses=u),
                      lambda u=unstack: ref.get_array("image.data", unstack_pulses=u))
        assert out.size == 0
    compare(lambda: ours["image.data"].ndarray(), lambda: ref["image.data"].ndarray())
    compare(lambda: ours.data_availability(), lambda: ref.data_availability())
    assert list(ours.trains()) == list(ref.trains()) == []
    assert list(ours.split_trains(parts=2)) == []
    with pytest.raises(ValueError):
        ref.get_dask_array("image.data")
    arr = ours.get_dask_array("image.data")
    assert arr.shape == (2, 0, 1, 256, 256) and arr.compute().size == 0
    assert ours["header.pulseCount"].dask_array().compute().shape == (2, 0)
