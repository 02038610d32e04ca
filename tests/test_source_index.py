"""The compact index of one (source, group) in one file reads back exactly as given."""

from __future__ import annotations

import numpy as np
import pytest

from detstack.run.source_index import SourceIndex, compact


def test_regular_index_keeps_no_arrays() -> None:
    first = np.arange(250, dtype=np.uint64) * 64 + 128
    idx = SourceIndex(first, np.full(250, 64, np.uint64))
    assert idx.nbytes() == 0 and len(idx) == 250
    assert idx.first.dtype == idx.count.dtype == np.uint64
    np.testing.assert_array_equal(idx.first, first)
    np.testing.assert_array_equal(idx.count, np.full(250, 64))


@pytest.mark.parametrize("top, dtype", [(200, np.uint8), (60_000, np.uint16),
                                        (3_000_000_000, np.uint32), (2**62, np.uint64)])
def test_irregular_index_in_the_smallest_type(top: int, dtype: type) -> None:
    """A missing train (count 0), a short train, and first rows up to ``top``."""
    first = np.array([0, 5, 5, top - 3], np.uint64)
    count = np.array([5, 0, 2, 3], np.uint64)
    idx = SourceIndex(first, count)
    assert idx._first is not None and idx._first.dtype == dtype
    assert idx.nbytes() == 4 * np.dtype(dtype).itemsize + idx._count.nbytes
    np.testing.assert_array_equal(idx.first, first)
    np.testing.assert_array_equal(idx.count, count)
    assert idx.first.dtype == np.uint64


def test_equal_groups_share_their_arrays() -> None:
    first, count = np.array([0, 3, 3], np.uint64), np.array([3, 0, 3], np.uint64)
    a, b = SourceIndex(first, count), SourceIndex(first.copy(), count.copy())
    pool: list[np.ndarray] = []
    a.share(pool)
    b.share(pool)
    assert a._first is b._first and a._count is b._count and len(pool) == 2
    with pytest.raises(ValueError, match="read-only"):
        a._first[0] = 1


def test_empty_and_negative() -> None:
    idx = SourceIndex(np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    assert len(idx.first) == len(idx.count) == 0
    with pytest.raises(ValueError, match="negative"):
        compact(np.array([1, -2]))
    with pytest.raises(ValueError, match="1-D"):
        SourceIndex(np.zeros(3, np.uint64), np.zeros(2, np.uint64))
