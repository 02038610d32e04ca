"""Distributed conversion: ``to_zarr(..., client=...)`` on 1, 2 and 4 worker processes.

    python benchmarks/bench_distributed.py [--trains 16] [--pulses 64] [--workers 1,2,4]
                                           [--dir /tmp/detstack-bench-dist]

Writes (once) a synthetic AGIPD-1M raw run with real pixel data (Poisson photon counts,
mean 0.5; 16 modules, ``--trains`` x ``--pulses`` frames, two sequence files per module),
warms the page cache, converts it with threads (the baseline), then on a fresh
``distributed.LocalCluster`` of N single-threaded worker processes for each N. Reports
wall time, input GB/s, the peak RSS of every worker (read from the workers themselves
after the conversion) and checks each store equals the threaded one, array by array.

The cluster and the tasks are the same a SLURM cluster from ``dask-jobqueue`` runs
(README, "Converting on a cluster"); only the workers' machine differs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("ignore")


def worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_run(folder: Path, trains: int, pulses: int) -> None:
    from detstack import synth
    if folder.is_dir() and any(folder.glob("*.h5")):
        return
    synth.write_run(folder, "AGIPD1M", raw=True, n_trains=trains, frames_per_train=pulses,
                    trains_per_file=max(1, trains // 2), with_control=False, overwrite=True)


def input_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.h5"))


def warm(folder: Path) -> None:
    for p in folder.glob("*.h5"):
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def same_store(a: Path, b: Path) -> bool:
    import zarr
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    if sorted(ga.array_keys()) != sorted(gb.array_keys()):
        return False
    return all(np.array_equal(ga[k][...], gb[k][...], equal_nan=ga[k].dtype.kind == "f")
               for k in ga.array_keys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trains", type=int, default=16)
    parser.add_argument("--pulses", type=int, default=64)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/detstack-bench-dist"))
    args = parser.parse_args()

    import logging

    from distributed import Client, LocalCluster

    import detstack
    from detstack.convert import to_zarr
    logging.getLogger("distributed").setLevel(logging.ERROR)

    run = args.dir / "run"
    make_run(run, args.trains, args.pulses)
    warm(run)
    size = input_bytes(run)
    det = detstack.AGIPD1M(detstack.RunDirectory(str(run)), raw=True)

    threaded = args.dir / "threads.zarr"
    shutil.rmtree(threaded, ignore_errors=True)
    t0 = time.perf_counter()
    to_zarr(det, threaded)
    t_threads = time.perf_counter() - t0
    rows = [("threads (this process)", t_threads, "-", True)]

    for n in [int(w) for w in args.workers.split(",")]:
        out = args.dir / f"dask-{n}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            client.run(worker_peak_mb)          # workers up and importable before the clock
            t0 = time.perf_counter()
            to_zarr(det, out, client=client)
            seconds = time.perf_counter() - t0
            peaks = sorted(client.run(worker_peak_mb).values())
        rows.append((f"LocalCluster, {n} worker process{'es' if n > 1 else ''}", seconds,
                     " / ".join(f"{p:.0f}" for p in peaks), same_store(threaded, out)))
        shutil.rmtree(out, ignore_errors=True)

    print(f"AGIPD-1M raw, 16 modules x {args.trains} trains x {args.pulses} frames, "
          f"{size / 1e9:.2f} GB input, page cache warm\n")
    print("| conversion | time | input GB/s | peak RSS per worker (MB) | store equals threads |")
    print("|---|---|---|---|---|")
    for name, seconds, peaks, same in rows:
        print(f"| {name} | {seconds:.1f} s | {size / seconds / 1e9:.2f} | {peaks} | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
