"""Train selections: ``by_id[...]``, ``by_index[...]`` and plain indexing.

Hand-written cases on a train list with gaps, then a property test against EXtra-data's
``select_train_ids`` (the oracle) on random train lists and selections.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detstack
from detstack import by_id, by_index
from detstack.run import ById, ByIndex, select_train_ids

# a train list with gaps: 10002, 10004-10006, 10009, 10011-10019 are missing
TIDS = np.array([10000, 10001, 10003, 10007, 10008, 10010, 10020], dtype=np.uint64)

CASES = [
    # positional
    (np.s_[:], list(TIDS)),
    (np.s_[1:3], [10001, 10003]),
    (np.s_[::3], [10000, 10007, 10020]),
    (np.s_[-2:], [10010, 10020]),
    (np.s_[10:], []),
    (np.s_[::-2], [10000, 10003, 10008, 10020]),      # any order asked: result ascending
    (0, [10000]),
    (-1, [10020]),
    (np.int32(3), [10007]),
    ([4, 0, 2], [10000, 10003, 10008]),
    (np.array([6, 1]), [10001, 10020]),
    ([3, 1, 3], [10001, 10007]),                      # repeats dropped
    (np.array([True, False, True, False, False, False, True]), [10000, 10003, 10020]),
    ([], []),
    (by_index[1:3], [10001, 10003]),
    (by_index[[5, 2]], [10003, 10010]),
    (by_index[-1], [10020]),
    # by train ID
    (by_id[10003:10010], [10003, 10007, 10008]),      # stop excluded
    (by_id[10002:10008], [10003, 10007]),             # absent start: next larger ID
    (by_id[10002:10009], [10003, 10007, 10008]),      # absent stop: next larger ID
    (by_id[9000:10002], [10000, 10001]),              # start before the run
    (by_id[10009:99999], [10010, 10020]),             # stop after the run
    (by_id[10009:], [10010, 10020]),
    (by_id[:10003], [10000, 10001]),
    (by_id[::2], [10000, 10003, 10008, 10020]),       # the step counts trains, not IDs
    (by_id[10001:10020:2], [10001, 10007, 10010]),
    (by_id[10020:], [10020]),
    (by_id[10010:10001:-1], [10003, 10007, 10008, 10010]),
    (by_id[[10003, 10004, 10020]], [10003, 10020]),
    (by_id[np.array([10020, 10000], dtype=np.uint64)], [10000, 10020]),
    (by_id[10007], [10007]),
    (by_id[np.int64(10008)], [10008]),
    (by_id[[]], []),
]


@pytest.mark.parametrize("sel, expected", CASES, ids=[repr(c[0]) for c in CASES])
def test_select_train_ids(sel, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # none of these warn
        got = select_train_ids(TIDS, sel)
    assert got.dtype == np.uint64
    assert got.tolist() == [int(t) for t in expected]


EMPTY = [
    (by_id[10021:], "after the last train"),
    (by_id[20000:30000], "after the last train"),
    (by_id[:9999], "at or before the first train"),
    (by_id[:10000], "at or before the first train"),
    (by_id[5000:9000], "at or before the first train"),
    (by_id[10004:10006], "matches none"),
    (by_id[10008:10003], "matches none"),
    (by_id[[5, 10002, 30000]], "None of the 3"),
    (by_id[10002], "None of the 1"),
]


@pytest.mark.parametrize("sel, message", EMPTY, ids=[repr(c[0]) for c in EMPTY])
def test_empty_selection_warns(sel, message):
    with pytest.warns(UserWarning, match=message):
        got = select_train_ids(TIDS, sel)
    assert got.tolist() == []


def test_select_on_no_trains():
    none = np.zeros(0, np.uint64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_train_ids(none, by_id[10000:]).tolist() == []
        assert select_train_ids(none, np.s_[:5]).tolist() == []
        assert select_train_ids(none, np.zeros(0, bool)).tolist() == []


@pytest.mark.parametrize("sel, exc, message", [
    (np.ones(6, bool), ValueError, "length"),
    (np.ones(8, bool), ValueError, "length"),
    (7, IndexError, None),
    ([0, 9], IndexError, None),
    ("10000", TypeError, "str"),
    ([0.5, 1.5], TypeError, "list"),
    (by_id["10000"], TypeError, "integer"),
    (by_id[10000.0:], TypeError, "integer"),
    (by_id[-1], ValueError, "negative"),
    (by_id[[-5, 10000]], ValueError, "negative"),
    (by_id[-10:], ValueError, "negative"),
    (by_id[:-1], ValueError, "negative"),
    (by_id[::0], ValueError, "zero"),
])
def test_bad_selections(sel, exc, message):
    # by_id with negative IDs: EXtra-data raises OverflowError (numpy 2), a ValueError is meant
    with pytest.raises(exc, match=message):
        select_train_ids(TIDS, sel)


def test_xarray_selection():
    import xarray as xr

    values = TIDS.astype(np.int64)
    mask = xr.DataArray(values % 2 == 0, dims=["trainId"], coords={"trainId": values})
    assert select_train_ids(TIDS, mask).tolist() == [10000, 10008, 10010, 10020]
    # a mask over other trains: only the trains present are kept
    other = xr.DataArray([True, True, False], dims=["trainId"],
                         coords={"trainId": [10001, 10002, 10003]})
    assert select_train_ids(TIDS, other).tolist() == [10001]
    with pytest.raises(TypeError, match="boolean"):
        select_train_ids(TIDS, xr.DataArray(values, dims=["trainId"], coords={"trainId": values}))


def test_selection_objects():
    assert by_id[3:5] == ById(slice(3, 5))
    assert by_index[[1, 2]] == ByIndex([1, 2])
    assert isinstance(by_id[7], ById) and by_id[7].value == 7
    assert repr(by_id) == "by_id" and repr(by_index) == "by_index"
    assert detstack.by_id is by_id


# -- property test against the oracle -------------------------------------------------------

class _OracleIds(list):
    """EXtra-data's select_train_ids takes a list (it calls .index) but also compares it
    with '>' (numpy-style): with a plain list, an absent ID inside the run raises
    TypeError there. This list supports both, to test what it means to do."""

    def __gt__(self, other):
        return np.asarray(self) > other


def oracle(tids: np.ndarray, sel):
    import extra_data as ed
    from extra_data.read_machinery import select_train_ids as ed_select

    if isinstance(sel, ById):
        sel = ed.by_id[sel.value]
    elif isinstance(sel, ByIndex):
        sel = ed.by_index[sel.value]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = ed_select(_OracleIds(int(t) for t in tids), sel)
    return sorted(set(int(t) for t in result)), bool(rec)


train_lists = st.lists(st.integers(10000, 10060), min_size=1, max_size=25, unique=True).map(
    lambda xs: np.array(sorted(xs), dtype=np.uint64))
ids = st.one_of(st.none(), st.integers(9990, 10070))
steps = st.one_of(st.none(), st.integers(1, 4))
positions = st.one_of(st.none(), st.integers(-30, 30))


@st.composite
def selection(draw, tids):
    n = len(tids)
    kind = draw(st.sampled_from(["id_slice", "id_list", "id_int", "slice", "positions", "mask"]))
    if kind == "id_slice":
        return by_id[draw(ids):draw(ids):draw(steps)]
    if kind == "id_list":
        return by_id[draw(st.lists(st.integers(9990, 10070), max_size=6))]
    if kind == "id_int":
        return by_id[draw(st.integers(9990, 10070))]
    if kind == "slice":
        return by_index[draw(positions):draw(positions):draw(steps)]
    if kind == "positions":
        return draw(st.lists(st.integers(-n, n - 1), max_size=6))
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), tids=train_lists)
def test_matches_oracle(data, tids):
    sel = data.draw(selection(tids))
    expected, oracle_warned = oracle(tids, sel)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = select_train_ids(tids, sel)
    assert got.tolist() == expected
    # we warn whenever EXtra-data does; and about any by_id selection that finds nothing
    assert bool(rec) >= oracle_warned
    if isinstance(sel, ById) and not expected and not (
            isinstance(sel.value, list) and not sel.value):
        assert rec
