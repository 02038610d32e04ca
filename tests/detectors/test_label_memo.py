"""Frame IDs are read once per train for a detector and its train selections (one-frame
reads make a new selection per frame); disagreeing IDs are refused every time, and
labels from the memo equal labels read from the files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.detectors.label_memo import LabelMemo
from detstack.errors import InconsistentModulesError

SRC = "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 modules x 4 trains x 3 frames, pulse IDs 0-2 but 30-32 in train 10003; module 1
    has pulse ID 77 in train 10002, frame 1."""
    folder = tmp_path_factory.mktemp("memo") / "run"
    synth.write_run(folder, "AGIPD1M", raw=True, n_trains=4, frames_per_train=3,
                    modules=[0, 1, 2], with_control=False)
    for m in range(3):
        with h5py.File(folder / f"RAW-R0001-AGIPD0{m}-S00000.h5", "r+") as f:
            ids = f[f"INSTRUMENT/{SRC.replace('1CH0', f'{m}CH0')}/image/pulseId"]
            ids[9:12] = np.array([30, 31, 32]).reshape(ids[9:12].shape)
            if m == 1:
                ids[7] = 77
    return folder


def test_selections_share_checked_ids(run: Path) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    roi = np.s_[0, :2, :3]
    fresh = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    for _ in range(2):      # the second read of each train takes its IDs from the memo
        for tid in (10000, 10003, 10001):
            got = det.select_trains(detstack.by_id[[tid]]).get_array(
                "image.data", pulses=detstack.by_index[1:3], roi=roi)
            want = fresh.select_trains(detstack.by_id[[tid]]).get_array(
                "image.data", pulses=detstack.by_index[1:3], roi=roi)
            assert got.identical(want)
            assert got.coords["pulse"].values.tolist() == ([31, 32] if tid == 10003 else [1, 2])
            assert got.coords["train"].values.tolist() == [tid]
    both = det.select_trains(detstack.by_id[[10000, 10003]]).get_array(
        "image.data", roi=roi, unstack_pulses=False)
    assert both.coords["pulse"].values.tolist() == [0, 1, 2, 30, 31, 32]
    assert both.coords["train"].values.tolist() == [10000] * 3 + [10003] * 3
    for _ in range(2):      # a train whose modules disagree is refused every time
        with pytest.raises(InconsistentModulesError, match="train 10002"):
            det.select_trains(detstack.by_id[[10002]]).get_array("image.data", roi=roi)
        with pytest.raises(InconsistentModulesError, match="train 10002"):
            det.get_array("image.data", roi=roi)


def test_memo_keeps_trains_with_their_frame_counts() -> None:
    memo = LabelMemo(max_ids=8)
    memo.put("pulseId", np.array([5, 6, 7], np.uint64), np.array([0, 2, 2, 5]),
             np.array([10, 11, 20, 21, 22], np.uint64))
    counts = np.array([2, 0, 3])
    assert memo.get("pulseId", np.array([5, 6, 7], np.uint64), counts).tolist() == \
        [10, 11, 20, 21, 22]
    assert memo.get("pulseId", np.array([7], np.uint64), np.array([3])).tolist() == [20, 21, 22]
    assert memo.get("pulseId", np.array([7], np.uint64), np.array([2])) is None
    assert memo.get("pulseId", np.array([8], np.uint64), np.array([1])) is None
    assert memo.get("cellId", np.array([5], np.uint64), np.array([2])) is None
    memo.put("pulseId", np.array([9], np.uint64), np.array([0, 4]),
             np.array([1, 2, 3, 4], np.uint64))          # over the bound: starts again
    assert memo.get("pulseId", np.array([5], np.uint64), np.array([2])) is None
    assert memo.get("pulseId", np.array([9], np.uint64), np.array([4])).tolist() == [1, 2, 3, 4]
    memo.put("pulseId", np.array([1], np.uint64), np.array([0, 9]),
             np.arange(9, dtype=np.uint64))               # alone beyond it: not kept
    assert memo.get("pulseId", np.array([1], np.uint64), np.array([9])) is None
