"""detstack's run reading compared with EXtra-data's, on every mock run and format version.

EXtra-data is the oracle here (never imported by detstack). Where it is known to be wrong
(reference section 7) or where detstack deliberately does better, the test asserts the
right answer and says why.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from functools import cached_property

import h5py
import numpy as np
import pytest

import detstack
from detstack import by_id, by_index

FORMAT_VERSIONS = ["0.5", "1.0", "1.2"]    # as the format_version fixture in conftest.py
VERSIONED = ["spb_raw", "spb_proc", "fxe_raw", "reduced_spb_proc",
             "agipd_file", "agipd_example_file", "lpd_file"]
FIXED = [("reduced_spb_raw", "1.2"), ("lpd_parallelgain", "1.0"), ("lpd_mini_gap", None),
         ("modern_spb_proc", None), ("scs", None), ("jungfrau", None),
         ("fxe_jungfrau", None), ("agipd500k", None)]
CASES = [(name, v) for name in VERSIONED for v in FORMAT_VERSIONS] + FIXED
CASE_IDS = [f"{name}-{v}" if v else name for name, v in CASES]

SMALL_ENTRY = 16 << 10   # where only the structure matters, keys above 16 kB per entry are skipped


def open_ours(path: str, **kwargs) -> detstack.DataCollection:
    if os.path.isdir(path):
        return detstack.RunDirectory(path, **kwargs)
    return detstack.H5File(path, **kwargs)


@dataclass
class Pair:
    """One mock opened by both libraries (detstack first), and what tests derive from it."""

    path: str
    folder: str
    before: list[str]       # the folder listing before anything was opened
    ours: detstack.DataCollection
    theirs: object

    @cached_property
    def keys(self) -> dict[str, set[str]]:
        return oracle_keys(self.ours)

    @cached_property
    def small_keys(self) -> dict[str, set[str]]:
        return oracle_keys(self.ours, small_only=True)

    @cached_property
    def small(self) -> tuple[detstack.DataCollection, object]:
        """Both collections with only the small keys selected."""
        return self.ours.select(self.small_keys), self.theirs.select(self.small_keys)


@pytest.fixture(scope="module", params=CASES, ids=CASE_IDS)
def pair(request, mock_data, ed_open) -> Pair:
    name, version = request.param
    path = mock_data(name, version)
    folder = os.path.dirname(path) if os.path.isfile(path) else path
    before = sorted(os.listdir(folder))
    ours = open_ours(path)
    return Pair(path, folder, before, ours, ed_open(path))


def ints(seq) -> list[int]:
    return [int(x) for x in seq]


@contextlib.contextmanager
def legacy_quiet():
    """Legacy source names warn (DeprecationWarning) in both libraries: quiet here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def dotted_keys(data: detstack.DataCollection, source: str) -> set[str]:
    """Keys whose HDF5 names contain dots: EXtra-data turns every '.' into '/' and fails."""
    f = data.files_for_source(source)[0]
    return {k for k in data.keys_for_source(source)
            if f.dataset_path(source, k).partition(source + "/")[2] != k.replace(".", "/")}


def oracle_keys(ours: detstack.DataCollection, *, small_only: bool = False) -> dict[str, set]:
    """{source: keys} that both libraries can read (optionally without big entries)."""
    out = {}
    with legacy_quiet():
        for src in ours.all_sources:
            keys = ours.keys_for_source(src) - dotted_keys(ours, src)
            if small_only:
                keys = {k for k in keys if _entry_nbytes(ours, src, k) <= SMALL_ENTRY}
            if keys:
                out[src] = keys
    return out


def _entry_nbytes(data, src, key) -> int:
    shape, dtype = data.key_info(src, key)
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def redundant_legacy(data: detstack.DataCollection) -> set[str]:
    """Legacy aliases whose real source is selected too: EXtra-data repeats their data in
    train dicts; detstack gives it once, under the real name."""
    return {s for s, target in data.legacy_sources.items() if target in data.all_sources}


def assert_train_equal(ours: dict, theirs: dict, data: detstack.DataCollection) -> None:
    """Same sources, same keys, equal values, shapes and dtypes."""
    redundant = redundant_legacy(data)
    theirs = {s: v for s, v in theirs.items() if s not in redundant}
    assert set(ours) == set(theirs)
    for src, src_data in theirs.items():
        assert set(ours[src]) == set(src_data), src
        assert ours[src]["metadata"] == {k: int(v) if k == "timestamp.tid" else v
                                         for k, v in src_data["metadata"].items()}
        for key, value in src_data.items():
            if key == "metadata":
                continue
            assert_same_array(ours[src][key], value, f"{src} {key}")


def assert_same_array(mine, theirs, what: str) -> None:
    """Equal shape, dtype and values (NaN equal to NaN); fast on big arrays."""
    mine, theirs = np.asarray(mine), np.asarray(theirs)
    assert mine.shape == theirs.shape, what
    assert mine.dtype == theirs.dtype, what
    if not np.array_equal(mine, theirs, equal_nan=mine.dtype.kind in "fc"):
        np.testing.assert_array_equal(mine, theirs, err_msg=what)    # explains the difference


# -- what is in a run ---------------------------------------------------------------------

def test_train_ids_and_sources(pair):
    ours, theirs = pair.ours, pair.theirs
    assert ours.train_ids == ints(theirs.train_ids)
    assert all(type(t) is int for t in ours.train_ids)
    assert ours.train_ids == sorted(ours.train_ids)
    np.testing.assert_array_equal(ours.train_ids_array, np.asarray(theirs.train_ids, np.uint64))
    assert set(ours.all_sources) == set(theirs.all_sources)
    assert set(ours.instrument_sources) == set(theirs.instrument_sources)
    assert set(ours.control_sources) == set(theirs.control_sources)
    assert ours.legacy_sources == dict(theirs.legacy_sources)
    with legacy_quiet():
        for src in theirs.all_sources:
            assert ours.keys_for_source(src) == set(theirs.keys_for_source(src)), src


def test_counts_per_source_and_group(pair):
    """Entries per train of every (source, index group), through a key of that group."""
    ours, theirs = pair.ours, pair.theirs
    tids = ours.train_ids_array
    with legacy_quiet():
        for src, keys in sorted(pair.keys.items()):
            f = ours.files_for_source(src)[0]
            by_group = {f.key_group(src, k): k for k in sorted(keys, reverse=True)}
            assert set(by_group) <= set(ours.index_groups(src))
            for group, key in sorted(by_group.items()):
                expected = theirs[src, key].data_counts(labelled=True)
                expected = expected.reindex(ints(tids), fill_value=0).to_numpy()
                got = ours.source_table(src, group).counts_for(tids)
                np.testing.assert_array_equal(got, expected, err_msg=f"{src} {group}")
                np.testing.assert_array_equal(ours.key_table(src, key).counts_for(tids), got)


def test_key_info_matches_dataset(pair):
    ours, theirs = pair.ours, pair.theirs
    with legacy_quiet():
        for src, keys in sorted(pair.keys.items()):
            for key in sorted(keys):
                kd = theirs[src, key]
                assert ours.key_info(src, key) == (tuple(kd.entry_shape), kd.dtype), (src, key)


def test_run_metadata(pair):
    ours, theirs = pair.ours, pair.theirs
    assert ours.run_metadata() == theirs.run_metadata()


def test_opening_writes_nothing(pair):
    # read a little through detstack too: still nothing may appear in the folder (other
    # tests sharing the mock run may open it with EXtra-data, which writes its map cache)
    pair.small[0].train_from_index(0)
    oracle_cache = {"karabo_data_map.json"}
    assert set(os.listdir(pair.folder)) - oracle_cache == set(pair.before) - oracle_cache


# -- train selections -----------------------------------------------------------------------

def selections(tids: list[int]):
    import extra_data as ed
    first, last, n = tids[0], tids[-1], len(tids)
    mask = np.zeros(n, bool)
    mask[::3] = True
    both = [
        np.s_[:], np.s_[2:7], np.s_[::7], np.s_[-3:], np.s_[1:-1:2], np.s_[n:], np.s_[::-1],
        0, 3, -1, np.int64(2), [0, n - 1, 2], np.array([4, 1]), mask,
    ]
    for sel in both:
        yield sel, sel
    wrapped = [
        (np.s_[2:6],), ([4, 1],), (3,),
    ]
    for (v,) in wrapped:
        yield by_index[v], ed.by_index[v]
    ids = [
        np.s_[first + 3:first + 9], np.s_[first - 100:first + 5],
        np.s_[first + 5:last + 100], np.s_[:first + 4], np.s_[first + 5:],
        np.s_[first + 2:first + 20:3], np.s_[first - 5:], np.s_[:last + 5],
        np.s_[first:last], np.s_[last:], np.s_[:],
        [first + 1, first + 3, last + 50], first + 2, np.array([last, first]),
    ]
    for v in ids:
        yield by_id[v], ed.by_id[v]


def test_select_trains(pair):
    ours, theirs = pair.ours, pair.theirs
    for mine, ref in selections(ours.train_ids):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)    # empty results: tested below
            got = ours.select_trains(mine)
            expected = sorted(ints(theirs.select_trains(ref).train_ids))
        assert got.train_ids == expected, mine
    # select_trains keeps the source list, and the counts follow the selection
    sel = ours.select_trains(np.s_[1::2])
    ref = theirs.select_trains(np.s_[1::2])
    assert sel.all_sources == ours.all_sources
    with legacy_quiet():
        for src, keys in sorted(pair.keys.items()):
            key = sorted(keys)[0]
            expected = ref[src, key].data_counts(labelled=True)
            expected = expected.reindex(sel.train_ids, fill_value=0).to_numpy()
            np.testing.assert_array_equal(sel.key_table(src, key).counts_for(sel.train_ids_array),
                                          expected, err_msg=src)


def test_select_trains_chained(pair):
    ours, theirs = pair.ours, pair.theirs
    got = ours.select_trains(np.s_[2:40]).select_trains(np.s_[::3]).select_trains(by_index[1:])
    ref = theirs.select_trains(np.s_[2:40]).select_trains(np.s_[::3]).select_trains(np.s_[1:])
    assert got.train_ids == ints(ref.train_ids)


def test_select_trains_empty_warns(pair):
    import extra_data as ed
    ours, theirs = pair.ours, pair.theirs
    first, last = ours.train_ids[0], ours.train_ids[-1]
    for v in [np.s_[last + 1:], np.s_[last + 10:last + 20], np.s_[:first - 1],
              np.s_[first - 20:first - 10], [last + 100, first - 100], last + 7]:
        with pytest.warns(UserWarning):
            got = ours.select_trains(by_id[v])
        with pytest.warns(UserWarning):
            ref = theirs.select_trains(ed.by_id[v])
        assert got.train_ids == ints(ref.train_ids) == []
        assert got.all_sources == ours.all_sources
        assert list(got.trains()) == []


def test_bool_mask_wrong_length(pair):
    ours = pair.ours
    with pytest.raises(ValueError, match="length"):
        ours.select_trains(np.ones(len(ours.train_ids) + 1, bool))


def test_by_id_negative_is_value_error(pair):
    # EXtra-data: OverflowError with numpy 2 (reference section 7.4); a ValueError is meant
    ours = pair.ours
    for v in [-1, [-5, ours.train_ids[0]], np.s_[-10:], np.s_[: -1]]:
        with pytest.raises(ValueError, match="negative"):
            ours.select_trains(by_id[v])


# -- train-wise reading -----------------------------------------------------------------

def test_trains_first_trains(pair):
    """trains(): the small keys of the first two trains, then every key of the first
    train (pixel data included, one source at a time to bound memory), equal in value,
    shape and dtype; sources without data in a train still get their metadata."""
    ours, theirs = pair.ours, pair.theirs
    mine = pair.small[0].select_trains(np.s_[:2])
    ref = pair.small[1].select_trains(np.s_[:2])
    got, expected = list(mine.trains()), list(ref.trains())
    assert [t for t, _ in got] == [int(t) for t, _ in expected] == ours.train_ids[:2]
    for (_, d_ours), (_, d_ref) in zip(got, expected, strict=True):
        assert_train_equal(d_ours, d_ref, mine)
    del got, expected
    first = ours.select_trains(np.s_[:1])
    first_ref = theirs.select_trains(np.s_[:1])
    for src, keys in sorted(pair.keys.items()):
        with legacy_quiet():
            one = first.select({src: keys})
            (t, d_ours), = one.trains()
            (t_ref, d_ref), = first_ref.select({src: keys}).trains()
        assert t == int(t_ref)
        assert_train_equal(d_ours, d_ref, one)
        del d_ours, d_ref


def test_train_from_id_and_index(pair):
    ours = pair.ours
    mine, ref = pair.small
    tid = ours.train_ids[len(ours.train_ids) // 2]
    t, d = mine.train_from_id(tid)
    t_ref, d_ref = ref.train_from_id(tid)
    assert t == int(t_ref) == tid
    assert_train_equal(d, d_ref, mine)
    t, d = mine.train_from_index(-1, keep_dims=True)
    t_ref, d_ref = ref.train_from_index(-1, keep_dims=True)
    assert t == int(t_ref) == ours.train_ids[-1]
    assert_train_equal(d, d_ref, mine)


def test_flat_keys_and_keep_dims(pair):
    mine, ref = pair.small
    redundant = redundant_legacy(mine)
    (_, flat), = mine.select_trains(np.s_[:1]).trains(flat_keys=True, keep_dims=True)
    (_, flat_ref), = ref.select_trains(np.s_[:1]).trains(flat_keys=True, keep_dims=True)
    flat_ref = {k: v for k, v in flat_ref.items() if k[0] not in redundant}
    assert set(flat) == set(flat_ref)
    for k, v in flat_ref.items():
        if k[1] == "metadata":
            assert flat[k]["source"] == v["source"] == k[0]
        else:
            assert_same_array(flat[k], v, str(k))
    # keep_dims keeps the entry axis where a train has one entry; by default it goes
    one = [(s, k) for (s, k), v in flat.items()
           if k != "metadata" and s in mine.instrument_sources and np.ndim(v) >= 1
           and np.shape(v)[0] == 1]
    _, squeezed = mine.train_from_index(0, flat_keys=True)
    for k in one:
        assert np.shape(squeezed[k]) == np.shape(flat[k])[1:]


def test_unknown_train_id_and_index(pair):
    ours = pair.ours
    tids = ours.train_ids
    for tid in (tids[-1] + 1, tids[0] - 1, 0):
        with pytest.raises(detstack.TrainIDError, match=str(tid)) as info:
            ours.train_from_id(tid)
        assert isinstance(info.value, KeyError)
    with pytest.raises(IndexError, match="out of range"):
        ours.train_from_index(len(tids))
    with pytest.raises(detstack.TrainIDError):
        ours.train_from_index(-len(tids) - 1)
    with pytest.raises(detstack.TrainIDError):
        ours.select_trains(np.s_[:1]).train_from_id(tids[-1])


# -- require_all and missing data ------------------------------------------------------

def test_require_all_gap_run(mock_lpd_mini_gap_run, ed_open):
    ours = detstack.RunDirectory(mock_lpd_mini_gap_run)
    theirs = ed_open(mock_lpd_mini_gap_run)
    got = [t for t, _ in ours.trains(require_all=True)]
    expected = [int(t) for t, _ in theirs.trains(require_all=True)]
    assert got == expected == [10000, 10001, 10003, 10004]
    # without require_all the train is there, with module 1 giving only metadata
    d = dict(ours.trains())[10002]
    assert set(d["FXE_DET_LPD1M-1/DET/1CH0:xtdf"]) == {"metadata"}
    assert d["FXE_DET_LPD1M-1/DET/0CH0:xtdf"]["image.data"].shape == (10, 1, 256, 256)
    # the data of module 1 follows the index, not image/trainId
    frame8 = [dict(ours.trains())[t]["FXE_DET_LPD1M-1/DET/1CH0:xtdf"]["image.data"][8, 0, 0, 0]
              for t in (10000, 10001, 10003, 10004)]
    assert frame8 == [1, 2, 3, 4]


def test_require_all_reduced_run(mock_data, ed_open):
    path = mock_data("reduced_spb_proc", "1.0")
    ours = detstack.RunDirectory(path)
    theirs = ed_open(path)
    sel = [("*/DET/*", "image.pulseId"), ("SA1_XTD2_XGM/DOOCS/MAIN", "pulseEnergy.*")]
    got = [t for t, _ in ours.select(sel).trains(require_all=True)]
    expected = [int(t) for t, _ in theirs.select(sel).trains(require_all=True)]
    assert got == expected
    assert len(got) == 59
    assert not {10008, 10012, 10014, 10019, 10041} & set(got)


def test_require_all_whole_run(mock_data, ed_open):
    # CAMERA_NODATA has 0 entries in every train: no train has all sources
    path = mock_data("fxe_raw", "1.0")
    ours = detstack.RunDirectory(path).select_trains(np.s_[:3])
    theirs = ed_open(path).select_trains(np.s_[:3])
    assert list(ours.trains(require_all=True)) == []
    assert list(theirs.trains(require_all=True)) == []
    ours = ours.deselect("*CAMERA_NODATA*").select(
        [("*/DET/*", "header.*"), ("*XGM*", "*"), ("*CAM*", "*")])
    assert [t for t, _ in ours.trains(require_all=True)] == ours.train_ids


# -- names and keys -----------------------------------------------------------------------

def test_dotted_hdf5_names(mock_jungfrau_run):
    """JUNGFRAU control groups are named like 'performanceStatistics.enable': the key keeps
    the dot, and reading must find the right dataset (EXtra-data replaces every '.' by '/'
    and raises KeyError reading such a train)."""
    ours = detstack.RunDirectory(mock_jungfrau_run)
    src = "SPB_IRDA_JF4M/DET/CONTROL"
    key = "performanceStatistics.processingLatency.value"
    assert key in ours.keys_for_source(src)
    f = ours.files_for_source(src)[0]
    path = f.dataset_path(src, key)
    assert path == f"CONTROL/{src}/performanceStatistics.processingLatency/value"
    _, d = ours.select(src, "performanceStatistics*").train_from_index(3)
    with h5py.File(f.path) as h5:
        assert d[src][key] == h5[path][3]
    assert f.key_group(src, key) == ""


def test_legacy_names(mock_modern_spb_proc_run, ed_open):
    ours = detstack.RunDirectory(mock_modern_spb_proc_run)
    legacy, new = "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf", "SPB_DET_AGIPD1M-1/CORR/3CH0:output"
    assert ours.legacy_sources[legacy] == new
    with pytest.warns(DeprecationWarning, match=new):
        ours.keys_for_source(legacy)
    # selecting only the old names still gives their data (under the old names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old_only = ours.select("*/DET/*", "image.pulseId")
        _, d = old_only.train_from_index(0)
        assert set(d) == set(ours.legacy_sources)
        np.testing.assert_array_equal(d[legacy]["image.pulseId"], np.arange(32))
        # both names selected: the data comes once, under the new name
        _, d = ours.select("*", "image.pulseId").train_from_index(0)
        assert set(d) == set(ours.legacy_sources.values())


def test_source_and_key_errors(mock_spb_raw_run_fmt1):
    ours = detstack.RunDirectory(mock_spb_raw_run_fmt1)
    with pytest.raises(detstack.SourceNameError, match="SPB_DET_AGIPD1M-1/DET/99CH0"):
        ours.source_table("SPB_DET_AGIPD1M-1/DET/99CH0:xtdf", "image")
    with pytest.raises(detstack.PropertyNameError, match="image.nonsense"):
        ours.key_table("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "image.nonsense")


# -- suspect train IDs --------------------------------------------------------------------

AGIPD7 = "SPB_DET_AGIPD1M-1/DET/7CH0:xtdf"
AGIPD0 = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"

SUSPECT = [
    # fixture, source, bad position, bad ID, number of trains (all, trusted)
    ("mock_agipd_file_tid_very_high", AGIPD7, 10, 10400, 250, 249),
    ("mock_agipd_file_tid_low", AGIPD7, 20, 9000, 250, 249),
    ("mock_agipd_file_flag0", AGIPD0, 30, 10030, 486, 485),
]


@pytest.mark.parametrize("inc", [True, False], ids=["inc", "exc"])
@pytest.mark.parametrize("fixture, src, pos, bad, n_all, n_valid", SUSPECT,
                         ids=[s[0].removeprefix("mock_agipd_file_") for s in SUSPECT])
def test_suspect_trains(request, ed_open, inc, fixture, src, pos, bad, n_all, n_valid):
    path = request.getfixturevalue(fixture)
    ours = detstack.H5File(path, inc_suspect_trains=inc)
    theirs = ed_open(path, inc_suspect_trains=inc)
    assert ours.train_ids == sorted(ints(theirs.train_ids))
    assert len(ours.train_ids) == (n_all if inc else n_valid)
    assert (bad in ours.train_ids) == inc
    assert not ours.files[0].validity[pos]
    assert ours.files[0].validity.sum() == n_valid
    # counts agree with EXtra-data's (its index is in file order: compare by train ID)
    expected = theirs[src, "image.data"].data_counts(labelled=True)
    got = ours.key_table(src, "image.data").counts_for(ours.train_ids_array)
    assert dict(zip(ours.train_ids, got.tolist(), strict=True)) == {
        int(k): int(v) for k, v in expected.items()}
    # iterating trains skips the suspect one when excluded
    tids = [t for t, _ in ours.select(src, "image.pulseId").trains()]
    assert tids == ours.train_ids
    if inc:
        _, d = ours.select(src, "image.pulseId").train_from_id(bad)
        assert d[src]["image.pulseId"].shape[0] == 64
    else:
        with pytest.raises(detstack.TrainIDError):
            ours.train_from_id(bad)


def test_suspect_out_of_order_sorted(mock_agipd_file_tid_very_high, mock_agipd_file_tid_low):
    """Out-of-order IDs kept with inc_suspect_trains=True: the index is sorted by train
    ID, each ID still pointing at its own rows (EXtra-data keeps file order here, and its
    detector layer then fails: reference section 7.1)."""
    for path, pos, bad in [(mock_agipd_file_tid_very_high, 10, 10400),
                           (mock_agipd_file_tid_low, 20, 9000)]:
        ours = detstack.H5File(path, inc_suspect_trains=True)
        table = ours.source_table(AGIPD7, "image")
        assert np.all(np.diff(table.train_ids.astype(np.int64)) > 0)
        row = int(np.flatnonzero(table.train_ids == bad)[0])
        assert (int(table.first[row]), int(table.count[row])) == (pos * 64, 64)
        with h5py.File(path) as f:
            cell = f[f"INSTRUMENT/{AGIPD7}/image/cellId"][pos * 64:(pos + 1) * 64]
        _, d = ours.select(AGIPD7, "image.cellId").train_from_id(bad)
        np.testing.assert_array_equal(d[AGIPD7]["image.cellId"], cell)


def test_suspect_duplicate(mock_agipd_file_tid_high, ed_open):
    with pytest.raises(detstack.DuplicateTrainError, match="10100") as info:
        detstack.H5File(mock_agipd_file_tid_high, inc_suspect_trains=True)
    assert isinstance(info.value, ValueError)
    assert AGIPD0 in str(info.value)
    assert "inc_suspect_trains=False" in str(info.value)
    with pytest.raises(ValueError):
        ed_open(mock_agipd_file_tid_high, inc_suspect_trains=True)
    ours = detstack.H5File(mock_agipd_file_tid_high, inc_suspect_trains=False)
    theirs = ed_open(mock_agipd_file_tid_high, inc_suspect_trains=False)
    assert ours.train_ids == ints(theirs.train_ids)
    assert len(ours.train_ids) == 485
    assert ours.train_ids[9:11] == [10009, 10011]
    assert 10100 in ours.train_ids
    table = ours.source_table(AGIPD0, "image")
    row = ours.train_ids.index(10100)
    assert int(table.first[row]) == 100 * 64   # the genuine 10100, not position 10


def test_duplicate_across_files(mock_lpd_mini_gap_run, writable_copy):
    """Two files holding the same source and train: refused, naming source and train."""
    run = writable_copy(mock_lpd_mini_gap_run)
    import shutil
    shutil.copy(os.path.join(run, "RAW-R0450-LPD00-S00000.h5"),
                os.path.join(run, "RAW-R0450-LPD00-S00001.h5"))
    with pytest.raises(detstack.DuplicateTrainError) as info:
        detstack.RunDirectory(run)
    msg = str(info.value)
    assert "FXE_DET_LPD1M-1/DET/0CH0:xtdf" in msg and "10000" in msg
    assert "RAW-R0450-LPD00-S00000.h5" in msg and "RAW-R0450-LPD00-S00001.h5" in msg


def test_format_1_1_inverted_flag(mock_data, writable_copy, ed_open):
    """Format 1.1 stored INDEX/flag inverted (0 = good)."""
    path = writable_copy(mock_data("agipd_file", "1.0"))
    with h5py.File(path, "r+") as f:
        flag = f["INDEX/flag"][:]
        flag[30] = 0
        f["INDEX/flag"][:] = 1 - flag
        del f["METADATA/dataFormatVersion"]
        f["METADATA/dataFormatVersion"] = [b"1.1"]
    ours = detstack.H5File(path, inc_suspect_trains=False)
    assert ours.files[0].format_version == "1.1"
    assert len(ours.train_ids) == 485 and 10030 not in ours.train_ids
    with pytest.warns(UserWarning, match="1.1"):
        theirs = ed_open(path, inc_suspect_trains=False)
    assert ours.train_ids == ints(theirs.train_ids)
    assert len(detstack.H5File(path, inc_suspect_trains=True).train_ids) == 486


def test_flag_without_guessing(mock_data, writable_copy, ed_open):
    """Format >= 1.0 trusts INDEX/flag alone: an out-of-order ID flagged good is kept."""
    path = writable_copy(mock_data("agipd_file", "1.2"))
    with h5py.File(path, "r+") as f:
        f["INDEX/trainId"][10] = 20000
    ours = detstack.H5File(path, inc_suspect_trains=False)
    theirs = ed_open(path, inc_suspect_trains=False)
    assert ours.train_ids == ints(theirs.train_ids)
    assert 20000 in ours.train_ids and ours.train_ids[-1] == 20000


def test_old_index_first_last_status(mock_agipd_example_file, writable_copy, ed_open):
    """make_agipd_example_file writes first/last/status instead of first/count."""
    path = writable_copy(mock_agipd_example_file)
    grp = f"INDEX/{AGIPD7}/image"
    with h5py.File(path, "r+") as f:
        assert "count" not in f[grp] and {"last", "status"} <= set(f[grp])
        f[grp + "/status"][5] = 0      # train 10005: no data
    ours = detstack.H5File(path)
    theirs = ed_open(path)
    table = ours.source_table(AGIPD7, "image")
    assert table.count[5] == 0 and set(np.delete(table.count, 5).tolist()) == {64}
    np.testing.assert_array_equal(table.first, np.arange(250) * 64)
    expected = theirs[AGIPD7, "image.data"].data_counts(labelled=False)
    np.testing.assert_array_equal(table.counts_for(ours.train_ids_array), expected)
    _, d = ours.train_from_id(10005)
    assert "image.data" not in d[AGIPD7] and "header.pulseCount" in d[AGIPD7]
