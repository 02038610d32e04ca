"""Conversion on a real dask.distributed cluster (2 worker processes) equals threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from zarr_store_helpers import assert_same_store, check_reader_api, make_run, open_det, view_det

from detstack.convert import to_zarr


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.mark.parametrize(("name", "layout"), [("AGIPD1M-raw", "trains"), ("JUNGFRAU", "trains"),
                                              ("AGIPD1M-raw", "frames")])
def test_distributed_equals_threads(client: Client, tmp_path: Path, name: str,
                                    layout: str) -> None:
    det = open_det(make_run(tmp_path / "run", name), name)
    threaded = tmp_path / "threads.zarr"
    to_zarr(det, threaded, layout=layout)
    seen: list[tuple[int, int]] = []
    to_zarr(det, tmp_path / "dask.zarr", client=client, layout=layout,
            progress=lambda d, t: seen.append((d, t)))
    assert len(client.scheduler_info()["workers"]) == 2
    assert seen[-1][0] == seen[-1][1] > 0 and len(seen) > 2
    assert_same_store(threaded, tmp_path / "dask.zarr")
    check_reader_api(det, view_det(det, str(tmp_path / "dask.zarr")))
