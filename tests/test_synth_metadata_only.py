"""`synth.write_run(metadata_only=True)`: real-size chunk indexes, sparse files, no pixel bytes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import extra_data as ed
import h5py
import numpy as np
import pytest
from extra_data import components as edc

from detstack import synth

SRC = "SPB_DET_AGIPD1M-1/{}/{}CH0:{}"


def _src(m: int, raw: bool) -> str:
    return SRC.format("DET", m, "xtdf") if raw else SRC.format("CORR", m, "output")


@pytest.mark.parametrize("raw", [True, False])
def test_every_chunk_allocated_nothing_written(tmp_path: Path, raw: bool) -> None:
    files = synth.write_run(tmp_path, raw=raw, n_trains=12, frames_per_train=64,
                            trains_per_file=5, modules=[0, 3], metadata_only=True)
    keys = ["data"] if raw else ["data", "gain", "mask"]
    frame_bytes = 0
    for path in files:
        if "AGIPD" not in path.name:
            continue
        m = int(path.name.split("AGIPD")[1][:2])
        with h5py.File(path, "r") as f:
            n_trains = int((f["INDEX/trainId"][:] != 0).sum())
            for key in keys:
                ds = f[f"INSTRUMENT/{_src(m, raw)}/image/{key}"]
                assert ds.chunks == (1, *ds.shape[1:])
                assert ds.id.get_num_chunks() == ds.shape[0] >= 64 * n_trains
                assert ds.id.get_storage_size() == ds.shape[0] * ds[0].nbytes
                frame_bytes += ds.id.get_storage_size()
                assert not ds[5].any()          # never written: holes read as 0
            # the IDs are real
            tid = f[f"INSTRUMENT/{_src(m, raw)}/image/trainId"][:64 * n_trains]
            assert (np.unique(tid) == f["INDEX/trainId"][:n_trains]).all()
    used = sum(os.stat(p).st_blocks * 512 for p in files)
    assert used < frame_bytes / 20             # sparse: the chunks take no disk


def test_extra_data_opens_it(tmp_path: Path) -> None:
    synth.write_run(tmp_path, raw=True, n_trains=10, frames_per_train=16, trains_per_file=4,
                    metadata_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = ed.RunDirectory(str(tmp_path), parallelize=False)
    assert run.train_ids == list(range(10000, 10010))
    det = edc.AGIPD1M(run)
    assert det.n_modules == 16
    arr = det.get_array("image.data", pulses=np.s_[:2])
    assert arr.shape == (16, 10, 2, 2, 512, 128)
    assert not arr.values.any()
    pulses = det["image.pulseId"].ndarray()
    assert pulses.shape == (16, 160) and pulses[3, 17] == 1


def test_metadata_only_needs_plain_chunks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout='chunked'"):
        synth.write_run(tmp_path, layout="deflate", metadata_only=True)
    assert not list(tmp_path.glob("*.h5"))
