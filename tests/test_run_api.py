"""Run-level API of EXtra-data scripts (select, union, run[src], run[src, key], ...),
checked against EXtra-data (the oracle) on its own mock runs."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import extra_data as ed
import h5py
import numpy as np
import pytest
from extra_data import components as edc
from extra_data.stacking import StackView as EdStackView

import detstack
from detstack import by_id, by_index
from detstack.detectors.stacking import StackView
from detstack.run.handles import POOL

XGM = "SPB_XTD9_XGM/DOOCS/MAIN"
XGM_OUT = "SPB_XTD9_XGM/DOOCS/MAIN:output"
AGIPD0 = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"


def same_selection(ours: detstack.DataCollection, ref: ed.DataCollection) -> None:
    assert ours.all_sources == ref.all_sources
    for src in ref.all_sources:
        assert ours.keys_for_source(src) == ref.keys_for_source(src), src
    assert ours.train_ids == [int(t) for t in ref.train_ids]


@pytest.fixture
def both(ed_open):
    """Our collection and the oracle's (opened without writing its cache into the run)."""
    def open_both(path: str) -> tuple[detstack.DataCollection, ed.DataCollection]:
        return detstack.RunDirectory(path), ed_open(path)
    return open_both


SELECTIONS = [
    ("*/DET/*", "image.data"),
    ("*/DET/*", "image.*"),
    ("*XGM*", "*"),
    ([("*/DET/*", "image.data"), ("*/DET/*", "image.cellId")],),
    (["*XGM/*", XGM_OUT],),
    ([("*", "beamPosition.ixPos")],),          # control key named without .value
    ({XGM: {"beamPosition.ixPos.value"}, XGM_OUT: None},),
    ({XGM_OUT: set()},),
]


@pytest.mark.parametrize("args", SELECTIONS, ids=repr)
def test_select_forms(mock_spb_raw_run, args, both):
    ours, ref = both(mock_spb_raw_run)
    same_selection(ours.select(*args), ref.select(*args))


def test_select_drops_sources_without_the_keys(mock_jungfrau_run, both):
    ours, ref = both(mock_jungfrau_run)
    sel, ref_sel = ours.select("*JF4M/DET/*", "data.adc"), ref.select("*JF4M/DET/*", "data.adc")
    same_selection(sel, ref_sel)
    assert "SPB_IRDA_JF4M/DET/CONTROL" not in sel.all_sources
    pattern = r"/DET/JNGFR(\d+)"
    stacked = detstack.stack_detector_data(sel.train_from_index(0)[1], "data.adc",
                                           pattern=pattern, modules=9)
    want = ed.stack_detector_data(ref_sel.train_from_index(0)[1], "data.adc",
                                  pattern=pattern, modules=9)
    np.testing.assert_array_equal(np.asarray(stacked), np.asarray(want))


@pytest.mark.parametrize("again", ["*", {}, [("*", "*")]], ids=repr)
def test_select_again_keeps_key_selection(mock_fxe_raw_run, again, both):
    ours, ref = both(mock_fxe_raw_run)
    first, ref_first = ours.select("*/DET/*", "image.data"), ref.select("*/DET/*", "image.data")
    if again == {}:
        again = dict.fromkeys(ref_first.all_sources, set())
    same_selection(first.select(again), ref_first.select(again))
    det = detstack.LPD1M(first.select(again))
    assert det["image.data"].shape == edc.LPD1M(ref_first.select(again))["image.data"].shape
    assert all(det.data.keys_for_source(s) == {"image.data"} for s in det.data.all_sources)


def test_select_by_collection_source_and_key(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    same_selection(ours.select(ours.select("*XGM*", "data.*")),
                   ref.select(ref.select("*XGM*", "data.*")))
    same_selection(ours.select(ours[XGM_OUT]), ref.select(ref[XGM_OUT]))
    same_selection(ours.select(ours[XGM_OUT, "data.intensityTD"]),
                   ref.select(ref[XGM_OUT, "data.intensityTD"]))


def test_select_no_match_is_value_and_key_error(mock_spb_raw_run):
    ours = detstack.RunDirectory(mock_spb_raw_run)
    with pytest.raises(ValueError, match="No source and key match"):
        ours.select("*NOTHERE*")
    with pytest.raises(KeyError):
        ours.select("*XGM*", "nokey.*")


@pytest.mark.parametrize("require", ["require_all", "require_any"])
def test_require_all_any(mock_reduced_spb_proc_run, require, both):
    ours, ref = both(mock_reduced_spb_proc_run)
    sel = [("*/DET/*", "image.data"), ("*XGM*", "*")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, want = ours.select(sel, **{require: True}), ref.select(sel, **{require: True})
    same_selection(got, want)
    assert len(got.train_ids) <= len(ours.train_ids)


def test_require_all_drops_trains_with_gaps(mock_lpd_mini_gap_run, both):
    ours, ref = both(mock_lpd_mini_gap_run)
    got = ours.select("*/DET/*", "image.data", require_all=True)
    want = ref.select("*/DET/*", "image.data", require_all=True)
    same_selection(got, want)
    assert len(got.train_ids) < len(ours.train_ids)


DESELECTIONS = [
    ("*XGM*",),
    ("*/DET/*", "image.cellId"),
    ([("*/DET/*", "image.cellId"), ("*/DET/*", "image.pulseId")],),
    (["*XGM*", "*CAM*"],),
    ({XGM_OUT: None},),
    ({XGM_OUT: {"data.intensityTD"}},),
]


@pytest.mark.parametrize("args", DESELECTIONS, ids=repr)
def test_deselect_forms(mock_spb_raw_run, args, both):
    ours, ref = both(mock_spb_raw_run)
    same_selection(ours.deselect(*args), ref.deselect(*args))


def test_deselect_after_select(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    same_selection(ours.select("*/DET/*", "image.*").deselect("*/DET/*", "image.cellId"),
                   ref.select("*/DET/*", "image.*").deselect("*/DET/*", "image.cellId"))


def test_union_raw_and_corrected(mock_data, mock_modern_spb_proc_run, ed_open):
    """Raw files plus modern corrected files (CORR sources, legacy DET aliases).

    EXtra-data refuses this union (its legacy DET aliases "conflict" with the raw
    sources); the real raw source wins over the alias here, and each detector reads
    what EXtra-data reads from the runs opened separately.
    """
    raw = mock_data("spb_raw", "1.2")
    ours = detstack.RunDirectory(raw).union(detstack.RunDirectory(mock_modern_spb_proc_run))
    with pytest.raises(ValueError, match="conflicting"):
        ed_open(raw).union(ed_open(mock_modern_spb_proc_run))
    ref_raw, ref_proc = ed_open(raw), ed_open(mock_modern_spb_proc_run)
    assert ours.all_sources == ref_raw.all_sources | ref_proc.all_sources
    assert ours.legacy_sources == {}          # every DET name is a real raw source here
    corr = detstack.AGIPD1M(ours)
    ref_corr = edc.AGIPD1M(ref_proc)
    assert set(corr.source_to_modno) == set(ref_corr.source_to_modno)
    np.testing.assert_array_equal(corr.get_array("image.cellId", pulses=np.s_[:4]).values,
                                  ref_corr.get_array("image.cellId", pulses=np.s_[:4]).values)
    raw_det, ref_raw_det = detstack.AGIPD1M(ours, raw=True), edc.AGIPD1M(ref_raw, raw=True)
    assert set(raw_det.source_to_modno) == set(ref_raw_det.source_to_modno)
    np.testing.assert_array_equal(raw_det.get_array("image.pulseId", pulses=np.s_[:4]).values,
                                  ref_raw_det.get_array("image.pulseId", pulses=np.s_[:4]).values)
    same = detstack.RunDirectory(raw) | detstack.RunDirectory(mock_modern_spb_proc_run)
    assert same.all_sources == ours.all_sources and same.train_ids == ours.train_ids


def test_union_same_sources_in_two_runs_is_refused(mock_data, ed_open):
    """Old-style corrected files reuse the raw source names: the same train of the same
    source in two files is ambiguous, and both libraries refuse it."""
    raw, proc = mock_data("spb_raw", "1.0"), mock_data("spb_proc", "1.0")
    with pytest.raises(detstack.DuplicateTrainError, match="more than once"):
        detstack.RunDirectory(raw).union(detstack.RunDirectory(proc))
    with pytest.raises(ValueError):
        ed_open(raw).union(ed_open(proc))


def test_union_of_train_selections(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    got = ours.select_trains(np.s_[:5]).union(ours.select_trains(np.s_[20:25]))
    want = ref.select_trains(np.s_[:5]).union(ref.select_trains(np.s_[20:25]))
    same_selection(got, want)


def test_source_data(mock_reduced_spb_proc_run, both):
    ours, ref = both(mock_reduced_spb_proc_run)
    for src in [AGIPD0.replace("DET", "CORR").replace("xtdf", "output"), XGM, XGM_OUT]:
        if src not in ref.all_sources:
            continue
        sd, ref_sd = ours[src], ref[src]
        assert sd.keys() == ref_sd.keys()
        assert sd.keys(inc_timestamps=False) == ref_sd.keys(inc_timestamps=False)
        assert sd.train_ids == [int(t) for t in ref_sd.train_ids]
        assert sd.index_groups == ref_sd.index_groups
        assert sd.is_control == ref_sd.is_control
        np.testing.assert_array_equal(sd.data_counts(labelled=False),
                                      ref_sd.data_counts(labelled=False))
        assert sd.data_counts().to_dict() == ref_sd.data_counts().to_dict()
        np.testing.assert_array_equal(sd.train_id_coordinates(), ref_sd.train_id_coordinates())
        assert (sd[by_index[2:5]].train_ids
                == [int(t) for t in ref_sd[ed.by_index[2:5]].train_ids])
        one = next(iter(sorted(sd.keys())))
        assert one in sd and "no.such.key" not in sd


def test_control_key_without_value_suffix(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    kd, ref_kd = ours[XGM, "beamPosition.ixPos"], ref[XGM, "beamPosition.ixPos"]
    assert kd.key == ref_kd.key == "beamPosition.ixPos.value"
    assert "beamPosition.ixPos" in ours[XGM]
    assert kd.xarray().name == ref_kd.xarray().name


@pytest.mark.parametrize("source,key", [(XGM_OUT, "data.intensityTD"),
                                        (XGM, "beamPosition.ixPos.value"),
                                        (AGIPD0, "image.pulseId"),
                                        ("SPB_IRU_CAM/CAM/SIDEMIC:daqOutput", "data.image.pixels")])
def test_key_data(mock_spb_raw_run, source, key, both):
    ours, ref = both(mock_spb_raw_run)
    kd, ref_kd = ours[source, key], ref[source, key]
    assert kd.shape == ref_kd.shape
    assert kd.dtype == ref_kd.dtype
    assert kd.ndim == ref_kd.ndim and kd.entry_shape == ref_kd.entry_shape
    assert kd.nbytes == ref_kd.nbytes
    np.testing.assert_array_equal(kd.ndarray(), ref_kd.ndarray())
    np.testing.assert_array_equal(kd.train_id_coordinates(), ref_kd.train_id_coordinates())
    assert kd.data_counts().to_dict() == ref_kd.data_counts().to_dict()
    xa, ref_xa = kd.xarray(), ref_kd.xarray()
    assert xa.dims == ref_xa.dims and xa.name == ref_xa.name
    np.testing.assert_array_equal(xa.coords["trainId"], ref_xa.coords["trainId"])
    np.testing.assert_array_equal(kd.dask_array().compute(), ref_kd.dask_array().compute())
    lab = kd.dask_array(labelled=True)
    assert lab.dims == ref_kd.dask_array(labelled=True).dims
    sub, ref_sub = kd.select_trains(by_id[10005:10010]), ref_kd.select_trains(ed.by_id[10005:10010])
    np.testing.assert_array_equal(sub.ndarray(), ref_sub.ndarray())
    np.testing.assert_array_equal(kd[3:6].ndarray(), ref_kd[3:6].ndarray())
    tid, arr = kd.train_from_id(10007)
    ref_tid, ref_arr = ref_kd.train_from_id(10007)
    assert tid == ref_tid
    np.testing.assert_array_equal(arr, ref_arr)
    roi = np.s_[:2] if kd.ndim > 1 else ()
    if roi:
        np.testing.assert_array_equal(kd.ndarray(roi=roi), ref_kd.ndarray(roi=roi))


def test_key_data_series_and_trains(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    kd, ref_kd = ours[XGM, "beamPosition.ixPos"], ref[XGM, "beamPosition.ixPos"]
    s, ref_s = kd.series(), ref_kd.series()
    assert s.name == ref_s.name and s.index.name == ref_s.index.name
    np.testing.assert_array_equal(s.values, ref_s.values)
    np.testing.assert_array_equal(s.index.values, ref_s.index.values)
    with pytest.raises(TypeError):
        ours[XGM_OUT, "data.intensityTD"].series()
    got = [(t, a.copy()) for t, a in ours[XGM_OUT, "data.intensityTD"].trains()]
    want = list(ref[XGM_OUT, "data.intensityTD"].trains())
    assert [t for t, _ in got] == [int(t) for t, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_key_data_gaps(mock_lpd_mini_gap_run, both):
    ours, ref = both(mock_lpd_mini_gap_run)
    src = sorted(s for s in ref.instrument_sources if "/DET/" in s)[1]
    kd, ref_kd = ours[src, "image.pulseId"], ref[src, "image.pulseId"]
    np.testing.assert_array_equal(kd.data_counts(labelled=False),
                                  ref_kd.data_counts(labelled=False))
    np.testing.assert_array_equal(kd.ndarray(), ref_kd.ndarray())
    empty = [t for t, n in zip(kd.train_ids, kd.data_counts(labelled=False), strict=True) if not n]
    assert empty, "the mock should miss a train in this module"
    assert kd.train_from_id(empty[0])[1].shape[0] == 0
    assert len(list(kd.trains(include_empty=True))) == len(kd.train_ids)
    assert len(kd.drop_empty_trains().train_ids) == len(kd.train_ids) - len(empty)


def test_run_indexing_and_contains(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    same_selection(ours[:5], ref[:5])
    same_selection(ours[by_id[10010:10020]], ref[ed.by_id[10010:10020]])
    assert (XGM in ours) == (XGM in ref) is True
    assert ((XGM_OUT, "data.intensityTD") in ours) is True
    assert ((XGM_OUT, "nope") in ours) is False and "NOPE" not in ours
    assert ours.detector_sources == ref.detector_sources
    with pytest.raises(TypeError):
        iter(ours)
    with pytest.raises(TypeError):
        ours[3.5]


def test_trains_devices_and_range(mock_spb_raw_run, both):
    ours, ref = both(mock_spb_raw_run)
    devices = [(XGM_OUT, "data.intensityTD"), (XGM, "*")]
    got = list(ours.trains(devices=devices, train_range=by_index[2:6]))
    want = list(ref.trains(devices=devices, train_range=ed.by_index[2:6]))
    assert [t for t, _ in got] == [int(t) for t, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert set(a) == set(b)
        for src in b:
            assert set(a[src]) == set(b[src])
            np.testing.assert_array_equal(a[src]["data.intensityTD"] if src == XGM_OUT else 0,
                                          b[src]["data.intensityTD"] if src == XGM_OUT else 0)
    tid, data = ours.train_from_id(10003, devices=devices)
    ref_tid, ref_data = ref.train_from_id(10003, devices=devices)
    assert tid == ref_tid and set(data) == set(ref_data)
    np.testing.assert_array_equal(data[XGM_OUT]["data.intensityTD"],
                                  ref_data[XGM_OUT]["data.intensityTD"])
    _, by_pos = ours.train_from_index(3, devices=devices)
    assert set(by_pos) == set(ref_data)


def test_train_timestamps(mock_data, mock_agipd_file, ed_open):
    path = mock_data("spb_raw", "1.0")
    ours = detstack.RunDirectory(path)
    stamps = ours.train_timestamps()
    assert not np.isnat(stamps).any()
    # each train's time comes from INDEX/timestamp of a file that holds the train
    first = sorted(Path(path).glob("*.h5"))[0]
    with h5py.File(first) as f:
        tids, ns = f["INDEX/trainId"][:], f["INDEX/timestamp"][:]
    at = np.isin(ours.train_ids_array, tids[tids > 0])
    np.testing.assert_array_equal(stamps[at], ns[tids > 0].astype("datetime64[ns]"))
    # a single file: EXtra-data's answer in every form
    one, ref = detstack.H5File(mock_agipd_file), ed.H5File(mock_agipd_file)
    np.testing.assert_array_equal(one.train_timestamps(), ref.train_timestamps())
    lab, ref_lab = one.train_timestamps(labelled=True), ref.train_timestamps(labelled=True)
    assert lab.equals(ref_lab)
    # EXtra-data truncates to milliseconds (its docs say microseconds, which we keep)
    ours_py = one.train_timestamps(pydatetime=True)
    assert [None if t is None else t.replace(microsecond=t.microsecond // 1000 * 1000)
            for t in ours_py] == ref.train_timestamps(pydatetime=True)
    local = one.train_timestamps(labelled=True, euxfel_local_time=True)
    assert local.equals(ref.train_timestamps(labelled=True, euxfel_local_time=True))
    with pytest.raises(ValueError):
        ours.train_timestamps(euxfel_local_time=True)
    old = mock_data("spb_raw", "0.5")
    assert np.isnat(detstack.RunDirectory(old).train_timestamps()).all()
    assert np.isnat(ed_open(old).train_timestamps()).all()


def test_info_lists_what_extra_data_lists(mock_spb_raw_run, capsys, both):
    ours, ref = both(mock_spb_raw_run)
    buf = io.StringIO()
    ours.info(file=buf)
    ref.info()
    want = capsys.readouterr().out
    assert buf.getvalue().split() == want.split()
    ours.info(details_for_sources=["*XGM*:output"], file=buf)
    assert "data.intensityTD: float32 (1000,)" in buf.getvalue()


def test_h5file_context_manager(mock_agipd_file):
    with detstack.H5File(mock_agipd_file) as f:
        src = sorted(f.instrument_sources)[0]
        assert f[src, "image.pulseId"].shape[0] > 0
        assert any(rf._key in POOL._files for rf in f.files)
    assert not any(rf._key in POOL._files for rf in f.files)


def test_selector_reprs():
    assert repr(by_id[:2]) == repr(ed.by_id[:2]) == "by_id[:2]"
    assert repr(by_index[..., ::-1]) == repr(ed.by_index[..., ::-1])
    assert repr(by_id[[1, 2]]) == repr(ed.by_id[[1, 2]])
    assert repr(by_index[3:10:2]) == repr(ed.by_index[3:10:2])


@pytest.mark.parametrize("dtype_of", [lambda a: a, lambda a: a.dtype, lambda a: "uint16",
                                      lambda a: np.uint16])
def test_stackview_dtype_forms(dtype_of):
    data = {0: np.arange(4, dtype=np.uint16).reshape(1, 4)}
    ours = StackView(data, 2, (1, 4), dtype_of(data[0]), 0, stack_axis=0)
    ref = EdStackView(data, 2, (1, 4), np.uint16, 0, stack_axis=0)
    assert ours.dtype == np.dtype(np.uint16)
    np.testing.assert_array_equal(ours.squeeze()[1], np.zeros(4, np.uint16))
    np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(ref[0]))
