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
from detstack.convert.cxi import to_cxi
from detstack.convert.icechunk import to_icechunk
from detstack.store.manifest import manifest_store
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


@pytest.mark.parametrize("form", ["vds", "cxi", "json", "parq", "zarr", "icechunk"])
def test_views_open_like_the_run(case, form, tmp_path):
    run, det_kw, store = case
    det = detstack.RunDirectory(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det_obj = _detector(det, det_kw)
    target = {"vds": tmp_path / "view.h5", "cxi": tmp_path / "view.cxi",
              "json": tmp_path / "view.json", "parq": tmp_path / "view.parq", "zarr": store,
              "icechunk": tmp_path / "view.icechunk"}[form]
    write = {"vds": convert.to_vds, "cxi": to_cxi, "json": convert.to_manifest,
             "parq": convert.to_manifest, "icechunk": to_icechunk}.get(form)
    if write is not None:
        write(det_obj, target)
    got = xr.open_dataset(target, engine="detstack")
    want = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"))
    if form == "cxi":            # only the keys CXI holds
        want = xr.open_dataset(run, engine="detstack", raw=det_kw.get("raw"),
                               keys=list(got.data_vars))
    assert_same_dataset(got, want)


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
    with pytest.raises(detstack.errors.AmbiguousDetectorError, match="pass detector="):
        xr.open_dataset(two_detectors, engine="detstack")
    one_key = xr.open_dataset(two_detectors, engine="detstack", detector="FXE_XAD_JF500K",
                              key="data.adc")      # the spelling: key=
    assert list(one_key.data_vars) == ["data.adc"]
    with pytest.raises(TypeError, match="not both"):
        xr.open_dataset(two_detectors, engine="detstack", detector="FXE_XAD_JF500K",
                        key="data.adc", keys=["data.adc"])
    with pytest.raises(detstack.SourceNameError):
        xr.open_dataset(two_detectors, engine="detstack", detector="NO_SUCH_DET")


# -- the frame layout and the options every view form takes ---------------------------------

FRAME_BOXES = [(slice(None),), (1,), (slice(None), slice(2, 9)), (slice(None), -1),
               (slice(None, None, -1), slice(None, None, -3)), (slice(0, 16, 3), 4, 0)]


@pytest.fixture(scope="module")
def frames_case(tmp_path_factory):
    """A raw AGIPD run with gaps (missing modules and trains, an empty train) and its
    frame-layout zarr store."""
    folder = tmp_path_factory.mktemp("frames")
    det = make_run(folder / "run", "agipd-raw")
    convert.to_zarr(det, folder / "frames.zarr", layout="frames")
    return folder / "run", det, folder / "frames.zarr"


def test_frame_layout_equals_get_array_unstacked(frames_case):
    run, det, _ = frames_case
    ds = xr.open_dataset(run, engine="detstack", raw=True, layout="frames")
    assert ds.attrs["layout"] == "frames"
    assert ds["image.data"].dims[:2] == ("module", "frame")
    ref = det.get_array("image.data", unstack_pulses=False)
    slots = [det.module_slot(m) for m in det.modules]
    got = ds["image.data"].values
    assert got.shape[1] == ref.shape[1] == int(det.frame_map.train_counts().sum())
    np.testing.assert_array_equal(got[slots], ref.values.reshape(got[slots].shape))
    for ours, theirs in (("train_id", "train"), ("pulse_id", "pulse")):
        assert ds[ours].dims == ("frame",)
        np.testing.assert_array_equal(ds[ours].values, ref.coords[theirs].values)
    by_cell = det.get_array("image.data", unstack_pulses=False, subtrain_index="cellId")
    np.testing.assert_array_equal(ds["cell_id"].values, by_cell.coords["cell"].values)
    np.testing.assert_array_equal(
        ds["cell_id"].values, det.get_array("image.cellId", unstack_pulses=False)
        .max("module").values.reshape(-1))
    absent = [s for s in range(det.n_modules) if s not in slots]
    assert (got[absent] == 0).all()       # absent modules read as fill (0 for raw data)


def test_frame_layout_equals_its_zarr_store(frames_case, tmp_path):
    run, det, store = frames_case
    ds = xr.open_dataset(run, engine="detstack", raw=True, layout="frames")
    assert_same_dataset(ds, xr.open_zarr(store))
    # a frame-layout manifest holds the same coordinates (one definition: ViewPlan)
    manifest = xr.open_zarr(manifest_store(convert.to_manifest(
        det, tmp_path / "frames.json", layout="frames")), zarr_format=2,
        consolidated=True, mask_and_scale=False)
    # (manifests also mark the ID keys image.pulseId/cellId as coordinates)
    assert set(manifest.coords) - set(ds.coords) == {"image.pulseId", "image.cellId"}
    assert set(ds.coords) >= {"train_id", "pulse_id", "cell_id"}
    for name in ds.coords:
        assert manifest[name].dims == ds[name].dims, name
        np.testing.assert_array_equal(manifest[name].values, ds[name].values, err_msg=name)
    # the frame-layout store itself, opened through the backend, in either layout
    assert_same_dataset(xr.open_dataset(store, engine="detstack", layout="frames"), ds)
    assert_same_dataset(xr.open_dataset(store, engine="detstack"),
                        xr.open_dataset(run, engine="detstack", raw=True))


@pytest.mark.parametrize("box", FRAME_BOXES, ids=repr)
def test_frame_layout_boxes_equal_full_read(frames_case, box):
    run, _, _ = frames_case
    ds = xr.open_dataset(run, engine="detstack", raw=True, layout="frames")
    assert not ds["image.data"].variable._in_memory
    assert not ds["pulse_id"].variable._in_memory
    per_frame = [name for name in ds.data_vars if ds[name].dims[1] == "frame"]
    assert "image.data" in per_frame and "image.pulseId" in per_frame
    for name in per_frame:
        var = ds[name]
        full = var.values
        index = box[:var.ndim]
        np.testing.assert_array_equal(var[index].values, full[index], err_msg=name)


def test_train_selection_and_modules(frames_case):
    run, _, _ = frames_case
    some = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True, modules=[0, 3]
                            ).select_trains(detstack.by_index[1:4])
    flat = some.get_array("image.data", unstack_pulses=False).values
    per_train = some.frame_map.train_counts().astype(int)
    for layout in ("trains", "frames"):
        ds = xr.open_dataset(run, engine="detstack", raw=True, layout=layout,
                             trains=detstack.by_index[1:4], modules=[0, 3])
        np.testing.assert_array_equal(ds["train"].values, some.train_ids)
        got = ds["image.data"].values
        assert (got[[1, 2, 4, 9]] == 0).all()      # not selected: fill
        if layout == "frames":
            np.testing.assert_array_equal(got[[0, 3]], flat.reshape(got[[0, 3]].shape))
            continue
        start = 0
        for t, n in enumerate(per_train):
            part = got[[0, 3], t, :n]
            np.testing.assert_array_equal(part, flat[:, start:start + n].reshape(part.shape))
            assert (got[:, t, n:] == 0).all()
            start += n
    with pytest.raises(ValueError, match="layout must be one of"):
        xr.open_dataset(run, engine="detstack", raw=True, layout="pulses")


def test_readme_recipe(tmp_path):
    """The README's xarray + extra_geom block runs on a corrected AGIPD run and gives the
    image of the zarr store of the run (and of get_array)."""
    import re
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"<!-- xarray:python -->\n```python\n(.*?)\n```", readme, re.S)
    assert block, "no xarray:python block in README.md"
    det = make_run(tmp_path / "run", "agipd-corr")
    convert.to_zarr(det, tmp_path / "r0238.zarr")
    code = block.group(1).replace("/path/to/r0238", str(tmp_path / "run")).replace(
        '"r0238.zarr"', repr(str(tmp_path / "r0238.zarr")))
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "README.md", "exec"), scope)
    image, same = scope["image"], scope["same"]
    assert image.ndim == 2 and image.shape[0] > 1000
    np.testing.assert_array_equal(image, same)
    frame = det.get_array("image.data").isel(train=0, pulse=0)
    want = np.full((16, 512, 128), np.nan, np.float32)
    want[[det.module_slot(m) for m in det.modules]] = frame.values
    np.testing.assert_array_equal(image, scope["geom"].position_modules(want)[0])
    assert scope["flat"]["image.data"].dims[:2] == ("module", "frame")
    assert set(scope["tree"].children) == {det.detector_name}
