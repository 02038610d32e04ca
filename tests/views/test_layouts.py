"""Layouts of every view form: the frame layout, shapes and names of dims, fill values.

Oracles: the run itself through ``get_array(..., unstack_pulses=False)`` (the frame
layout is that array with every module slot) and the reader API on the run.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from h5_fixtures import assert_equal_arrays, assert_reader_identical, expected_view, validate_record
from zarr_store_helpers import assert_same_store, s3_server  # noqa: F401 - fixture

import detstack
from detstack import synth
from detstack.convert import to_cxi, to_manifest, to_vds, to_zarr
from detstack.convert.plan import ViewPlan, fill_value_for
from detstack.store import open_view

RUNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # frame counts varying from 0 to 7, a module missing a train, several sequence files
    "agipd-var": (dict(kind="AGIPD1M", raw=True, n_trains=5, frames_per_train=[5, 0, 7, 1, 3],
                       modules=[0, 3, 9], missing_trains={3: [10002]}, trains_per_file=2),
                  dict(raw=True)),
    "lpd-corr": (dict(kind="LPD1M", raw=False, n_trains=3, frames_per_train=[3, 1, 4],
                      modules=[2, 5], missing_trains={5: [10001]}), dict(raw=False)),
    "lpd-raw": (dict(kind="LPD1M", raw=True, n_trains=2, frames_per_train=[2, 3], modules=[1]),
                dict(raw=True)),
    "dssc-raw": (dict(kind="DSSC1M", raw=True, n_trains=2, frames_per_train=[3, 1],
                      modules=[0, 4]), dict(raw=True)),
    "jungfrau": (dict(kind="JUNGFRAU", raw=True, n_trains=2, n_modules=2, n_cells=2,
                      modules=[1]), {}),
}
FORMS = ["vds", "manifest-json", "manifest-parq", "zarr", "zarr-zip", "icechunk"]


def make(folder: Path, name: str) -> Any:
    kwargs, det_kwargs = RUNS[name]
    synth.write_run(folder, **kwargs, with_control=False, overwrite=True)
    return open_det(detstack.RunDirectory(folder), name)


def open_det(data: Any, name: str) -> Any:
    kwargs, det_kwargs = RUNS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(detstack, kwargs["kind"])(data, **det_kwargs)


def write(det: Any, form: str, folder: Path, layout: str, stem: str = "v") -> Path:
    if form == "vds":
        return to_vds(det, folder / f"{stem}.h5", layout=layout)
    if form.startswith("manifest"):
        return to_manifest(det, folder / f"{stem}.{form.split('-')[1]}", layout=layout)
    if form == "icechunk":
        from detstack.convert.icechunk import to_icechunk
        to_icechunk(det, folder / f"{stem}.icechunk", layout=layout)
        return folder / f"{stem}.icechunk"
    out = folder / (f"{stem}.zarr.zip" if form == "zarr-zip" else f"{stem}.zarr")
    to_zarr(det, str(out), layout=layout)
    return out


def plain(form: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """{name: (dims, values)} of every array, read with plain h5py / xarray."""
    if form == "vds":
        with h5py.File(out, "r") as f:
            arrays = {k: (tuple(f[k].attrs["axes"].split(":")), f[k][()]) for k in f
                      if "." in k}
            arrays |= {k: (("frame",), f[f"frames/{k}"][()]) for k in f.get("frames", {})}
        return arrays
    if form.startswith("manifest"):
        monkeypatch.chdir(out.parent)  # relative Parquet references resolve from here
        so: dict[str, Any] = {"fo": str(out), "remote_protocol": "file"}
        if out.suffix == ".json":
            so["template_overrides"] = {"base": str(out.parent)}
        ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                             storage_options=so)
    elif form == "icechunk":
        import icechunk
        storage = icechunk.local_filesystem_storage(str(out))
        prefix = zarr.open_group(icechunk.Repository.open(storage).readonly_session("main")
                                 .store, mode="r").attrs["detstack_record"]["icechunk"]
        repo = icechunk.Repository.open(storage, authorize_virtual_chunk_access=icechunk
                                        .containers_credentials(
                                            {prefix["container_prefix"]: None}))
        ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    elif form == "zarr-zip":
        ds = xr.open_zarr(zarr.storage.ZipStore(str(out), mode="r"))
    else:
        ds = xr.open_zarr(str(out))
    return {k: (v.dims, v.values) for k, v in ds.variables.items()}


@pytest.fixture(scope="module")
def agipd_var(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("agipd-var")
    return folder, make(folder / "run", "agipd-var")


@pytest.mark.parametrize("form", FORMS)
def test_frame_layout(agipd_var: tuple[Path, Any], form: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """(module, frame, ...) with no padding, per-frame IDs, equal to get_array(...,
    unstack_pulses=False) for plain tools and to the run for the reader API."""
    folder, det = agipd_var
    out = write(det, form, folder, "frames", stem=f"frames-{form}")
    arrays = plain(form, out, monkeypatch)
    squeeze = form != "vds"
    n_frames = int(det.frame_map.train_counts().sum())
    flat = det.get_array("image.data", unstack_pulses=False)
    assert n_frames == flat.sizes["train_pulse"] == 16
    for key in ("image.data", "image.pulseId", "image.cellId"):
        dims, values = arrays[key]
        assert dims[:2] == ("module", "frame") and values.shape[:2] == (16, n_frames), key
        assert_equal_arrays(values, expected_view(det, key, "frames", squeeze))
    slots = [det.module_slot(m) for m in det.modules]
    got = arrays["image.data"][1][slots]
    present = np.repeat(det.frame_map.present, det.frame_map.train_counts().astype(int), axis=1)
    np.testing.assert_array_equal(got[present], flat.values[present])
    assert (got[~present] == 0).all()
    index = flat.indexes["train_pulse"]
    np.testing.assert_array_equal(arrays["train_id"][1], index.get_level_values("train"))
    np.testing.assert_array_equal(arrays["pulse_id"][1], index.get_level_values("pulse"))
    cells = det.get_array("image.data", unstack_pulses=False, subtrain_index="cellId")
    np.testing.assert_array_equal(arrays["cell_id"][1], cells.indexes["train_pulse"]
                                  .get_level_values("cell"))
    assert arrays["header.pulseCount"][0] == ("module", "train")
    if form == "icechunk":
        from detstack.convert.icechunk import open_icechunk
        view = open_icechunk(out)
    else:
        view = open_view(out)
    assert view.record["layout"] == "frames"
    validate_record(dict(view.record))
    vdet = open_det(view, "agipd-var")
    assert_reader_identical(det, vdet, "AGIPD1M")
    sel = detstack.by_id[[10002, 10004]]
    xr.testing.assert_identical(vdet.select_trains(sel).get_array("image.data"),
                                det.select_trains(sel).get_array("image.data"))


def test_frame_layout_cli_and_info(agipd_var: tuple[Path, Any], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from detstack.cli import main
    folder, _ = agipd_var
    out = tmp_path / "v.h5"
    assert main(["convert", str(folder / "run"), str(out), "--to", "vds", "--raw",
                 "--layout", "frames"]) == 0
    with h5py.File(out, "r") as f:
        assert f["image.data"].shape[:2] == (16, 16) and f["image.data"].attrs["layout"] == \
            "frames"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "layout frames" in capsys.readouterr().out


def test_cxi_is_the_frame_layout(agipd_var: tuple[Path, Any], tmp_path: Path) -> None:
    _, det = agipd_var
    out = to_cxi(det, tmp_path / "v.cxi")
    with h5py.File(out, "r") as f:
        record = json.loads(f.attrs["detstack_record"])
        assert record["layout"] == "frames"
        assert_equal_arrays(f["entry_1/by_module/data"][()],
                            expected_view(det, "image.data", "frames"))
    assert_reader_identical(det, open_det(open_view(out), "agipd-var"), "AGIPD1M")


class _Stop(Exception):
    pass


def test_frame_layout_zarr_resume_and_s3(agipd_var: tuple[Path, Any], tmp_path: Path,
                                         s3_server: dict[str, Any]) -> None:  # noqa: F811
    """Frame-block tasks resume to the same bytes, and write to S3 like a folder."""
    _, det = agipd_var
    url = tmp_path / "cut.zarr"

    def stop(done: int, total: int) -> None:
        if done > 0:
            raise _Stop
    with pytest.raises(_Stop):
        to_zarr(det, url, threads=1, layout="frames", progress=stop)
    with pytest.raises(ValueError, match="other settings"):
        to_zarr(det, url, resume=True)            # the train layout: another store
    to_zarr(det, url, resume=True, layout="frames")
    to_zarr(det, tmp_path / "whole.zarr", layout="frames")
    assert_same_store(url, tmp_path / "whole.zarr")
    to_zarr(det, "s3://xfel/frames.zarr", storage_options=s3_server, layout="frames",
            shards=4)
    ds = xr.open_zarr("s3://xfel/frames.zarr", storage_options=s3_server)
    assert ds["image.data"].encoding["shards"][1] == 4
    assert_equal_arrays(ds["image.data"].values, expected_view(det, "image.data", "frames"))
    vdet = open_det(open_view("s3://xfel/frames.zarr", storage_options=s3_server), "agipd-var")
    xr.testing.assert_identical(vdet.get_array("image.data", unstack_pulses=False),
                                det.get_array("image.data", unstack_pulses=False))


def test_frame_layout_materialized(agipd_var: tuple[Path, Any], tmp_path: Path) -> None:
    from detstack.convert import materialize
    folder, det = agipd_var
    out = materialize(to_vds(det, folder / "mat-src.h5", layout="frames", overwrite=True),
                      tmp_path / "copy.h5")
    assert_reader_identical(det, open_det(open_view(out), "agipd-var"), "AGIPD1M")


# -- EXtra-data's reduced mock run ----------------------------------------------------------

@pytest.mark.parametrize("form", ["vds", "zarr", "manifest-json"])
def test_reduced_mock_run(mock_data: Any, form: str, tmp_path: Path) -> None:
    """1-19 frames per train: the frame layout holds the data, half the padded size.
    Two modules and 12 trains keep it small (the view still has all 16 slots); the
    mock's corrected files leave chunks unallocated, so the manifest uses raw data."""
    raw = form.startswith("manifest")
    run = detstack.RunDirectory(mock_data("reduced_spb_raw" if raw else "reduced_spb_proc",
                                          "1.2"))
    full = detstack.AGIPD1M(run, raw=raw)
    kp = ViewPlan(full).key("image.data")
    ratio = np.prod(ViewPlan(full).shape(kp)) / np.prod(ViewPlan(full, layout="frames")
                                                        .shape(kp))
    assert ratio > 1.9          # padded (16, 59, 19, ...) vs (16, 556, ...)
    det = detstack.AGIPD1M(run, raw=raw, modules=[0, 1]).select_trains(detstack.by_index[:12])
    out = write(det, form, tmp_path, "frames")
    n_frames = int(det.frame_map.train_counts().sum())
    if form == "vds":
        with h5py.File(out, "r") as f:
            assert f["image.data"].shape[:2] == (16, n_frames)
            values = f["image.data"][0:2]
    else:
        so: dict[str, Any] = {}
        if raw:
            so = {"storage_options": {"fo": str(out), "remote_protocol": "file",
                                      "template_overrides": {"base": str(tmp_path)}}}
        ds = (xr.open_dataset("reference://", engine="zarr", mask_and_scale=False, **so)
              if raw else xr.open_zarr(str(out)))
        assert ds["image.data"].dims[:2] == ("module", "frame")
        assert ds.sizes["frame"] == n_frames
        values = ds["image.data"][0:2].values
    flat = det.get_array("image.data", unstack_pulses=False)
    np.testing.assert_array_equal(values.reshape(flat.shape), flat.values)
    view = open_view(out, allowed_prefixes=[str(Path(run.files[0].path).parent)]) if raw \
        else open_view(out)
    vdet = detstack.AGIPD1M(view, raw=raw)
    xr.testing.assert_identical(vdet.get_array("image.data", unstack_pulses=False), flat)
    xr.testing.assert_identical(vdet.get_array("image.data", pulses=detstack.by_id[:5]),
                                det.get_array("image.data", pulses=detstack.by_id[:5]))


# -- shapes and names (issue 13) --------------------------------------------------------------

@pytest.mark.parametrize("name", ["lpd-raw", "dssc-raw", "jungfrau"])
def test_zarr_forms_named_dims_no_singleton(name: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    det = make(tmp_path / "run", name)
    main_key = det.kind.main_key
    want = ("module", "train") + (("pulse",) if det.kind.xtdf else ("cell",)) + \
        ("slow_scan", "fast_scan")
    keys = set(det.data.keys_for_source(next(iter(det.source_to_modno))))
    for form in ("manifest-json", "zarr"):
        out = write(det, form, tmp_path, "trains")
        arrays = plain(form, out, monkeypatch)
        assert arrays[main_key][0] == want, form
        for key, (dims, values) in arrays.items():
            assert len(values.shape) == len(dims)
            assert not any(".axis" in d or "dim" in d for d in dims), (form, key, dims)
            if key in keys:     # no meaningless length-1 axis left
                assert all(n != 1 or d in ("cell", "data_gain")
                           for d, n in zip(dims[2:], values.shape[2:], strict=True)), (form, key)
        view = open_det(open_view(out), name)
        xr.testing.assert_identical(view.get_array(main_key), det.get_array(main_key))
        if det.kind.xtdf:
            xr.testing.assert_identical(view.get_array(main_key, unstack_pulses=False),
                                        det.get_array(main_key, unstack_pulses=False))
    vds = to_vds(det, tmp_path / "v.h5")
    with h5py.File(vds, "r") as f:
        ds = f[main_key]
        if det.kind.xtdf:      # the HDF5 view keeps the length-1 axis, and says why
            assert ds.shape[3] == 1 and ds.attrs["axes"].split(":")[3] == "singleton"
            assert "fast path" in ds.attrs["singleton_axes"]
        else:
            assert ds.attrs["axes"] == ":".join(want)


# -- fill values (issue 13) ---------------------------------------------------------------------

def test_fill_values_agree_across_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """Absent module slot 0 and module 5's missing train read the same in every form:
    masks all bits set (bad), floats NaN, other integers 0; recorded per key."""
    det = make(tmp_path / "run", "lpd-corr")
    plan = ViewPlan(det)
    assert plan.key("image.mask").fill_value == 0xFFFFFFFF
    assert np.isnan(plan.key("image.data").fill_value) and plan.key("image.gain").fill_value == 0
    forms = {"vds": to_vds(det, tmp_path / "v.h5"),
             "manifest-json": to_manifest(det, tmp_path / "v.json"),
             "zarr": tmp_path / "v.zarr"}
    to_zarr(det, str(forms["zarr"]))
    t = det.train_ids.index(10001)
    for form, out in forms.items():
        arrays = plain(form, out, monkeypatch)
        record = open_view(out).record
        for kp in plan.keys:
            values = arrays[kp.key][1]
            fill = np.asarray(fill_value_for(kp.key, kp.dtype), kp.dtype)
            assert_equal_arrays(values[0], np.full(values.shape[1:], fill))
            assert_equal_arrays(values[5, t], np.full(values.shape[2:], fill))
            assert record["keys"][kp.key]["fill_value"] == (
                "NaN" if kp.dtype.kind == "f" else fill.item()), (form, kp.key)
    refs = json.loads(forms["manifest-json"].read_text())["refs"]
    fills = {k: json.loads(v)["fill_value"] for k, v in refs.items() if k.endswith(".zarray")}
    # always explicit: zarr-python 2 reads a null fill as uninitialised memory
    assert fills["image.mask/.zarray"] == 0xFFFFFFFF and fills["image.data/.zarray"] == "NaN"
    assert fills["image.gain/.zarray"] == 0 and fills["image.cellId/.zarray"] == 0
    store = zarr.open_group(str(forms["zarr"]), mode="r")
    assert store["image.mask"].fill_value == 0xFFFFFFFF
    cxi = to_cxi(det, tmp_path / "v.cxi")
    with h5py.File(cxi, "r") as f:
        for name in ("data", "gain", "mask"):
            frames_first = f[f"entry_1/instrument_1/detector_1/{name}"]
            by_module = f[f"entry_1/by_module/{name}"]
            key = f"image.{name}"
            fill = np.asarray(plan.key(key).fill_value, plan.key(key).dtype)
            assert_equal_arrays(frames_first[:, 0], np.full(frames_first[:, 0].shape, fill))
            assert_equal_arrays(by_module[0], np.full(by_module[0].shape, fill))
        assert json.loads(f.attrs["detstack_record"])["keys"]["image.mask"]["fill_value"] \
            == 0xFFFFFFFF


@pytest.mark.parametrize("name", ["agipd-var", "lpd-corr", "dssc-raw"])
def test_frame_coordinates_module_by_module(tmp_path: Path, name: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-frame coordinates read module by module, in blocks of 2 trains (blocks
    cut through files and gaps), equal the detector's own labels."""
    from detstack.convert import frame_ids
    monkeypatch.setattr(frame_ids, "TRAIN_BLOCK", 2)
    det = make(tmp_path / "run", name)
    fast = frame_ids.frame_coordinates(det)
    assert fast is not None
    pulses, cells = det.frame_labels("pulseId"), det.frame_labels("cellId")
    assert sorted(fast) == ["cell_id", "pulse_id", "train_id"]
    np.testing.assert_array_equal(fast["train_id"], np.asarray(pulses.train, np.uint64))
    np.testing.assert_array_equal(fast["pulse_id"], np.asarray(pulses.inner, np.uint64))
    np.testing.assert_array_equal(fast["cell_id"], np.asarray(cells.inner, np.uint64))
    for v in fast.values():
        assert v.dtype == np.uint64


@pytest.mark.parametrize("name", ["agipd-var", "dssc-raw"])
def test_frame_view_coordinates_written_in_blocks(tmp_path: Path, name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame view writes its per-frame IDs block of trains by block (blocks of 2
    trains here): they equal the detector's own labels."""
    from detstack.convert import frame_ids
    monkeypatch.setattr(frame_ids, "TRAIN_BLOCK", 2)
    det = make(tmp_path / "run", name)
    out = to_vds(det, tmp_path / "v.h5", layout="frames")
    pulses, cells = det.frame_labels("pulseId"), det.frame_labels("cellId")
    with h5py.File(out, "r") as f:
        assert sorted(f["frames"]) == ["cell_id", "pulse_id", "train_id"]
        for got, want in ((f["frames/train_id"], pulses.train), (f["frames/pulse_id"], pulses.inner),
                          (f["frames/cell_id"], cells.inner)):
            assert got.dtype == np.uint64
            np.testing.assert_array_equal(got[()], np.asarray(want, np.uint64))


def test_frame_coordinates_disagreeing_modules_refused(tmp_path: Path) -> None:
    """Modules recording different pulse IDs for a frame: the frame-layout view and the
    CXI file are refused with the detector's typed error (module, train), and nothing
    is written."""
    from detstack.errors import InconsistentModulesError
    synth.write_run(tmp_path / "run", "AGIPD1M", raw=True, n_trains=3, frames_per_train=2,
                    modules=[0, 1], with_control=False)
    bad = tmp_path / "run" / "RAW-R0001-AGIPD01-S00000.h5"
    with h5py.File(bad, "r+") as f:
        f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/1CH0:xtdf/image/pulseId"][3] = 77
    det = detstack.AGIPD1M(detstack.RunDirectory(tmp_path / "run"), raw=True)
    from detstack.convert import frame_ids
    assert frame_ids.frame_coordinates(det) is None
    with pytest.raises(InconsistentModulesError, match="train 10001"):
        to_vds(det, tmp_path / "v.h5", layout="frames")
    with pytest.raises(InconsistentModulesError, match="train 10001"):
        to_cxi(det, tmp_path / "v.cxi")
    assert not (tmp_path / "v.h5").exists() and not (tmp_path / "v.cxi").exists()
