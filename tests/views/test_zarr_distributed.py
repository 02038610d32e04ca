"""Conversion on a real dask.distributed cluster (2 worker processes) equals threads,
through the API (``client=``) and the command line (``--scheduler ADDRESS``, the way a
SLURM cluster from dask-jobqueue is used)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from zarr_store_helpers import assert_same_store, check_reader_api, make_run, open_det, view_det

from detstack.cli import main as cli_main
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
    # ``nthreads`` asks the scheduler; ``scheduler_info()`` may answer from a cache with
    # no workers in it when the query times out on a loaded machine
    assert len(client.nthreads()) == 2
    assert seen[-1][0] == seen[-1][1] > 0 and len(seen) > 2
    assert_same_store(threaded, tmp_path / "dask.zarr")
    check_reader_api(det, view_det(det, str(tmp_path / "dask.zarr")))


def test_cli_scheduler_address(client: Client, tmp_path: Path) -> None:
    """`detstack convert ... --scheduler ADDRESS` runs the tasks on that cluster's workers
    and writes the same store as threads."""
    name = "AGIPD1M-raw"
    run = make_run(tmp_path / "run", name)
    det = open_det(run, name)
    to_zarr(det, tmp_path / "threads.zarr")
    before = _tasks_seen(client)
    address = client.scheduler.address
    out = tmp_path / "cli.zarr"
    assert cli_main(["convert", str(run), str(out), "--to", "zarr", "--raw",
                     "--scheduler", address]) == 0
    assert_same_store(tmp_path / "threads.zarr", out)
    check_reader_api(det, view_det(det, str(out)))
    assert _tasks_seen(client) > before   # the scheduler at ADDRESS ran the tasks


def _tasks_seen(client: Client) -> int:
    """Conversion tasks the cluster's scheduler has handled so far."""
    def count(dask_scheduler: object) -> int:
        prefix = dask_scheduler.task_prefixes.get("detstack-to-zarr")  # type: ignore[attr-defined]
        return 0 if prefix is None else sum(prefix.state_counts.values())
    return int(client.run_on_scheduler(count))
