"""Where ``to_zarr``'s CPU time goes besides the encoder, measured by leaving parts out.

    python benchmarks/bench_zwrite_costs.py [--trains 16] [--repeat 4] [--dir DIR]

Data: the realistic raw AGIPD-1M run of ``bench_paths.py`` (same folder, written once),
page cache warm (read back from the disk before each round, as in ``bench_paths.py``).
``to_zarr`` of ``image.data`` runs on ``--workers`` forked processes
(default 2; one worker runs on a thread, which never maps) in rounds that alternate:

* the whole conversion (timed until the shards are on disk, ``os.sync``; forked
  workers encode from the files' mapped pages);
* the same with the rows copied by ``preadv`` instead of mapped;
* without writing: the encoded chunks are counted and dropped;
* without the train checksums (crc32 of every source row, for ``verify --full``);
* without reading (``preadv`` path): each task reads its first pulse group from the
  HDF5 files and encodes those bytes again for the rest (same values model, so the
  compressor's work is alike; the output is not a valid store).

beside the single-core encode of every inner chunk from memory (transposition, blosc,
crc32c: the reference ``bench_paths.py zwrite`` multiplies by the cores). Each part's
cost is the median CPU-second difference to the whole conversion (reading: to the
``preadv`` one); what the conversion spends beyond the encoder bounds how close to
``cores x`` single-core encode it can get.
The patched functions exist only in this benchmark: it measures, it changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from bench_paths import _store, encode_from_memory, warm
from cputime import cpu_seconds

warnings.simplefilter("ignore")


def _without(part: str) -> contextlib.AbstractContextManager[None]:
    """The conversion with ``part`` left out: "mapping" (rows copied with preadv instead),
    "write", "checksum", "read" (preadv path, each task's first pulse group reused)."""
    from detstack.convert.zarr import frame_shards, layout, tasks
    from detstack.convert.zarr.target import Target

    @contextlib.contextmanager
    def dropping(self: Any, key: str) -> Iterator[Callable[[list[Any]], int]]:
        yield lambda parts: sum(memoryview(p).nbytes for p in parts)

    read = tasks._Sources.read
    first: set[tuple[int, int]] = set()

    def read_once(self: Any, j: int, dset: str, start: int, count: int, out: np.ndarray,
                  where: str = "") -> None:
        key = (id(self), out.__array_interface__["data"][0])
        if key not in first:
            first.add(key)
            read(self, j, dset, start, count, out, where)

    def unmapped(self: Any, *args: Any) -> None:
        return None

    def no_sum(rows: Any, value: int = 0) -> int:
        return 0

    patches = {"mapping": [(tasks._Sources, "mapped", unmapped)],
               "write": [(Target, "open_object", dropping)],
               "checksum": [(frame_shards, "block_checksum", no_sum),
                            (layout, "block_checksum", no_sum)],
               "read": [(tasks._Sources, "mapped", unmapped),
                        (tasks._Sources, "read", read_once)]}

    @contextlib.contextmanager
    def patched() -> Iterator[None]:
        old = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches.get(part, [])]
        for owner, name, fn in patches.get(part, []):
            setattr(owner, name, fn)
        try:
            yield
        finally:
            for owner, name, fn in old:
                setattr(owner, name, fn)
    return patched()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trains", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--dir", default="/tmp/detstack-bench/paths")
    ap.add_argument("--workers", type=int, default=2,
                    help="to_zarr workers (more than one: forked processes, which inherit "
                         "the left-out parts)")
    args = ap.parse_args()
    import json

    import detstack
    from detstack.convert import to_zarr
    from detstack.convert.zarr.layout import chunk_codecs_of, chunk_encoder
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    run, store = _store(base, args.trains)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    meta = json.loads((store / "image.data" / "zarr.json").read_text())
    encode = chunk_encoder(list(chunk_codecs_of(meta)), np.dtype(meta["data_type"]))
    ct = meta["codecs"][0]["configuration"]["chunk_shape"][1]
    data = det.get_array("image.data").values
    out = base / "costs.zarr"

    def convert() -> None:
        to_zarr(det, out, keys=["image.data"], workers=args.workers, progress=False)

    encode_all = encode_from_memory(data, encode, ct, 1)

    modes = ["whole", "mapping", "write", "checksum", "read"]
    cpu: dict[str, list[float]] = {m: [] for m in modes + ["encode"]}
    print(f"machine: {len(os.sched_getaffinity(0))} cores; raw AGIPD-1M image.data "
          f"{data.nbytes / 1e9:.2f} GB, {args.trains} trains; to_zarr on {args.workers} "
          "worker(s)")
    for _ in range(args.repeat):
        warm(run, from_disk=True)       # the run's pages as a read from the disk leaves them
        for mode in modes:
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            with _without(mode):
                c0, t0 = cpu_seconds(), time.perf_counter()
                convert()
                os.sync()
                cpu[mode].append(cpu_seconds() - c0)
            print(f"  {mode:9s} {time.perf_counter() - t0:6.2f} s wall {cpu[mode][-1]:6.2f} "
                  "CPU-s", flush=True)
        c0 = cpu_seconds()
        encode_all()
        cpu["encode"].append(cpu_seconds() - c0)
    shutil.rmtree(out, ignore_errors=True)
    whole = float(np.median(cpu["whole"]))
    enc = float(np.median(cpu["encode"]))
    print(f"\nmedians of {args.repeat} rounds (CPU-seconds):")
    print(f"  whole conversion            {whole:6.2f}")
    print(f"  single-core encode          {enc:6.2f}  (conversion / encode: {whole / enc:.2f})")
    for mode in modes[1:]:
        ref = "mapping" if mode == "read" else "whole"   # reading: of the preadv path
        cost = float(np.median(cpu[ref])) - float(np.median(cpu[mode]))
        what = {"mapping": "mapping saves (vs preadv)"}.get(mode, f"{mode} costs")
        print(f"  {what:27s} {cost if mode != 'mapping' else -cost:6.2f}  "
              f"({100 * abs(cost) / whole:4.1f} % of the conversion)")
    print(f"  => even with every core busy, to_zarr reaches at most {enc / whole:.2f}x of "
          "cores x single-core encode on this machine")


if __name__ == "__main__":
    main()
