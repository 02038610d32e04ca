"""Modules that disagree: a key's entry shape or dtype, a train's frame count, a train's
pulse IDs. Every reader and writer using the bad key raises a typed error naming file,
source and key (or module, dataset and train); other keys stay readable; `detstack
validate` reports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import detstack
from detstack import convert, synth
from detstack.cli import main as cli_main
from detstack.errors import InconsistentModulesError
from detstack.run import consistency

SRC = "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf"
BAD_FILE = "RAW-R0001-AGIPD01-S00000.h5"


def make_run(folder: Path) -> Path:
    synth.write_run(folder, "AGIPD1M", raw=True, n_trains=3, frames_per_train=2,
                    modules=[0, 1, 2], with_control=False)
    return folder


def replace_data(run: Path, entry: tuple[int, ...], dtype: Any) -> None:
    """Module 1 stores image.data with another entry shape or dtype."""
    with h5py.File(run / BAD_FILE, "r+") as f:
        path = f"INSTRUMENT/{SRC}/image/data"
        n = f[path].shape[0]
        del f[path]
        f.create_dataset(path, data=np.ones((n,) + entry, dtype))


def det_of(run: Path) -> Any:
    return detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)


@pytest.mark.parametrize("entry,dtype", [((2, 512, 64), np.uint16),
                                         ((2, 512, 128), np.float32),
                                         ((2, 512, 128), np.uint32)])
def test_key_with_other_shape_or_dtype_is_refused_on_use(tmp_path, entry, dtype):
    run = make_run(tmp_path / "run")
    replace_data(run, entry, dtype)
    det = det_of(run)                      # constructing is fine: the key is not used yet
    uses = [lambda: det.get_array("image.data"),
            lambda: det.get_dask_array("image.data"),
            lambda: next(iter(det.trains())),
            lambda: convert.to_vds(det, tmp_path / "v.h5"),
            lambda: convert.to_zarr(det, tmp_path / "v.zarr"),
            lambda: convert.to_manifest(det, tmp_path / "v.json")]
    for use in uses:
        with pytest.raises(InconsistentModulesError) as err:
            use()
        msg = str(err.value)
        assert BAD_FILE in msg and SRC in msg and "'image.data'" in msg
        assert "512x128" in msg   # what the other modules have
    assert not list(tmp_path.glob("v.*"))                 # nothing half-written
    pulses = det.get_array("image.pulseId")              # other keys stay readable
    assert pulses.shape == (3, 3, 2) and pulses.values.tolist() == [[[0, 1]] * 3] * 3
    convert.to_vds(det, tmp_path / "ok.h5", keys=["image.pulseId"])
    problems = consistency.check(detstack.RunDirectory(run))
    assert [p.what for p in problems] == ["key image.data"]
    assert cli_main(["validate", str(run)]) == 1


def test_frame_count_disagreement_names_module_file_dataset_train(tmp_path):
    run = make_run(tmp_path / "run")
    with h5py.File(run / BAD_FILE, "r+") as f:
        f[f"INDEX/{SRC}/image/count"][1] = 1
    with pytest.raises(InconsistentModulesError) as err:
        det_of(run)
    msg = str(err.value)
    assert "train 10001" in msg and BAD_FILE in msg and "module 1" in msg
    assert f"INDEX/{SRC}/image/count" in msg and "the other modules 2" in msg
    problems = consistency.check(detstack.RunDirectory(run))
    assert [p.what for p in problems] == ["frame counts"]


def test_pulse_id_disagreement_names_module_file_dataset_train(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    with h5py.File(run / BAD_FILE, "r+") as f:
        f[f"INSTRUMENT/{SRC}/image/pulseId"][3] = 77   # train 10001, frame 1
    det = det_of(run)
    with pytest.raises(InconsistentModulesError) as err:
        det.get_array("image.data", pulses=detstack.by_id[0:1])
    msg = str(err.value)
    assert "train 10001" in msg and BAD_FILE in msg and "module 1" in msg
    assert f"INSTRUMENT/{SRC}/image/pulseId" in msg and "has 77" in msg
    assert cli_main(["validate", str(run)]) == 1
    assert "has 77" in capsys.readouterr().out


def test_consistent_run_has_no_problems(tmp_path):
    run = make_run(tmp_path / "run")
    assert consistency.check(detstack.RunDirectory(run)) == []
    assert cli_main(["validate", str(run)]) == 0
