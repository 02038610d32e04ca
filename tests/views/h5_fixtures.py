"""Shared runs and checks for the HDF5 view tests (virtual views, CXI, copies).

Synthetic runs of every detector kind (raw and corrected, module gaps, missing trains,
variable frame counts, several sequence files) are written once per test module; the
helpers compare a view's arrays, read with plain h5py, with what the detector reads
from the run, and the whole reader API on the view with the same API on the run.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import xarray as xr

import detstack
from detstack import synth
from detstack.convert.plan import ViewPlan, fill_value_for

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas/view-record.schema.json").read_text())

MAIN_KEY = {"AGIPD1M": "image.data", "AGIPD500K": "image.data", "LPD1M": "image.data",
            "DSSC1M": "image.data", "JUNGFRAU": "data.adc"}

# name -> (kind, synth.write_run arguments, detector arguments)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "agipd-raw": ("AGIPD1M", dict(raw=True, n_trains=5, frames_per_train=[5, 0, 7, 6, 7],
                                  modules=[0, 1, 3, 9], missing_trains={3: [10002]},
                                  trains_per_file=2), {"raw": True}),
    "agipd-corr": ("AGIPD1M", dict(raw=False, n_trains=4, frames_per_train=[3, 4, 4, 2],
                                   modules=[2, 5], missing_trains={5: [10001]},
                                   trains_per_file=3, layout="shuffle-deflate"), {}),
    "agipd500k": ("AGIPD500K", dict(raw=True, n_trains=3, frames_per_train=3, modules=[1, 6]),
                  {"raw": True}),
    "lpd-raw": ("LPD1M", dict(raw=True, n_trains=3, frames_per_train=4, modules=[0, 15],
                              empty_trains={15: [10001]}), {"raw": True}),
    "lpd-corr": ("LPD1M", dict(raw=False, n_trains=3, frames_per_train=4, modules=[2, 15],
                               layout="deflate"), {}),
    "dssc-raw": ("DSSC1M", dict(raw=True, n_trains=4, frames_per_train=3, modules=[0, 7],
                                pulse_id_step=4, trains_per_file=2), {"raw": True}),
    "jf-raw": ("JUNGFRAU", dict(raw=True, n_trains=4, n_modules=4, modules=[1, 2, 4],
                                missing_trains={2: [10001]}, n_cells=2, trains_per_file=3),
               {"raw": True}),
    "jf-corr": ("JUNGFRAU", dict(raw=False, n_trains=3, n_modules=2, n_cells=3), {}),
    "agipd-contig": ("AGIPD1M", dict(raw=True, n_trains=3, frames_per_train=4, modules=[4],
                                     layout="contiguous"), {"raw": True}),
}


def make_run(path: Path, name: str) -> Any:
    """Write case ``name`` into ``path`` and return its detector."""
    kind, run_kw, det_kw = CASES[name]
    synth.write_run(path, kind, with_control=False, **run_kw)
    return open_det(detstack.RunDirectory(path), name)


def open_det(data: Any, name: str) -> Any:
    kind, _, det_kw = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(detstack, kind)(data, **det_kw)


@pytest.fixture(scope="module", params=sorted(CASES), name="case")
def case_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[str, Path, Any]:
    """(case name, run folder, detector on the run), one per case."""
    path = tmp_path_factory.mktemp(request.param) / "run"
    return request.param, path, make_run(path, request.param)


def expected_view(det: Any, key: str, layout: str = "trains", squeeze: bool = False
                  ) -> np.ndarray:
    """The view contract's array of ``key``, built from the detector's own reads:
    ``(slot, train, frame, *entry)`` (train layout) or ``(slot, frame, *entry)`` (frame
    layout) per frame, ``(slot, train, *entry)`` per train; gaps hold the key's fill value
    by the view convention."""
    kd = det[key]
    entry, dtype = det.data.key_info(next(iter(det.source_to_modno)), key)
    fill = fill_value_for(key, dtype)
    rows = kd.ndarray(module_gaps=True, fill_value=fill)
    rows = rows.reshape(rows.shape[:2] + tuple(entry))  # the reader hides length-1 axes
    if squeeze:
        rows = rows.reshape(rows.shape[:2] + ViewPlan(det, [key], squeeze=True).key(key)
                            .stored_entry)
    fmap = det.group_map(kd.group)
    per_frame = det.kind.xtdf and kd.group == det.kind.index_group
    if not per_frame or layout == "frames":
        return rows
    counts = fmap.train_counts().astype(np.int64)
    out = np.full(rows.shape[:1] + (len(counts), int(counts.max())) + rows.shape[2:], fill,
                  rows.dtype)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for t, c in enumerate(counts):
        out[:, t, :c] = rows[:, offsets[t]:offsets[t] + c]
    return out


def assert_equal_arrays(ours: Any, ref: Any) -> None:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    if not np.array_equal(ours, ref, equal_nan=ours.dtype.kind in "fc"):
        np.testing.assert_array_equal(ours, ref, strict=True)


def assert_reader_identical(det: Any, vdet: Any, kind: str) -> None:
    """get_array, trains and the dask array give the same on the view as on the run."""
    key = MAIN_KEY[kind]
    assert repr(vdet) == repr(det)
    assert vdet.n_modules == det.n_modules and vdet.train_ids == det.train_ids
    assert vdet.modules == det.modules
    xr.testing.assert_identical(vdet.get_array(key), det.get_array(key))
    if kind != "JUNGFRAU":
        for pulses in (np.s_[1:3], detstack.by_index[[0, 2]], detstack.by_id[:2]):
            xr.testing.assert_identical(vdet.get_array(key, pulses=pulses),
                                        det.get_array(key, pulses=pulses))
        xr.testing.assert_identical(vdet.get_array(key, unstack_pulses=False),
                                    det.get_array(key, unstack_pulses=False))
    for (t1, d1), (t2, d2) in zip(det.trains(require_all=False),
                                  vdet.trains(require_all=False), strict=True):
        assert t1 == t2
        for k in d2:
            xr.testing.assert_identical(d1[k], d2[k])
    a, b = det.get_dask_array(key), vdet.get_dask_array(key)
    np.testing.assert_array_equal(a.values, b.values)


def validate_record(record: dict[str, Any]) -> None:
    jsonschema.validate(json.loads(json.dumps(record)), SCHEMA)
