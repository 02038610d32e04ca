"""Shards of large per-frame keys written a group of pulses at a time (frame_shards):
the same bytes and checksums as whole shards through encode.shard_parts."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.convert import to_zarr
from detstack.convert.plan import ViewPlan
from detstack.convert.zarr import frame_shards
from detstack.convert.zarr.layout import plan_layouts
from detstack.convert.zarr.tasks import _Sources


def _files(store: Path) -> dict[str, bytes]:
    """Every object but the root group (its record holds the time of conversion)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p != store / "zarr.json"}


@pytest.mark.parametrize("layout", [
    {},                                                          # the default layout
    {"chunks": {"image.data": (1, 8, 2, 2, 96, 128)}},           # 2 pulses, padded rows
])
def test_grouped_shards_equal_whole_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           layout: dict) -> None:
    """Varying frames per train, a missing and an empty train, files split inside a
    shard, a partial last shard; groups of one inner chunk and of several."""
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", modules=[0, 3], n_trains=11,
                    frames_per_train=[5, 3, 5, 5, 2, 5, 4, 5, 5, 1, 5], trains_per_file=4,
                    missing_trains={3: [10002, 10009]}, empty_trains={0: [10004]},
                    with_control=False)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    lay = {lay.key: lay for lay in plan_layouts(ViewPlan(det, None, squeeze=True), **layout)}
    assert frame_shards.applies(lay["image.data"])
    frame_bytes = 2 * 512 * 128 * 2
    log = tmp_path / "mapped.log"
    real = frame_shards._mapped_trains

    def mapped_trains(*args: object) -> object:      # runs in the forked workers
        got = real(*args)
        with open(log, "a") as f:
            f.write(f"{got is not None}\n")
        return got
    monkeypatch.setattr(frame_shards, "_mapped_trains", mapped_trains)
    stores = {}
    for name, group in (("one", 1), ("several", 3)):
        monkeypatch.setattr(frame_shards, "GROUP_BYTES", group * 8 * frame_bytes)
        stores[name] = tmp_path / f"{name}.zarr"
        to_zarr(det, stores[name], threads=2, **layout)
    monkeypatch.setattr(frame_shards, "applies", lambda lay: False)
    to_zarr(det, tmp_path / "whole.zarr", threads=2, **layout)
    whole = _files(tmp_path / "whole.zarr")
    assert any(k.startswith("image.data/c/") for k in whole)
    for store in stores.values():
        assert _files(store) == whole       # checksums included (summed while encoding)
    if not layout:                          # one pulse per inner chunk: from mapped pages
        assert "True" in log.read_text().split()
    back = detstack.AGIPD1M(detstack.open_view(stores["several"]), raw=True)
    np.testing.assert_array_equal(back.get_array("image.data").values,
                                  det.get_array("image.data").values)


def test_mapped_rows_are_the_rows_or_none(tmp_path: Path) -> None:
    """``_Sources.mapped`` (forked workers): the rows read, across gaps between chunks
    and files' ends; None where it may not map (threads, rows past a truncated end)."""
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", modules=[0], n_trains=6, frames_per_train=5,
                    with_control=False)
    path = next(run.glob("*AGIPD00*"))
    dset = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data"
    with h5py.File(path) as f:
        want = f[dset][:30]     # 6 x 5 frames; the dataset's last rows are not allocated
        assert f[dset].shape[0] > 30
    with _Sources((str(path),), map_rows=True) as src:
        assert src.mapped(0, dset, 0, 32) is None
        for start, count in ((0, 30), (7, 9), (29, 1)):
            rows = src.mapped(0, dset, start, count)
            assert rows is not None and len(rows) == count
            for i, row in enumerate(rows):
                np.testing.assert_array_equal(row, want[start + i])
        rows = None
    with _Sources((str(path),)) as src:
        assert src.mapped(0, dset, 0, 5) is None
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes())
    with _Sources((str(cut),), map_rows=True) as src:
        src._dataset(0, dset)                     # opened whole, then cut short
        os.truncate(cut, os.path.getsize(cut) - 3 * want[0].nbytes)
        assert src.mapped(0, dset, len(want) - 5, 5) is None
        out = np.empty((5, *want.shape[1:]), want.dtype)
        with pytest.raises(OSError, match="truncated"):
            src.read(0, dset, len(want) - 5, 5, out)
