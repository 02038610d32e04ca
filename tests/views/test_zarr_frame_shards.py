"""Shards of large per-frame keys written a group of pulses at a time (frame_shards):
the same bytes and checksums as whole shards through encode.shard_parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.convert import to_zarr
from detstack.convert.plan import ViewPlan
from detstack.convert.zarr import frame_shards
from detstack.convert.zarr.layout import plan_layouts


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
        assert _files(store) == whole
    back = detstack.AGIPD1M(detstack.open_view(stores["several"]), raw=True)
    np.testing.assert_array_equal(back.get_array("image.data").values,
                                  det.get_array("image.data").values)
