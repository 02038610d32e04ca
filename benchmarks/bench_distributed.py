"""Distributed conversion: ``to_zarr(..., client=...)`` on 1, 2 and 4 worker processes.

    python benchmarks/bench_distributed.py [--trains 16] [--pulses 64] [--workers 1,2,4]
                                           [--values realistic] [--dir /tmp/detstack-bench-dist]

Writes (once) a synthetic AGIPD-1M raw run with real pixel data (``--values``: the
realistic model by default, pedestals + noise + photons in ADU; 16 modules, ``--trains`` x
``--pulses`` frames, two sequence files per module),
warms the page cache, converts it with threads (the baseline), then on a fresh
``distributed.LocalCluster`` of N single-threaded worker processes for each N. Reports
wall time, input GB/s, CPU seconds of all workers, the peak RSS of every worker during
the conversion (reset and read by the workers themselves) and checks each store equals the threaded one, array by array.

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
from cputime import cpu_seconds

warnings.simplefilter("ignore")


def reset_peak() -> float:
    """Reset this process's peak RSS (Linux: VmHWM) and return its CPU seconds so far."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return cpu_seconds()


def peak_mb() -> float:
    """Peak RSS since the last reset (ru_maxrss would include a forking parent's peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_run(folder: Path, trains: int, pulses: int, values: str) -> None:
    from detstack import synth
    if folder.is_dir() and any(folder.glob("*.h5")):
        return
    synth.write_run(folder, "AGIPD1M", raw=True, n_trains=trains, frames_per_train=pulses,
                    trains_per_file=max(1, trains // 2), with_control=False, overwrite=True,
                    values=values)


def input_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.h5"))


def warm(folder: Path) -> None:
    for p in folder.glob("*.h5"):
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def same_store(a: Path, b: Path) -> bool:
    """Every array equal, compared module by module (bounded memory)."""
    import zarr
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    if sorted(ga.array_keys()) != sorted(gb.array_keys()):
        return False
    for k in ga.array_keys():
        x, y = ga[k], gb[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        for i in range(x.shape[0] if x.ndim else 1):
            sel = (i,) if x.ndim else ()
            if not np.array_equal(x[sel], y[sel], equal_nan=x.dtype.kind == "f"):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trains", type=int, default=16)
    parser.add_argument("--pulses", type=int, default=64)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--values", default="realistic", help="synth value model")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/detstack-bench-dist"))
    args = parser.parse_args()

    import logging

    from distributed import Client, LocalCluster

    import detstack
    from detstack.convert import to_zarr
    logging.getLogger("distributed").setLevel(logging.ERROR)

    run = args.dir / f"run-{args.values}-{args.trains}x{args.pulses}"
    make_run(run, args.trains, args.pulses, args.values)
    warm(run)
    size = input_bytes(run)
    det = detstack.AGIPD1M(detstack.RunDirectory(str(run)), raw=True)

    threaded = args.dir / "threads.zarr"
    shutil.rmtree(threaded, ignore_errors=True)
    c0 = reset_peak()
    t0 = time.perf_counter()
    to_zarr(det, threaded)
    t_threads = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = [("local worker processes (forked)", t_threads, cpu_seconds() - c0,
             f"{max(peak_mb(), children):.0f} (largest process)", True)]

    for n in [int(w) for w in args.workers.split(",")]:
        out = args.dir / f"dask-{n}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            client.wait_for_workers(n)
            cpu0 = client.run(reset_peak)          # workers up, peaks reset, before the clock
            t0 = time.perf_counter()
            to_zarr(det, out, client=client)
            seconds = time.perf_counter() - t0
            cpu = sum(client.run(time.process_time)[w] - c for w, c in cpu0.items())
            peaks = sorted(client.run(peak_mb).values())
        rows.append((f"LocalCluster, {n} worker process{'es' if n > 1 else ''}", seconds, cpu,
                     " / ".join(f"{p:.0f}" for p in peaks), same_store(threaded, out)))
        shutil.rmtree(out, ignore_errors=True)

    print(f"AGIPD-1M raw ({args.values} values), 16 modules x {args.trains} trains x "
          f"{args.pulses} frames, "
          f"{size / 1e9:.2f} GB input, page cache warm\n")
    print("| conversion | wall time | input GB/s | CPU s (all workers) | peak RSS per worker "
          "(MB) | store equals threads |")
    print("|---|---|---|---|---|---|")
    for name, seconds, cpu, peaks, same in rows:
        print(f"| {name} | {seconds:.1f} s | {size / seconds / 1e9:.2f} | {cpu:.1f} | {peaks} | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
