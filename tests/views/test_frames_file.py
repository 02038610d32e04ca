"""Frames files (``convert.write_frames``): selected frames as a new EuXFEL file that
detstack and EXtra-data both open, compared with EXtra-data's own ``write_frames``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
from h5_fixtures import assert_equal_arrays, make_run

import detstack
from detstack import by_id
from detstack.convert import write_frames


def ed_file(path: Path) -> Any:
    from extra_data import H5File
    return H5File(str(path))


@pytest.mark.parametrize("mock, pulses", [("spb_raw", [0, 5]), ("spb_proc", [0, 7])])
def test_same_as_reference(mock: str, pulses: list[int], mock_data: Any,
                           tmp_path: Path) -> None:
    """Same INDEX, same per-frame and per-train datasets as EXtra-data's file."""
    from extra_data import RunDirectory, components
    run = mock_data(mock, "1.2")
    trains = np.repeat(np.arange(10000, 10006), 2)
    pulse_ids = np.tile(pulses, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_det = components.AGIPD1M(RunDirectory(run))
        det = detstack.AGIPD1M(detstack.RunDirectory(run))
    ref_det.write_frames(str(tmp_path / "ref.h5"), trains, pulse_ids)
    det.write_frames(str(tmp_path / "ours.h5"), trains, pulse_ids)
    ours = ed_file(tmp_path / "ours.h5")
    assert ours.instrument_sources == set(det.source_to_modno)
    src0 = next(iter(det.source_to_modno))
    pids = ours.get_array(src0, "image.pulseId").values
    assert_equal_arrays(pids.reshape(-1), pulse_ids.astype(np.uint64))
    with h5py.File(tmp_path / "ours.h5", "r") as a, h5py.File(tmp_path / "ref.h5", "r") as b:
        for name in ("INDEX/trainId", "INDEX/flag", "METADATA/dataSources/dataSourceId"):
            assert_equal_arrays(a[name][()], b[name][()])
        for src in det.source_to_modno:
            for group in ("image", "header", "detector", "trailer"):
                for part in ("first", "count"):
                    path = f"INDEX/{src}/{group}/{part}"
                    assert_equal_arrays(a[path][()], b[path][()])
            for key in sorted(ours[src].keys()):
                path = f"INSTRUMENT/{src}/{key.replace('.', '/')}"
                assert_equal_arrays(a[path][()], b[path][()])
                assert a[path].chunks == b[path].chunks


def test_detstack_reads_selected_frames(tmp_path: Path) -> None:
    """The file read back gives the selected frames of the run, module gaps included."""
    det = make_run(tmp_path / "run", "agipd-raw")
    wanted_pulses = [1, 4]
    trains = np.repeat(det.train_ids, 2)
    pulses = np.tile(wanted_pulses, len(det.train_ids))
    out = write_frames(det, tmp_path / "frames.h5", trains, pulses)
    back = detstack.AGIPD1M(detstack.H5File(out), raw=True)
    assert back.train_ids == det.train_ids and back.modules == det.modules
    expected = det.get_array("image.data", pulses=by_id[wanted_pulses])
    xr.testing.assert_identical(back.get_array("image.data"), expected)
    xr.testing.assert_identical(back.get_array("header.pulseCount"),
                                det.get_array("header.pulseCount"))
    tids = np.array(det.train_ids, np.uint64)
    counts = back.data.source_table(back.modno_to_source[3], "image").counts_for(tids)
    have = det.data.source_table(det.modno_to_source[3], "image").counts_for(tids)
    assert_equal_arrays(counts, np.minimum(have, 2))
    assert counts.tolist() == [2, 0, 2, 2]  # module 3 misses train 10002 (10001 is empty)
    ed = ed_file(out)
    assert ed.train_ids == det.train_ids
    with h5py.File(out, "r") as f:
        assert f.attrs["writer"].startswith("detstack")
        assert f["METADATA/dataFormatVersion"][0].decode() == "1.0"


def test_missing_frames_ignored_and_format_05(tmp_path: Path) -> None:
    make_run(tmp_path / "run", "lpd-raw")
    det = detstack.LPD1M(detstack.RunDirectory(tmp_path / "run"), raw=True)
    out = write_frames(det, tmp_path / "f.h5", [10000, 10000, 99999], [0, 77, 0])
    back = detstack.LPD1M(detstack.H5File(out), raw=True)
    assert back.frame_counts.tolist() == [1]
    synth_dir = tmp_path / "old"
    from detstack import synth
    synth.write_run(synth_dir, "LPD1M", n_trains=2, frames_per_train=3, modules=[1],
                    format_version="0.5", with_control=False)
    old = detstack.LPD1M(detstack.RunDirectory(synth_dir), raw=True)
    out = write_frames(old, tmp_path / "old.h5", np.array([10001]), np.array([2]))
    with h5py.File(out, "r") as f:
        assert "dataSourceId" in f["METADATA"] and "INDEX/flag" not in f
    assert ed_file(out).train_ids == old.train_ids


def test_bad_arguments(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "agipd500k")
    with pytest.raises(ValueError, match="1D arrays"):
        write_frames(det, tmp_path / "x.h5", np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"don't match \(\(2,\) != \(1,\)\)"):
        write_frames(det, tmp_path / "x.h5", np.array([1, 2]), np.array([1]))
    jf = make_run(tmp_path / "jf", "jf-corr")
    with pytest.raises(TypeError, match="one row per frame"):
        write_frames(jf, tmp_path / "x.h5", np.array([10000]), np.array([0]))
    out = write_frames(det, tmp_path / "x.h5", np.array([10000]), np.array([0]))
    with pytest.raises(FileExistsError):
        write_frames(det, out, np.array([10000]), np.array([0]))
    write_frames(det, out, np.array([10000]), np.array([1]), overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
