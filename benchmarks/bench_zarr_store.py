"""Zarr store conversion: speed, compression, memory, and cluster vs threads.

    python benchmarks/bench_zarr_store.py [--size-gb 3] [--pulses 64] [--dir DIR]
                                          [--values realistic|photons]
                                          [--no-dask] [--no-baseline] [--no-old]

Writes (once) a synthetic AGIPD-1M raw run of about ``--size-gb`` GB (value model
``--values``, default realistic: pedestals, noise, photons in ADU; ``photons``: Poisson
counts, mean 0.5), warms the page cache, then, each in a fresh subprocess so peak RSS
belongs to that conversion alone:

* ``to_zarr`` with the default layout (8 trains per module per shard, an inner chunk
  per pulse with the train axis innermost, blosc zstd-1 + bitshuffle 1 MiB blocks) to a
  local folder: GB/s of input (all keys), GB per CPU-second (the speed on an otherwise
  idle machine is about this figure times the cores), compression ratio (input / stored
  bytes), peak RSS;
* the same with the old default layout (one train per shard, one frame per inner
  chunk, 64 KiB blosc blocks), to compare ratio and speed;
* the same on a quarter of the trains, to show peak RSS does not grow with size;
* the baseline: zarr-python itself writing ``image.data`` shard by shard
  (``arr[slot, train] = block``) with the same codec and layout;
* ``to_zarr`` on a 2-worker ``distributed.LocalCluster``, checked byte-equal to
  the threaded store.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cputime import cpu_seconds

FRAME_BYTES = 2 * 512 * 128 * 2      # raw AGIPD frame: data + gain planes, uint16


def _old_layout() -> dict:
    """The layout and codec to_zarr used before the realistic-data study."""
    from zarr.codecs import BloscCodec, BloscShuffle
    return {"compressor": BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.bitshuffle,
                                     blocksize=1 << 16),
            "shards": 1, "chunks": {"image.data": (1, 1, 1, 2, 512, 128)}}




def _det(run_dir: str, trains: int | None = None):  # noqa: ANN202
    import warnings
    warnings.simplefilter("ignore")
    import detstack
    det = detstack.AGIPD1M(detstack.RunDirectory(run_dir), raw=True)
    if trains is not None:
        det = det.select_trains(detstack.by_index[:trains])
    return det


def input_bytes(det) -> int:  # noqa: ANN001
    """Bytes of every source row converted (all keys), from the view contract."""
    import numpy as np

    from detstack.convert.plan import ViewPlan
    plan = ViewPlan(det)
    total = 0
    for kp in plan.keys:
        row = kp.dtype.itemsize * int(np.prod(kp.entry_shape, dtype=np.int64))
        counts = plan.counts(kp.group)
        rows = counts.sum() if kp.per_frame else (counts > 0).sum()
        total += int(rows) * row
    return total


def stored_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child(mode: str, run_dir: str, out: str, trains: str) -> None:
    """In a fresh process: one conversion; prints its figures as JSON."""
    from detstack.convert import to_zarr
    det = _det(run_dir, int(trains) if trains != "all" else None)
    shutil.rmtree(out, ignore_errors=True)
    # CPU of this process and its ended children (to_zarr's forked workers); a dask
    # cluster's processes are counted by asking them (ending, they would count twice)
    clock = time.process_time if mode == "dask" else cpu_seconds
    t0, cpu0 = time.perf_counter(), clock()
    if mode == "threads":
        to_zarr(det, out)
    elif mode == "old-layout":
        to_zarr(det, out, **_old_layout())
    elif mode == "zarr-python":
        baseline(det, out)
    elif mode == "dask":
        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            # cluster start-up and the workers' first imports are not counted
            client.run(__import__, "detstack.convert.zarr.tasks")
            workers0 = sum(client.run(time.process_time).values())
            t0, cpu0 = time.perf_counter(), time.process_time()
            to_zarr(det, out, client=client)
            seconds = time.perf_counter() - t0
            cpu0 -= sum(client.run(time.process_time).values()) - workers0  # workers' CPU too
    if mode != "dask":
        seconds = time.perf_counter() - t0
    cpu = clock() - cpu0
    nbytes = input_bytes(det) if mode != "zarr-python" else main_key_bytes(det)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "input": nbytes,
                      "stored": stored_bytes(Path(out)),
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main_key_bytes(det) -> int:  # noqa: ANN001
    return int(det.frame_map.counts.sum()) * FRAME_BYTES


def baseline(det, out: str) -> None:  # noqa: ANN001
    """zarr-python writing the same layout (``image.data``): read the module's frames of a
    shard's trains with h5py, assign them shard by shard."""
    import h5py
    import numpy as np
    import zarr
    from zarr.codecs import TransposeCodec

    from detstack.convert.plan import ViewPlan
    from detstack.convert.zarr.layout import FRAME_TRAINS, default_compressor
    plan = ViewPlan(det, ["image.data"])
    kp = plan.keys[0]
    shape = plan.shape(kp)
    t = min(FRAME_TRAINS, shape[1])
    arr = zarr.create_array(out, shape=shape, dtype=kp.dtype, chunks=(1, t, 1) + shape[3:],
                            shards=(1, t) + shape[2:], fill_value=0,
                            filters=[TransposeCodec(order=(0, *range(2, len(shape)), 1))],
                            compressors=default_compressor(kp.dtype))
    files: dict[Path, h5py.File] = {}
    blocks: dict[tuple[int, int], list] = {}
    for b in plan.blocks(kp):
        blocks.setdefault((b.slot, b.train // t), []).append(b)
    for (slot, u), bs in sorted(blocks.items()):
        t0 = u * t
        block = np.zeros((min(t, shape[1] - t0),) + shape[2:], kp.dtype)
        for b in bs:
            if b.file not in files:
                files[b.file] = h5py.File(b.file, "r")
            block[b.train - t0, :b.count] = files[b.file][b.dataset][b.src_start:
                                                                      b.src_start + b.count]
        arr[slot, t0:t0 + len(block)] = block
    for f in files.values():
        f.close()


def measure(mode: str, run_dir: Path, out: Path, trains: int | None = None) -> dict[str, float]:
    res = subprocess.run([sys.executable, __file__, "--child", mode, str(run_dir), str(out),
                          str(trains or "all")], capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{mode} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def ensure_run(run_dir: Path, n_trains: int, pulses: int, values: str) -> None:
    from detstack import synth
    marker = run_dir / f".bench-{n_trains}x{pulses}-{values}"
    if not marker.exists():
        print(f"writing synthetic AGIPD-1M raw run ({n_trains} trains x {pulses} pulses, "
              f"{values} values) to {run_dir} ...", flush=True)
        t0 = time.perf_counter()
        for old in run_dir.glob(".bench-*"):
            old.unlink()
        synth.write_run(run_dir, "AGIPD1M", raw=True, n_trains=n_trains, values=values,
                        frames_per_train=pulses, with_control=False, overwrite=True)
        print(f"  written in {time.perf_counter() - t0:.1f} s", flush=True)
        marker.touch()
    for f in run_dir.glob("*.h5"):  # warm the page cache
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def same_stores(a: Path, b: Path) -> bool:
    """Same objects, same bytes; the root zarr.json differs only in the creation time."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    if names != sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names if n != "zarr.json")


def row(label: str, r: dict[str, float]) -> None:
    print(f"{label:50} {r['seconds']:6.1f} s {r['input'] / 1e9:6.2f} GB "
          f"{r['input'] / r['seconds'] / 1e9:6.2f} GB/s {r['input'] / r['cpu'] / 1e9:7.2f} "
          f"{r['input'] / r['stored']:6.1f}x {r['peak_rss'] / 1e6:7.0f} MB", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=3.0, help="run size (default 3 GB)")
    ap.add_argument("--pulses", type=int, default=64, help="frames per train (default 64)")
    ap.add_argument("--dir", default="/tmp/detstack-bench/zarr")
    ap.add_argument("--no-dask", action="store_true", help="skip the LocalCluster run")
    ap.add_argument("--no-baseline", action="store_true", help="skip zarr-python's own writer")
    ap.add_argument("--no-old", action="store_true", help="skip the old default layout")
    ap.add_argument("--values", default="realistic", choices=["realistic", "photons"],
                    help="synth value model (default realistic)")
    args = ap.parse_args()
    base = Path(args.dir)
    n_trains = max(4, round(args.size_gb * 1e9 / (16 * args.pulses * FRAME_BYTES)))
    run_dir = base / "run"
    ensure_run(run_dir, n_trains, args.pulses, args.values)
    model = "realistic values" if args.values == "realistic" else "Poisson(0.5) photon values"
    print(f"\nAGIPD-1M raw, 16 modules x {n_trains} trains x {args.pulses} pulses, "
          f"value model: {model}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print(f"{'conversion':50} {'time':>8} {'input':>9} {'speed':>11} {'GB/CPU-s':>8} "
          f"{'ratio':>7} {'peak RSS':>10}")
    full = measure("threads", run_dir, base / "threads.zarr")
    row("to_zarr, threads, default layout", full)
    if not args.no_old:
        old = measure("old-layout", run_dir, base / "old.zarr")
        row("to_zarr, threads, old default layout", old)
        print(f"{'':50} new/old: speed {old['seconds'] / full['seconds']:.2f}x, "
              f"CPU {old['cpu'] / full['cpu']:.2f}x, ratio "
              f"{old['stored'] / full['stored']:.2f}x", flush=True)
        shutil.rmtree(base / "old.zarr", ignore_errors=True)
    quarter = measure("threads", run_dir, base / "quarter.zarr", max(1, n_trains // 4))
    row(f"to_zarr, threads, first {max(1, n_trains // 4)} trains", quarter)
    shutil.rmtree(base / "quarter.zarr", ignore_errors=True)
    if not args.no_baseline:
        ref = measure("zarr-python", run_dir, base / "zarr-python.zarr")
        row("zarr-python arr[slot, trains] = block (image.data)", ref)
        shutil.rmtree(base / "zarr-python.zarr", ignore_errors=True)
    if not args.no_dask:
        dask = measure("dask", run_dir, base / "dask.zarr")
        row("to_zarr, LocalCluster 2 workers", dask)
        equal = same_stores(base / "threads.zarr", base / "dask.zarr")
        print(f"\nLocalCluster store == threaded store (every data and array-metadata "
              f"object byte for byte): {equal}")
        shutil.rmtree(base / "dask.zarr", ignore_errors=True)


if __name__ == "__main__":
    main()
