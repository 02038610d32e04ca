"""Zarr stores on S3: a real S3 API server (moto) on localhost, reached through s3fs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import s3fs
import xarray as xr
import zarr
from zarr_store_helpers import (
    check_arrays,
    check_reader_api,
    make_run,
    open_det,
    s3_server,  # noqa: F401 - fixture
    validate_record,
    view_det,
)

from detstack.convert import to_zarr
from detstack.convert.plan import ViewPlan
from detstack.store import open_view
from detstack.store.zarr_store import IncompleteStoreError


@pytest.fixture(scope="module")
def agipd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    run = make_run(tmp_path_factory.mktemp("s3run") / "run", "AGIPD1M-small")
    return open_det(run, "AGIPD1M-small")


def _objects(so: dict[str, Any], prefix: str) -> list[str]:
    fs = s3fs.S3FileSystem(**so, skip_instance_cache=True)
    return sorted(fs.find(prefix))


def test_s3_round_trip(agipd: Any, s3_server: dict[str, Any]) -> None:  # noqa: F811
    so = s3_server
    url = "s3://xfel/round.zarr"
    to_zarr(agipd, url, storage_options=so)
    names = _objects(so, "xfel/round.zarr")
    assert "xfel/round.zarr/zarr.json" in names
    assert not any(".detstack-progress" in n for n in names)

    ds = xr.open_zarr(url, storage_options=so, chunks=None)
    check_arrays(ViewPlan(agipd, squeeze=True), ds)
    assert ds["image.data"].dims[:3] == ("module", "train", "pulse")
    validate_record(ds.attrs["detstack_record"])
    g = zarr.open_group(url, mode="r", storage_options=so)
    arr = g["image.data"]
    assert arr.shards == (1, min(8, arr.shape[1])) + arr.shape[2:]

    dv = view_det(agipd, url, storage_options=so)
    check_reader_api(agipd, dv)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_zarr(agipd, url, storage_options=so)
    to_zarr(agipd, url, storage_options=so, overwrite=True, keys=["image.data"])
    assert list(open_view(url, storage_options=so).record["keys"]) == ["image.data"]
    assert not any(n.startswith("xfel/round.zarr/image.pulseId")
                   for n in _objects(so, "xfel/round.zarr"))


class _Lost(Exception):
    pass


def test_s3_interrupted_and_resumed(agipd: Any, s3_server: dict[str, Any],  # noqa: F811
                                    tmp_path: Path) -> None:
    so = s3_server
    url = "s3://xfel/cut.zarr"

    def lose_connection(done: int, total: int) -> None:
        if done > 0:
            raise _Lost("connection lost")
    with pytest.raises(_Lost):
        to_zarr(agipd, url, storage_options=so, threads=1, progress=lose_connection)
    with pytest.raises(IncompleteStoreError):
        open_view(url, storage_options=so)
    to_zarr(agipd, url, storage_options=so, resume=True)

    local = tmp_path / "whole.zarr"
    to_zarr(agipd, local)
    fs = s3fs.S3FileSystem(**so, skip_instance_cache=True)
    remote = {n[len("xfel/cut.zarr/"):]: fs.cat_file(n) for n in fs.find("xfel/cut.zarr")}
    files = {str(p.relative_to(local)): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert sorted(remote) == sorted(files)
    assert all(remote[n] == files[n] for n in files if not n.endswith("zarr.json"))
    check_reader_api(agipd, view_det(agipd, url, storage_options=so))
