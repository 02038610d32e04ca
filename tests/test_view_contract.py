"""The view contract: arrays laid out by ViewPlan, read back through ViewCollection,
give the detector API exactly what the run gives (independent of any storage form)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
import pytest
import xarray as xr

import detstack
from detstack import synth
from detstack.convert.plan import ViewPlan, as_detector
from detstack.errors import FileFormatError
from detstack.store import ViewCollection

SCHEMA = json.loads((Path(__file__).parents[1] / "schemas/view-record.schema.json").read_text())


def numpy_view(det: Any, form: str = "numpy", layout: str = "trains",
               squeeze: bool = False) -> ViewCollection:
    plan = ViewPlan(det, layout=layout, squeeze=squeeze)
    arrays = {}
    for kp in plan.keys:
        arr = np.full(plan.shape(kp), kp.fill_value, kp.dtype)
        for b in plan.blocks(kp):
            with h5py.File(b.file, "r") as f:
                rows = kp.stored_rows(f[b.dataset][b.src_start:b.src_start + b.count])
            arr[b.index] = rows if kp.per_frame else rows[0]
        arrays[kp.key] = arr
    record = plan.record(form)
    counts = {g: plan.counts(g) for g in record["index_groups"]}
    return ViewCollection("/nowhere/view", record, arrays, plan.train_ids, counts)


MAIN_KEY = {"AGIPD1M": "image.data", "AGIPD500K": "image.data", "LPD1M": "image.data",
            "DSSC1M": "image.data", "JUNGFRAU": "data.adc"}

CASES = {
    "agipd-raw-gaps": ("AGIPD1M", dict(raw=True, n_trains=4, frames_per_train=[5, 0, 7, 6],
                                       modules=[0, 1, 3, 9], missing_trains={3: [10002]},
                                       trains_per_file=2), {"raw": True}),
    "lpd-corr": ("LPD1M", dict(raw=False, n_trains=3, frames_per_train=4, modules=[2, 15],
                               layout="deflate"), {}),
    "dssc-raw": ("DSSC1M", dict(raw=True, n_trains=3, frames_per_train=3, modules=[0, 7],
                                pulse_id_step=4), {"raw": True}),
    "agipd500k": ("AGIPD500K", dict(raw=True, n_trains=2, frames_per_train=3, modules=[1, 6]),
                  {"raw": True}),
    "jungfrau": ("JUNGFRAU", dict(raw=True, n_trains=3, n_modules=4, modules=[1, 2, 4],
                                  missing_trains={2: [10001]}, n_cells=2), {"raw": True}),
}


# (layout, squeeze): the HDF5 forms keep length-1 axes, the zarr forms drop them
VARIANTS = {"trains": ("trains", False), "frames-squeezed": ("frames", True)}


@pytest.fixture(scope="module", params=[(c, v) for c in sorted(CASES) for v in VARIANTS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def det_and_view(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Any, Any, str]:
    case, variant = request.param
    kind, run_kw, det_kw = CASES[case]
    path = tmp_path_factory.mktemp(case)
    synth.write_run(path, kind, with_control=False, **run_kw)
    cls = getattr(detstack, kind)
    det = cls(detstack.RunDirectory(path), **det_kw)
    layout, squeeze = VARIANTS[variant]
    return det, cls(numpy_view(det, layout=layout, squeeze=squeeze), **det_kw), kind


def test_get_array_identical(det_and_view: tuple[Any, Any, str]) -> None:
    det, view_det, kind = det_and_view
    key = MAIN_KEY[kind]
    assert repr(view_det) == repr(det)
    assert view_det.n_modules == det.n_modules and view_det.train_ids == det.train_ids
    xr.testing.assert_identical(view_det.get_array(key), det.get_array(key))
    if kind != "JUNGFRAU":
        for pulses in (np.s_[1:3], detstack.by_index[[0, 2]], detstack.by_id[:2]):
            xr.testing.assert_identical(view_det.get_array(key, pulses=pulses),
                                        det.get_array(key, pulses=pulses))
        xr.testing.assert_identical(view_det.get_array(key, unstack_pulses=False),
                                    det.get_array(key, unstack_pulses=False))


def test_trains_and_dask_identical(det_and_view: tuple[Any, Any, str]) -> None:
    det, view_det, kind = det_and_view
    key = MAIN_KEY[kind]
    for (t1, d1), (t2, d2) in zip(det.trains(require_all=False),
                                  view_det.trains(require_all=False), strict=True):
        assert t1 == t2 and d1.keys() == d2.keys()
        for k in d1:
            xr.testing.assert_identical(d1[k], d2[k])
    a, b = det.get_dask_array(key), view_det.get_dask_array(key)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.dims == b.dims


def test_record_validates(det_and_view: tuple[Any, Any, str]) -> None:
    det, view_det, _ = det_and_view
    record = ViewPlan(det).record("numpy")
    jsonschema.validate(json.loads(json.dumps(record)), SCHEMA)
    assert record["detector"]["n_modules"] == det.n_modules
    assert [m["number"] for m in record["detector"]["modules"].values()] == det.modules


def test_module_slots_keep_gaps(det_and_view: tuple[Any, Any, str]) -> None:
    det, _, kind = det_and_view
    plan = ViewPlan(det)
    kp = plan.key(MAIN_KEY[kind])
    assert plan.shape(kp)[0] == det.n_modules
    counts = plan.counts(kp.group)
    absent = sorted(set(range(det.n_modules)) - set(plan.slots))
    assert not counts[absent].any()


def test_newer_schema_refused(det_and_view: tuple[Any, Any, str]) -> None:
    det, _, _ = det_and_view
    plan = ViewPlan(det)
    record = plan.record("numpy") | {"schema_version": 99}
    with pytest.raises(FileFormatError, match="schema version 99.*Upgrade detstack"):
        ViewCollection("/x/view", record, {}, plan.train_ids, {})


def test_as_detector_from_run(tmp_path: Path) -> None:
    synth.write_run(tmp_path, "LPD1M", n_trains=2, frames_per_train=2, modules=[4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = as_detector(detstack.RunDirectory(tmp_path))
    assert type(det).__name__ == "LPD1M" and det.modules == [4]
