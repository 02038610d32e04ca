"""plan_runs plans every module at once: the same runs FrameMap.runs gives module by
module, over random maps (gaps, file breaks, rows out of order, selections)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detstack.detectors import row_plan
from detstack.detectors.row_plan import plan_runs
from detstack.frames import FrameMap


@st.composite
def maps(draw: st.DrawFn) -> tuple[FrameMap, np.ndarray | None, bool]:
    n_mod, n_trains = draw(st.integers(1, 4)), draw(st.integers(0, 7))
    per_train_counts = draw(st.lists(st.integers(0, 4), min_size=n_trains, max_size=n_trains))
    counts = np.zeros((n_mod, n_trains), np.uint64)
    file = np.full((n_mod, n_trains), -1, np.int64)
    first = np.zeros((n_mod, n_trains), np.uint64)
    for m in range(n_mod):
        row, f = 0, 0
        for t, c in enumerate(per_train_counts):
            if c == 0 or draw(st.booleans()) and draw(st.booleans()):
                continue                                    # this module lacks the train
            if draw(st.integers(0, 4)) == 0:
                f, row = f + 1, 0                           # a new sequence file
            row += draw(st.sampled_from([0, 0, 0, 3]))      # rows of other trains between
            counts[m, t], file[m, t], first[m, t] = c, f, row
            row += c
    if draw(st.booleans()):     # the narrow dtypes scanned maps may use
        counts, file, first = counts.astype(np.uint32), file.astype(np.int32), \
            first.astype(np.uint32)
    fmap = FrameMap(tuple(f"s{m}" for m in range(n_mod)), np.arange(n_mod),
                    np.arange(n_trains, dtype=np.uint64) + 1000, counts, file, first,
                    tuple(range(8)))
    per_train = draw(st.booleans())
    n_rows = int(fmap.offsets(per_train)[-1])
    selected = None
    if draw(st.booleans()):
        selected = np.array(draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)),
                            bool)
    return fmap, selected, per_train


def expected(fmap: FrameMap, selected: np.ndarray | None, per_train: bool) -> list[list]:
    return [[(r.file, r.src_start, r.dst_start, r.length)
             for r in fmap.runs(m, selected, per_train)] for m in range(fmap.n_modules)]


@settings(max_examples=150, deadline=None)
@given(maps())
def test_same_runs_as_frame_map(case: tuple[FrameMap, np.ndarray | None, bool]) -> None:
    fmap, selected, per_train = case
    assert plan_runs(fmap, selected, per_train) == expected(fmap, selected, per_train)


@settings(max_examples=60, deadline=None)
@given(maps())
def test_module_groups_give_the_same_runs(case: tuple[FrameMap, np.ndarray | None, bool],
                                          ) -> None:
    """Planned one module at a time (what a huge selection does), nothing changes."""
    fmap, selected, per_train = case
    old = row_plan.GROUP_CELLS
    row_plan.GROUP_CELLS = 1
    try:
        assert plan_runs(fmap, selected, per_train) == expected(fmap, selected, per_train)
    finally:
        row_plan.GROUP_CELLS = old


def test_one_frame_of_contiguous_modules() -> None:
    """One selected frame: one run per module holding it, at output row 0."""
    counts = np.array([[4, 4], [4, 0]], np.uint64)
    fmap = FrameMap(("a", "b"), np.arange(2), np.array([1, 2], np.uint64), counts,
                    np.array([[0, 0], [1, -1]]), np.array([[0, 4], [8, 0]], np.uint64), (0, 1))
    sel = np.zeros(8, bool)
    sel[5] = True
    assert plan_runs(fmap, sel) == [[(0, 5, 0, 1)], []]
    assert plan_runs(fmap) == [[(0, 0, 0, 8)], [(1, 8, 0, 4)]]
    assert plan_runs(fmap, per_train=True) == [[(0, 0, 0, 1), (0, 4, 1, 1)], [(1, 8, 0, 1)]]
