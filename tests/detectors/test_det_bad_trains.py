"""Detector reads of files with bad train IDs (EXtra-data's test_bad_trains.py) vs EXtra-data.

Out-of-order train IDs kept with ``inc_suspect_trains=True`` make EXtra-data's array
readers fail with an AssertionError (its section 7.1 bug). There we assert the right
answer, computed with plain h5py: trains sorted by ID, each with its own rows.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from detcheck import (
    assert_same_values,
    compare,
    det_pair,
    ds_open,
    ed_open,
    raises_like,
    to_ours,
)
from extra_data import by_id

import detstack

PROC_ROI = np.s_[38:46, :8]          # corrected AGIPD: random band at rows 40-43
RAW_ROI = np.s_[:, 38:46, :8]        # raw AGIPD: (data/gain, rows, columns)
PROC_SRC = "SPB_DET_AGIPD1M-1/DET/7CH0:xtdf"


def expected_sorted(path, roi, n_frames: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(train IDs sorted, module-7 frames of those trains in that order) via h5py."""
    with h5py.File(path, "r") as f:
        tids = f["INDEX/trainId"][:]
        n = int(np.count_nonzero(tids))
        tids = tids[:n]
        order = np.argsort(tids, kind="stable")
        data = f[f"INSTRUMENT/{PROC_SRC}/image/data"]
        frames = np.concatenate([data[(slice(p * n_frames, (p + 1) * n_frames),) + roi]
                                 for p in order])
    return tids[order], frames[None]


@pytest.mark.parametrize(("fixture", "bad_tid", "position"), [
    ("ed_tid_very_high", 10400, 10), ("ed_tid_low", 9000, 20)])
def test_out_of_order_kept(request, fixture, bad_tid, position):
    path = request.getfixturevalue(fixture)
    ours, ref = det_pair(path, "AGIPD1M", inc_suspect_trains=True)
    assert len(ours.train_ids) == len(ref.train_ids) == 250
    assert ours.train_ids == sorted(int(t) for t in ref.train_ids)
    assert bad_tid in ours.train_ids
    # the reference cannot read these arrays
    with pytest.raises(AssertionError):
        ref["image.data"].ndarray(roi=PROC_ROI)
    tids, expected = expected_sorted(path, PROC_ROI)
    got = ours["image.data"].ndarray(roi=PROC_ROI)
    assert_same_values(got, expected)
    assert np.abs(got).max() > 0
    # labels follow the same order: the bad train's frames are where its ID sorts
    arr = ours.get_array("image.data", roi=PROC_ROI, pulses=np.s_[:2])
    assert arr.coords["train"].values.tolist() == tids.tolist()
    assert_same_values(arr.values, expected.reshape((1, 250, 64) + expected.shape[2:])[:, :, :2])
    ix = ours.train_ids.index(bad_tid)
    with h5py.File(path, "r") as f:
        bad_frames = f[f"INSTRUMENT/{PROC_SRC}/image/data"][
            (slice(position * 64, position * 64 + 2),) + PROC_ROI]
    assert_same_values(arr.values[0, ix], bad_frames)
    # trains() and by_id pulse selection agree
    one = ours.select_trains(detstack.by_id[[bad_tid]])
    tid, data = next(iter(one.trains(pulses=detstack.by_index[:2])))
    assert tid == bad_tid
    assert_same_values(data["image.data"].values[0, 0, :, 38:46, :8], bad_frames)


@pytest.mark.parametrize(("fixture", "bad_tid"), [
    ("ed_tid_very_high", 10400), ("ed_tid_low", 9000)])
def test_out_of_order_excluded(request, fixture, bad_tid):
    path = request.getfixturevalue(fixture)
    ours, ref = det_pair(path, "AGIPD1M", inc_suspect_trains=False)
    assert len(ours.train_ids) == len(ref.train_ids) == 249
    assert bad_tid not in ours.train_ids
    assert ours.train_ids == [int(t) for t in ref.train_ids]
    for pulses in (np.s_[:1], by_id[[0, 2, 125]]):
        arr = compare(lambda p=pulses: ours.get_array("image.data", pulses=to_ours(p), roi=PROC_ROI),
                      lambda p=pulses: ref.get_array("image.data", pulses=p, roi=PROC_ROI))
        assert np.abs(arr.values).max() > 0
    compare(lambda: ours["image.data"].ndarray(roi=PROC_ROI),
            lambda: ref["image.data"].ndarray(roi=PROC_ROI))


def test_duplicate_train_id(ed_tid_high):
    raises_like(lambda: ds_open(ed_tid_high), lambda: ed_open(ed_tid_high))
    with pytest.raises(detstack.DuplicateTrainError):
        detstack.H5File(ed_tid_high)
    ours, ref = det_pair(ed_tid_high, "AGIPD1M", inc_suspect_trains=False, modules=[0])
    arr = compare(lambda: ours.get_array("image.data", pulses=np.s_[:1], roi=RAW_ROI),
                  lambda: ref.get_array("image.data", pulses=np.s_[:1], roi=RAW_ROI))
    assert arr.shape == (1, 485, 1, 2, 8, 8)
    assert arr.dims == ("module", "train", "pulse", "data_gain", "slow_scan", "fast_scan")
    assert arr.coords["train"].values[9:11].tolist() == [10009, 10011]
    assert arr.values[0, 8:12].any()
    compare(lambda: ours["image.data"].select_trains(np.s_[5:15]).ndarray(roi=RAW_ROI),
            lambda: ref["image.data"].select_trains(np.s_[5:15]).ndarray(roi=RAW_ROI))


@pytest.mark.parametrize("inc_suspect_trains", [True, False])
def test_flag_zero(ed_flag0, inc_suspect_trains):
    ours, ref = det_pair(ed_flag0, "AGIPD1M", inc_suspect_trains=inc_suspect_trains)
    assert ours.train_ids == [int(t) for t in ref.train_ids]
    assert len(ours.train_ids) == (486 if inc_suspect_trains else 485)
    assert (10030 in ours.train_ids) == inc_suspect_trains
    sub_o, sub_r = ours.select_trains(np.s_[25:35]), ref.select_trains(np.s_[25:35])
    for pulses in (np.s_[:], by_id[[1, 5]]):
        arr = compare(lambda p=pulses: sub_o.get_array("image.data", pulses=to_ours(p), roi=RAW_ROI),
                      lambda p=pulses: sub_r.get_array("image.data", pulses=p, roi=RAW_ROI))
        assert arr.values.any()
    compare(lambda: sub_o.data_availability(), lambda: sub_r.data_availability())
    assert [t for t, _ in sub_o.trains(pulses=np.s_[:1])] == [t for t, _ in sub_r.trains(
        pulses=np.s_[:1])]
