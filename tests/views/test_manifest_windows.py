"""A manifest's sidecar is written a window of trains at a time, in a worker process:
its coordinates equal the view's (``ViewPlan.coordinates``) for windows of any size,
modules disagreeing on pulse IDs are refused as the reader refuses them (naming module,
file and train) with nothing left, and the pieces spooled between tasks are gone from
the finished manifest."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from test_manifest import RUNS, open_det, write

import detstack
from detstack import synth
from detstack.convert import to_manifest
from detstack.convert.manifest import copied
from detstack.convert.plan import ViewPlan
from detstack.errors import InconsistentModulesError


@pytest.mark.parametrize("name", sorted(RUNS))
def test_coordinates_by_windows_equal_the_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                name: str) -> None:
    run = write(tmp_path / "run", name)
    det = open_det(run, name)
    expected = {k: c.values for k, c in ViewPlan(det, squeeze=True).coordinates().items()}
    assert {"count.image", "train", "module"} <= expected.keys() or name.startswith("jungfrau")
    for window, workers in ((1, "2"), (2, "1"), (10_000, "2")):
        monkeypatch.setattr(copied.train_blocks, "__defaults__", (window,))
        monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", workers)
        out = to_manifest(det, tmp_path / f"w{window}.parq")
        assert not (out / ".pieces").exists()
        ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                             storage_options={"fo": str(out), "remote_protocol": "file"})
        for key, values in expected.items():
            got = ds[key].values
            assert got.dtype == values.dtype and got.shape == values.shape, key
            np.testing.assert_array_equal(got, values, err_msg=f"{key}, window {window}")


@pytest.mark.parametrize("suffix", [".parq", ".json"])
def test_sidecar_arrays_lie_one_after_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              suffix: str) -> None:
    """Written a window (here: a train) at a time, the arrays' chunks would interleave
    through the whole file, and reading one count array would read all of it. Each
    array's chunks lie in a span of their own; no scratch file is left beside it."""
    from detstack.convert.chunk_index import chunk_table
    from detstack.convert.manifest.sidecar import sidecar_path

    run = write(tmp_path / "run", "agipd-raw-chunked")
    det = open_det(run, "agipd-raw-chunked")
    monkeypatch.setattr(copied.train_blocks, "__defaults__", (1,))
    out = to_manifest(det, tmp_path / f"v{suffix}")
    side = sidecar_path(out, "parquet" if suffix == ".parq" else "json")
    spans = {}
    with h5py.File(side, "r") as f:
        for name, ds in f.items():
            if isinstance(ds, h5py.Dataset) and ds.chunks and ds.id.get_storage_size():
                table = chunk_table(ds)
                spans[name] = (int(table.addr.min()), int((table.addr + table.size).max()))
    assert {"train", "count.image", "image.pulseId"} <= spans.keys()
    ordered = sorted(spans.values())
    assert all(a[1] <= b[0] for a, b in zip(ordered[:-1], ordered[1:], strict=True)), spans
    assert sorted(p.name for p in side.parent.iterdir() if p.name.startswith(".")) == \
        ([".zmetadata"] if suffix == ".parq" else [])
    reread = detstack.AGIPD1M(detstack.open_view(out), raw=True)
    np.testing.assert_array_equal(reread.train_ids, det.train_ids)
    np.testing.assert_array_equal(reread.get_array("image.pulseId"),
                                  det.get_array("image.pulseId"))


@pytest.mark.parametrize("suffix", [".parq", ".json"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_pulse_id_disagreement_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          suffix: str, workers: str) -> None:
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", raw=True, n_trains=5, frames_per_train=2,
                    modules=[0, 1, 2], with_control=False)
    bad = "RAW-R0001-AGIPD01-S00000.h5"
    src = "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf"
    with h5py.File(run / bad, "r+") as f:
        f[f"INSTRUMENT/{src}/image/pulseId"][7] = 77    # train 10003, frame 1
    monkeypatch.setattr(copied.train_blocks, "__defaults__", (2,))   # its window: the second
    monkeypatch.setenv("DETSTACK_MANIFEST_WORKERS", workers)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    out = tmp_path / f"v{suffix}"
    with pytest.raises(InconsistentModulesError) as err:
        to_manifest(det, out)
    msg = str(err.value)
    assert "train 10003" in msg and bad in msg and "module 1" in msg and "has 77" in msg
    assert not [p.name for p in tmp_path.iterdir() if p.name != "run"]   # nothing left
