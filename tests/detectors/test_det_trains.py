"""det.trains(): train-by-train dicts of every key, vs EXtra-data."""

from __future__ import annotations

import numpy as np
import pytest
from detcheck import assert_same_xarray, det_pair, raises_like, to_ours
from extra_data import by_id, by_index


def assert_same_trains(ours_iter, ref_iter, *, max_trains: int | None = None) -> list[int]:
    """Same train IDs in order, and per train the same keys with equal arrays."""
    seen = []
    ours_iter, ref_iter = iter(ours_iter), iter(ref_iter)
    for ref_tid, ref_data in ref_iter:
        tid, data = next(ours_iter)
        assert tid == ref_tid and isinstance(tid, int)
        assert sorted(data) == sorted(ref_data), tid
        for key, ref_arr in ref_data.items():
            try:
                assert_same_xarray(data[key], ref_arr)
            except AssertionError as exc:
                raise AssertionError(f"train {tid} key {key}: {exc}") from exc
        seen.append(tid)
        if max_trains is not None and len(seen) == max_trains:
            return seen
    with pytest.raises(StopIteration):
        next(ours_iter)
    return seen


@pytest.fixture(scope="module")
def lpd(ed_lpd_filled):
    return det_pair(ed_lpd_filled, "LPD1M", trains=np.s_[:2], modules=[0, 2, 5])


def test_all_pulses(lpd):
    ours, ref = lpd
    tids = assert_same_trains(ours.trains(), ref.trains())
    assert tids == [10000, 10001]
    _, data = next(iter(ours.trains()))
    assert data["image.data"].shape == (3, 1, 128, 256, 256)
    assert data["image.data"].dims == ("module", "train", "pulse", "slow_scan", "fast_scan")
    assert data["image.data"].values[[0, 2]].any()
    assert data["detector.data"].dims == ("module", "dim_0")
    assert data["image.pulseId"].dims == ("module", "train", "pulse")


@pytest.mark.parametrize("pulses", [
    by_id[0], by_id[:5], by_id[122:], by_id[[1, 7, 22, 23]], by_id[3:50:7], by_id[[]],
    by_index[0], by_index[:5], by_index[122:], by_index[[1, 7, 22, 23]], by_index[::40],
    np.s_[5:9], [3, 4, 200], np.array([1, 2]),
], ids=repr)
def test_pulse_selection(lpd, pulses):
    ours, ref = lpd
    assert_same_trains(ours.trains(pulses=to_ours(pulses)), ref.trains(pulses=pulses))


@pytest.mark.parametrize("pulses", [np.s_[-1:], np.s_[::0], np.s_[1.5:]], ids=repr)
def test_bad_pulse_selection(lpd, pulses):
    ours, ref = lpd
    raises_like(lambda: next(iter(ours.trains(pulses=pulses))),
                lambda: next(iter(ref.trains(pulses=pulses))))


def test_require_all_gap(ed_mini_filled):
    """Module 1 misses train 10002: skipped by default, present without module 1 else."""
    ours, ref = det_pair(ed_mini_filled, "LPD1M", modules=[0, 1])
    tids = assert_same_trains(ours.trains(), ref.trains())
    assert tids == [10000, 10001, 10003, 10004]
    tids = assert_same_trains(ours.trains(require_all=False, pulses=np.s_[2:5]),
                              ref.trains(require_all=False, pulses=np.s_[2:5]))
    assert tids == [10000, 10001, 10002, 10003, 10004]
    data = dict(ours.trains(require_all=False))[10002]
    assert data["image.data"].coords["module"].values.tolist() == [0]


def test_reduced(ed_reduced_filled):
    ours, ref = det_pair(ed_reduced_filled, "AGIPD1M", modules=[8, 9], trains=np.s_[3:6])
    for pulses in (np.s_[:], by_id[5:], by_index[[0, 3, 12]]):
        assert_same_trains(ours.trains(pulses=to_ours(pulses)), ref.trains(pulses=pulses))


def test_raw_agipd(ed_spb_raw_filled):
    ours, ref = det_pair(ed_spb_raw_filled, "AGIPD1M", raw=True, modules=[0, 4],
                         trains=np.s_[:2])
    assert_same_trains(ours.trains(pulses=np.s_[:8]), ref.trains(pulses=np.s_[:8]))
    _, data = next(iter(ours.trains(pulses=np.s_[:8])))
    assert data["image.data"].dims == ("module", "train", "pulse", "data_gain", "slow_scan",
                                       "fast_scan")


def test_parallel_gain(ed_pg_filled):
    """All pulses match EXtra-data. With a selection EXtra-data's trains() ignores the
    parallel-gain layout (it selects on the junk IDs / positions of the whole train), unlike
    its own get_array, and some selections fail with duplicate labels): we select like
    get_array, per gain stage on the repaired IDs."""
    ours, ref = det_pair(ed_pg_filled, "LPD1M", parallel_gain=True, modules=[0, 7],
                         trains=np.s_[:1])
    assert_same_trains(ours.trains(), ref.trains())
    _, data = next(iter(ours.trains()))
    assert data["image.data"].shape == (2, 1, 3, 100, 256, 256)
    assert data["image.data"].dims == ("module", "train", "gain", "pulse", "slow_scan",
                                       "fast_scan")
    for pulses in (np.s_[:5], by_id[:5], by_index[[1, 50, 150]], by_id[[3, 1005, 99]]):
        _, got = next(iter(ours.trains(pulses=to_ours(pulses))))
        expected = ours.get_array("image.data", pulses=to_ours(pulses))
        assert_same_xarray(got["image.data"], expected)
        try:  # the reference differs (fewer gain stages), or fails on duplicate labels
            _, ref_got = next(iter(ref.trains(pulses=pulses)))
        except ValueError as exc:
            assert "duplicates" in str(exc)
        else:
            assert ref_got["image.data"].shape != expected.shape
