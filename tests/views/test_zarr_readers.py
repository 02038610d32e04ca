"""Default zarr stores (8-train shards, transposed inner chunks) decode in other Zarr v3
readers with no detstack code: tensorstore, and zarr-python with the zarrs codec pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr
from view_oracle import expected_array
from zarr_store_helpers import make_run, open_det, view_det

from detstack.convert import to_zarr
from detstack.convert.plan import ViewPlan


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, Path]]:
    base = tmp_path_factory.mktemp("readers")
    out = {}
    for name in ("AGIPD1M-raw", "JUNGFRAU"):
        det = open_det(make_run(base / name, name), name)
        url = base / f"{name}.zarr"
        to_zarr(det, url)
        out[name] = (det, url)
    return out


@pytest.mark.parametrize("name", ["AGIPD1M-raw", "JUNGFRAU"])
def test_tensorstore_reads_the_default_store(stores: dict, name: str) -> None:
    det, url = stores[name]
    key = det.kind.main_key
    arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                                                   "path": str(url / key)}}).result()
    got = arr.read().result()
    plan = ViewPlan(det)
    np.testing.assert_array_equal(got, expected_array(plan, key))
    # the same values as detstack's reader API on the store (which fills gaps with NaN)
    ours = np.asarray(view_det(det, str(url)).get_array(key).values)
    mine = got[plan.slots].astype(ours.dtype)
    present = ~np.isnan(ours) if ours.dtype.kind == "f" else np.ones(ours.shape, bool)
    assert present.mean() > 0.5
    np.testing.assert_array_equal(mine[present], ours[present])


def test_zarrs_pipeline_reads_the_default_store(stores: dict) -> None:
    pytest.importorskip("zarrs")  # installed with the test extra; a wheel may be missing
    det, url = stores["AGIPD1M-raw"]
    with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
        got = zarr.open_group(str(url), mode="r")["image.data"][...]
    np.testing.assert_array_equal(got, expected_array(ViewPlan(det), "image.data"))


def test_shards_shrink_to_bound_task_memory(stores: dict, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """A task holds one shard: shards take fewer trains when 8 would exceed SHARD_BYTES."""
    from detstack.convert.zarr import layout as zarr_layout
    det, _ = stores["AGIPD1M-raw"]
    plan = ViewPlan(det)
    kp = plan.key("image.data")
    per_train = 6 * 2 * 512 * 128 * 2                  # 6 frames at most per train
    monkeypatch.setattr(zarr_layout, "SHARD_BYTES", 3 * per_train)
    lay = zarr_layout.key_layout(plan, kp)
    assert lay.unit[1] == lay.chunk[1] == 3 and lay.order == (0, 2, 3, 4, 5, 1)
    monkeypatch.setattr(zarr_layout, "SHARD_BYTES", per_train // 2)
    lay = zarr_layout.key_layout(plan, kp)
    assert lay.unit[1] == lay.chunk[1] == 1 and lay.order is None
