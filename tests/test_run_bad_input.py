"""Bad input to the run-reading layer: each case gives a typed error (or a warning) that
names the file and says what is wrong."""

from __future__ import annotations

import os
import shutil
import warnings

import h5py
import numpy as np
import pytest

import detstack
from detstack.errors import DetstackError

AGIPD0 = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
LPD0 = "FXE_DET_LPD1M-1/DET/0CH0:xtdf"


@pytest.fixture
def agipd_copy(mock_data, writable_copy) -> str:
    """A private copy of one raw AGIPD module file (format 1.2, 486 trains x 64 frames)."""
    return writable_copy(mock_data("agipd_file", "1.2"))


@pytest.fixture
def gap_run_copy(mock_lpd_mini_gap_run, writable_copy) -> str:
    """A private copy of a two-file run (LPD modules 0 and 1, 5 trains)."""
    return writable_copy(mock_lpd_mini_gap_run)


def assert_file_error(path: str, *fragments: str) -> detstack.FileFormatError:
    with pytest.raises(detstack.FileFormatError) as info:
        detstack.H5File(path)
    err = info.value
    msg = str(err)
    assert str(path) in msg and err.path == str(path)
    for fragment in fragments:
        assert fragment in msg, msg
    assert isinstance(err, DetstackError) and isinstance(err, OSError)
    return err


# -- files that are not (whole) HDF5 files ------------------------------------------------

def test_text_file(tmp_path):
    path = tmp_path / "RAW-R0001-DA01-S00000.h5"
    path.write_text("This is not HDF5, it is a text file that only has the right name.\n" * 20)
    assert_file_error(str(path), "is not an HDF5 file", "This is not")


def test_short_text_file(tmp_path):
    path = tmp_path / "RAW-R0001-DA01-S00000.h5"
    path.write_bytes(b"hello")
    assert_file_error(str(path), "is not an HDF5 file", "5 bytes")


def test_empty_file(tmp_path):
    path = tmp_path / "RAW-R0001-DA01-S00000.h5"
    path.write_bytes(b"")
    assert_file_error(str(path), "is empty", "0 bytes")


def test_truncated_file(agipd_copy):
    size = os.path.getsize(agipd_copy)
    with open(agipd_copy, "r+b") as fh:
        fh.truncate(size // 2)
    assert_file_error(agipd_copy, "truncated")


def test_missing_file(tmp_path):
    assert_file_error(str(tmp_path / "nowhere.h5"), "does not exist")


def test_h5file_on_a_folder(tmp_path):
    assert_file_error(str(tmp_path), "is not a file", "RunDirectory")


# -- HDF5 files that are not usable EuXFEL files -------------------------------------------

def test_no_index_train_id(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        del f["INDEX/trainId"]
    assert_file_error(agipd_copy, "INDEX/trainId")


def test_plain_hdf5_file(tmp_path):
    path = str(tmp_path / "data.h5")
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    assert_file_error(path, "INDEX/trainId")


def test_no_metadata(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        del f["METADATA"]
    assert_file_error(agipd_copy, "METADATA")


def test_no_source_list(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        del f["METADATA/dataSources"]
    assert_file_error(agipd_copy, "dataSourceId")


def test_unknown_category(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        f["METADATA/dataSources/dataSourceId"][0] = b"WEIRD/SOMETHING/ELSE"
    assert_file_error(agipd_copy, "WEIRD")


def test_listed_source_without_data(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        del f[f"INSTRUMENT/{AGIPD0}"]
    assert_file_error(agipd_copy, AGIPD0, "listed in METADATA", f"INSTRUMENT/{AGIPD0}")


def test_index_past_dataset_end(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        f[f"INDEX/{AGIPD0}/image/count"][485] = 65     # one frame more than stored
    err = assert_file_error(agipd_copy, f"INDEX/{AGIPD0}/image", "past the end", "image.",
                            "10485")
    assert "31105" in str(err) and "31104" in str(err)


def test_control_index_past_dataset_end(mock_data, writable_copy):
    run = writable_copy(mock_data("spb_raw", "1.0"))
    path = os.path.join(run, "RAW-R0238-DA01-S00001.h5")
    with h5py.File(path, "r+") as f:
        f["INDEX/SA1_XTD2_XGM/DOOCS/MAIN/first"][5] = 40
    assert_file_error(path, "INDEX/SA1_XTD2_XGM/DOOCS/MAIN", "past the end", "10037")


def test_index_shorter_than_train_ids(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        grp = f[f"INDEX/{AGIPD0}/header"]
        count = grp["count"][:400]
        del grp["count"]
        grp["count"] = count
    assert_file_error(agipd_copy, f"INDEX/{AGIPD0}/header/count", "400", "486")


def test_no_count_and_no_last(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        del f[f"INDEX/{AGIPD0}/trailer/count"]
    assert_file_error(agipd_copy, f"INDEX/{AGIPD0}/trailer", "count")


# -- zeros in INDEX/trainId -------------------------------------------------------------------

def test_zero_padding_is_normal(mock_data):
    # 486 trains in a trainId dataset of 512 entries: the zeros are padding, no warning
    path = mock_data("agipd_file", "1.2")
    with h5py.File(path) as f:
        assert f["INDEX/trainId"].shape == (512,) and f["INDEX/trainId"][-1] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = detstack.H5File(path)
    assert data.train_ids == list(range(10000, 10486))


def test_zero_in_the_middle(agipd_copy):
    """A zero train ID before the end is skipped with a warning. The index entries stay
    aligned by position, so the trains after it keep their own rows (EXtra-data shifts
    them by one: it truncates the index to the number of non-zero IDs)."""
    with h5py.File(agipd_copy, "r+") as f:
        f["INDEX/trainId"][5] = 0
        f[f"INSTRUMENT/{AGIPD0}/image/cellId"][6 * 64] = 999   # first frame of train 10006
    with pytest.warns(UserWarning, match="zero") as rec:
        data = detstack.H5File(agipd_copy)
    assert any(agipd_copy in str(w.message) for w in rec)
    assert 10005 not in data.train_ids and len(data.train_ids) == 485
    table = data.source_table(AGIPD0, "image")
    row = data.train_ids.index(10006)
    assert (int(table.first[row]), int(table.count[row])) == (6 * 64, 64)
    _, d = data.select(AGIPD0, "image.cellId").train_from_id(10006)
    assert d[AGIPD0]["image.cellId"][0, 0] == 999


def test_all_zero_train_ids(agipd_copy):
    with h5py.File(agipd_copy, "r+") as f:
        f["INDEX/trainId"][:] = 0
    data = detstack.H5File(agipd_copy)
    assert data.train_ids == []
    assert list(data.trains()) == []


# -- run folders ----------------------------------------------------------------------------

def test_folder_with_one_bad_file(gap_run_copy):
    bad = os.path.join(gap_run_copy, "RAW-R0450-LPD01-S00000.h5")
    with open(bad, "r+b") as fh:
        fh.truncate(os.path.getsize(bad) // 2)
    with pytest.warns(UserWarning, match="Skipping") as rec:
        run = detstack.RunDirectory(gap_run_copy)
    assert any(bad in str(w.message) and "truncated" in str(w.message) for w in rec)
    assert [f.path.name for f in run.files] == ["RAW-R0450-LPD00-S00000.h5"]
    assert run.all_sources == {LPD0}
    assert run.train_ids == list(range(10000, 10005))
    _, d = run.train_from_id(10002)
    assert d[LPD0]["image.data"].shape == (10, 1, 256, 256)


def test_folder_with_text_file_among_good(gap_run_copy):
    bad = os.path.join(gap_run_copy, "RAW-R0450-DA01-S00000.h5")
    with open(bad, "w") as fh:
        fh.write("not hdf5\n")
    with pytest.warns(UserWarning, match="RAW-R0450-DA01-S00000.h5"):
        run = detstack.RunDirectory(gap_run_copy)
    assert len(run.files) == 2


def test_folder_all_bad(tmp_path):
    (tmp_path / "RAW-R0001-AGIPD00-S00000.h5").write_bytes(b"")
    (tmp_path / "RAW-R0001-AGIPD01-S00000.h5").write_text("text")
    with pytest.warns(UserWarning), pytest.raises(detstack.NoUsableFilesError) as info:
        detstack.RunDirectory(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    assert "AGIPD00-S00000.h5: is empty" in msg and "AGIPD01-S00000.h5: is not an HDF5" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_folder_without_h5_files(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    (tmp_path / "overview.h5").write_bytes(b"")    # not a data file, never opened
    with pytest.raises(detstack.NoUsableFilesError, match="No .h5 files") as info:
        detstack.RunDirectory(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_include_matching_nothing(mock_lpd_mini_gap_run):
    with pytest.raises(detstack.NoUsableFilesError, match=r"\*DSSC\*"):
        detstack.RunDirectory(mock_lpd_mini_gap_run, include="*DSSC*")


def test_include_selects_files(mock_lpd_mini_gap_run):
    run = detstack.RunDirectory(mock_lpd_mini_gap_run, include="*LPD01*")
    assert run.all_sources == {"FXE_DET_LPD1M-1/DET/1CH0:xtdf"}
    assert run.train_ids == [10000, 10001, 10003, 10004]


def test_run_directory_on_missing_folder_or_file(tmp_path, mock_data):
    with pytest.raises(detstack.NoUsableFilesError, match="not a folder"):
        detstack.RunDirectory(tmp_path / "nowhere")
    with pytest.raises(detstack.NoUsableFilesError, match="H5File"):
        detstack.RunDirectory(mock_data("agipd_file", "1.2"))


# -- names ----------------------------------------------------------------------------------

def test_wrong_source_name(mock_lpd_mini_gap_run):
    run = detstack.RunDirectory(mock_lpd_mini_gap_run)
    wrong = "FXE_DET_LPD1M-1/DET/7CH0:xtdf"
    for call in (lambda: run.keys_for_source(wrong), lambda: run.source_table(wrong, "image"),
                 lambda: run.files_for_source(wrong), lambda: run.key_info(wrong, "image.data"),
                 lambda: run.select(wrong)):
        with pytest.raises(detstack.SourceNameError) as info:
            call()
        assert isinstance(info.value, KeyError)
        assert "7CH0" in str(info.value)
    # the message points at near names
    with pytest.raises(detstack.SourceNameError, match="0CH0"):
        run.keys_for_source(wrong)


def test_wrong_key(mock_lpd_mini_gap_run):
    run = detstack.RunDirectory(mock_lpd_mini_gap_run)
    for call in (lambda: run.key_table(LPD0, "image.dta"), lambda: run.key_info(LPD0, "image.dta"),
                 lambda: run.files[0].dataset_path(LPD0, "image.dta")):
        with pytest.raises(detstack.PropertyNameError) as info:
            call()
        assert isinstance(info.value, KeyError)
        assert "image.dta" in str(info.value) and LPD0 in str(info.value)
    with pytest.raises(detstack.PropertyNameError, match="image.data"):  # lists real keys
        run.key_table(LPD0, "image.dta")


def test_errors_print_cleanly():
    # KeyError subclasses keep the message readable (no quotes added by KeyError.__str__)
    err = detstack.SourceNameError("Source 'X' is not in this data")
    assert str(err) == "Source 'X' is not in this data"


# -- opening reads no pixel data -----------------------------------------------------------------

def test_opening_reads_no_pixel_data(agipd_copy, tmp_path):
    """Replace image.data with an external dataset whose file does not exist: opening,
    indexing and reading other keys still work, because none of them reads pixels."""
    name = f"INSTRUMENT/{AGIPD0}/image/data"
    with h5py.File(agipd_copy, "r+") as f:
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype,
                         external=[(str(tmp_path / "gone.raw"), 0, h5py.h5f.UNLIMITED)])
    data = detstack.H5File(agipd_copy)
    assert data.key_info(AGIPD0, "image.data") == (shape[1:], dtype)
    assert data.key_table(AGIPD0, "image.data").count.sum() == shape[0]
    _, d = data.select(AGIPD0, "image.pulseId").train_from_index(3)
    assert d[AGIPD0]["image.pulseId"].shape == (64, 1)
    # reading the pixels themselves does touch the missing file
    with pytest.raises(OSError):
        data.train_from_index(3)


def test_opening_a_folder_writes_nothing(gap_run_copy):
    before = sorted(os.listdir(gap_run_copy))
    run = detstack.RunDirectory(gap_run_copy)
    list(run.trains())
    run.select_trains(detstack.by_id[10001:10003]).run_metadata()
    assert sorted(os.listdir(gap_run_copy)) == before


def test_read_only_folder(gap_run_copy):
    os.chmod(gap_run_copy, 0o555)
    try:
        run = detstack.RunDirectory(gap_run_copy)
        assert len(run.files) == 2
    finally:
        os.chmod(gap_run_copy, 0o755)
    shutil.rmtree(gap_run_copy)
