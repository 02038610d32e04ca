"""The frame map keeps its (module, train) arrays small, and exact whatever the values."""

from __future__ import annotations

import numpy as np

from detstack.frames import FrameMap
from detstack.run.source_table import SourceTable


def table(tids: list[int], first: list[int], count: list[int], file: int = 0) -> SourceTable:
    n = len(tids)
    return SourceTable(np.asarray(tids, np.uint64), np.full(n, file, np.int64),
                       np.asarray(first, np.uint64), np.asarray(count, np.uint64))


def test_small_rows_in_32_bits() -> None:
    fmap = FrameMap.from_tables(["a", "b"], [0, 1], np.array([10, 11, 12], np.uint64),
                                [table([10, 12], [0, 64], [64, 64]),
                                 table([11, 12], [0, 5], [5, 64], file=1)], ["f0", "f1"])
    assert (fmap.counts.dtype, fmap.first.dtype, fmap.file.dtype) == (np.uint32, np.uint32,
                                                                      np.int32)
    np.testing.assert_array_equal(fmap.counts, [[64, 0, 64], [0, 5, 64]])
    np.testing.assert_array_equal(fmap.file, [[0, -1, 0], [-1, 1, 1]])
    assert fmap.train_counts().dtype == np.uint64
    np.testing.assert_array_equal(fmap.train_counts(), [64, 5, 64])
    np.testing.assert_array_equal(fmap.offsets(), [0, 64, 69, 133])
    file, row = fmap.frame_sources(1)
    np.testing.assert_array_equal(file[64:], [1] * 5 + [1] * 64)
    np.testing.assert_array_equal(row[64:69], np.arange(5))


def test_rows_past_32_bits_kept_exactly() -> None:
    """A row number that needs 64 bits widens the map's rows, never wraps them."""
    big = 2**32 + 7
    fmap = FrameMap.from_tables(["a", "b"], [0, 1], np.array([10, 11], np.uint64),
                                [table([10, 11], [0, 3], [3, 3]),
                                 table([10, 11], [big, 2**32 - 2], [2, 4])], ["f0"])
    assert fmap.counts.dtype == fmap.first.dtype == np.uint64
    np.testing.assert_array_equal(fmap.first, [[0, 3], [big, 2**32 - 2]])
    np.testing.assert_array_equal(fmap.counts, [[3, 3], [2, 4]])
    assert [r.src_start for r in fmap.runs(1)] == [big, 2**32 - 2]
