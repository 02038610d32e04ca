"""``xr.open_dataset(..., engine="detstack")`` and ``xr.open_datatree``: lazy datasets of
run folders and views, equal to what a zarr store of the same run holds."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from extra_data.tests import make_examples
from h5_fixtures import CASES, make_run

import detstack
from detstack import convert
from detstack.store.xarray_backend import DetstackBackend

BACKEND_CASES = ["agipd-raw", "agipd-corr", "lpd-raw", "dssc-raw", "jf-raw"]


@pytest.fixture(scope="module", params=BACKEND_CASES)
def case(request, tmp_path_factory):
    """(run folder, detector arguments, zarr store of the run)."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    det = make_run(folder / "run", name)
    store = folder / "run.zarr"
    convert.to_zarr(det, store)
    return folder / "run", CASES[name][2], store


def assert_same_dataset(got: xr.Dataset, want: xr.Dataset) -> None:
    assert set(got.variables) == set(want.variables)
    for name, var in want.variables.items():
        ours = got[name]
        assert ours.dims == var.dims, name
        assert ours.dtype == var.dtype, name
        np.testing.assert_array_equal(ours.values, var.values, err_msg=name)


def test_run_folder_equals_its_zarr_store(case):
    run, det_kw, store = case
    ds = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
    assert_same_dataset(ds, xr.open_zarr(store))
    assert ds.attrs["detector_class"] in {"AGIPD1M", "LPD1M", "DSSC1M", "JUNGFRAU"}


def test_opening_reads_no_pixels(case):
    run, det_kw, _ = case
    ds = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
    main = "data.adc" if "data.adc" in ds else "image.data"
    assert not any(ds[name].variable._in_memory for name in ds.data_vars)
    assert not ds[main].variable._in_memory


BOXES = [
    (0,), (slice(None), 1), (slice(1, 3), slice(None, None, 2)),
    (slice(None, None, -1), slice(None, None, -1)), (-1, -1, 0),
    (slice(0, 16, 5), slice(1, None), slice(0, 3)),
]


@pytest.mark.parametrize("box", BOXES, ids=repr)
def test_boxes_equal_full_read(case, box):
    run, det_kw, _ = case
    ds = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
    for name in ds.data_vars:
        var = ds[name]
        full = var.values
        index = box[:var.ndim]
        np.testing.assert_array_equal(var[index].values, full[index], err_msg=name)
        if var.ndim >= 4:   # a region of the pixels too
            deep = index + (slice(None),) * (var.ndim - len(index) - 1) + (slice(3, 9, 2),)
            np.testing.assert_array_equal(var[deep].values, full[deep], err_msg=name)


@pytest.mark.parametrize("form", ["vds", "json", "zarr"])
def test_views_open_like_the_run(case, form, tmp_path):
    run, det_kw, store = case
    det = detstack.RunDirectory(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det_obj = _detector(det, det_kw)
    target = {"vds": tmp_path / "view.h5", "json": run / "view.json", "zarr": store}[form]
    if form == "vds":
        convert.to_vds(det_obj, target)
    elif form == "json":
        convert.to_manifest(det_obj, target)
    try:
        got = xr.open_dataset(target, engine="detstack")
        want = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
        assert_same_dataset(got, want)
    finally:
        if form == "json":
            Path(target).unlink()


def _detector(data, det_kw):
    from detstack.detectors.identify import identify_multimod_detectors
    name, cls = identify_multimod_detectors(data, single=True)
    return cls(data, name, **det_kw)


def test_values_match_get_array(case):
    run, det_kw, _ = case
    ds = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
    det = _detector(detstack.RunDirectory(run), det_kw)
    if "image.data" not in ds:
        ref = det.get_array("data.adc")
        np.testing.assert_array_equal(ds["data.adc"].values[[det.module_slot(m) for m in
                                                             det.modules]], ref.values)
        return
    frames = det.get_array("image.data", unstack_pulses=False)
    arr = ds["image.data"].values
    counts = ds["count.image"].values
    slots = [det.module_slot(m) for m in det.modules]
    per_train = det.frame_map.train_counts().astype(int)
    start = 0
    for t, n in enumerate(per_train):
        got = arr[slots, t, :n]
        want = frames.values[:, start:start + n]
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        start += n
    assert counts.shape == (det.n_modules, len(det.train_ids))


def test_keys_and_drop_variables(case):
    run, det_kw, _ = case
    main = "data.adc" if "jf" in str(run) else "image.data"
    ds = xr.open_dataset(run, engine="detstack", keys=main, raw=det_kw.get("raw"))
    assert list(ds.data_vars) == [main]
    full = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
    dropped = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"),
                              drop_variables=[main])
    assert main not in dropped and set(dropped.data_vars) == set(full.data_vars) - {main}


def test_guess_can_open_run_folders_only(case, tmp_path):
    run, _, store = case
    backend = DetstackBackend()
    assert backend.guess_can_open(run)
    assert not backend.guess_can_open(store)
    assert not backend.guess_can_open(tmp_path)
    assert not backend.guess_can_open(next(run.glob("*.h5")))


@pytest.fixture(scope="module")
def two_detectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fxe_jf")
    make_examples.make_fxe_jungfrau_run(str(folder))
    return folder


def test_datatree_one_group_per_detector(two_detectors):
    """EXtra-data's FXE mock has two JUNGFRAU detectors (its frames are big: compare a
    few trains only)."""
    few = {"train": slice(0, 3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = xr.open_datatree(two_detectors, engine="detstack")
        names = sorted(tree.children)
        assert names == ["FXE_XAD_JF1M", "FXE_XAD_JF500K"]
        for name in names:
            one = xr.open_dataset(two_detectors, engine="detstack", detector=name)
            assert_same_dataset(tree[name].to_dataset().isel(few), one.isel(few))
            det = detstack.JUNGFRAU(detstack.RunDirectory(two_detectors), name)
            ref = det.select_trains(np.s_[:3]).get_array("data.adc")
            slots = [det.module_slot(m) for m in det.modules]
            np.testing.assert_array_equal(one["data.adc"].isel(few).values[slots], ref.values)
    with pytest.raises(ValueError, match="pass detector="):
        xr.open_dataset(two_detectors, engine="detstack")
    with pytest.raises(detstack.SourceNameError):
        xr.open_dataset(two_detectors, engine="detstack", detector="NO_SUCH_DET")
