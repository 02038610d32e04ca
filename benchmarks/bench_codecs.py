"""Which lossless Zarr v3 codec and chunk layout to store detector frames with.

    python benchmarks/bench_codecs.py [--values realistic|photons] [--trains 16]
                                      [--pulses 32] [--rounds 3] [--quick]

Frames come from the synthetic value model (default: realistic; `--values photons` for
the Poisson model): one module, ``--trains`` trains x ``--pulses`` pulses of raw AGIPD
(and briefly corrected AGIPD, raw LPD and raw JUNGFRAU). Every candidate uses only
standard Zarr v3 codecs (``transpose``, ``bytes``, ``blosc``, ``zstd``), so tensorstore,
zarrs and zarr-python decode the store with no detstack code. For each:

* ratio: input bytes / encoded bytes;
* encode GB/s on one core (thread CPU time, best of ``--rounds``; includes the transpose)
  and relative to today's default (one frame per chunk, zstd-1 bitshuffle 64 KiB blocks);
* encode GB/s with 2 threads (wall time);
* decode ms of one inner chunk (thread CPU time): the cost of reading one frame.

It then prints the entropy bound of the noise model (the Shannon entropy of the values
given their pedestal, hence the best ratio any lossless codec can reach), times ``to_zarr``
of a two-module run into the old and the new default layout (the conversion speed, CPU
seconds of all threads), and reads one frame from each store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numcodecs
import numpy as np
from numcodecs import blosc

from detstack import synth
from detstack.convert.zarr.layout import transposed

blosc.use_threads = False        # one core per encode call: we measure threads ourselves


@dataclass(frozen=True)
class Candidate:
    label: str
    trains: int                  # trains per inner chunk
    transpose: bool              # train axis innermost (zarr ``transpose`` codec)
    codec: Callable[[], numcodecs.abc.Codec]


def _blosc(cname: str, clevel: int, shuffle: int, block_kib: int) -> Callable[[], object]:
    return lambda: numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffle,
                                   blocksize=block_kib << 10)


BIT, BYTE = numcodecs.Blosc.BITSHUFFLE, numcodecs.Blosc.SHUFFLE
TODAY = Candidate("1 frame, zstd-1 bitshuffle 64K (old default)", 1, False, _blosc("zstd", 1, BIT, 64))
CANDIDATES = [
    TODAY,
    Candidate("1 frame, zstd-1 bitshuffle 1M", 1, False, _blosc("zstd", 1, BIT, 1024)),
    Candidate("1 frame, zstd-1 (bytes only)", 1, False, lambda: numcodecs.Zstd(level=1)),
    Candidate("8 trains, no transpose, zstd-1 bitshuffle 1M", 8, False, _blosc("zstd", 1, BIT, 1024)),
    Candidate("4 trains^T, zstd-1 bitshuffle 1M", 4, True, _blosc("zstd", 1, BIT, 1024)),
    Candidate("6 trains^T, zstd-1 bitshuffle 1M", 6, True, _blosc("zstd", 1, BIT, 1024)),
    Candidate("6 trains^T, zstd-1 bitshuffle 768K", 6, True, _blosc("zstd", 1, BIT, 768)),
    Candidate("8 trains^T, zstd-1 bitshuffle 64K", 8, True, _blosc("zstd", 1, BIT, 64)),
    Candidate("8 trains^T, zstd-1 bitshuffle 256K", 8, True, _blosc("zstd", 1, BIT, 256)),
    Candidate("8 trains^T, zstd-1 bitshuffle 512K", 8, True, _blosc("zstd", 1, BIT, 512)),
    Candidate("8 trains^T, zstd-1 bitshuffle 1M (new default)", 8, True, _blosc("zstd", 1, BIT, 1024)),
    Candidate("8 trains^T, zstd-1 bitshuffle 2M", 8, True, _blosc("zstd", 1, BIT, 2048)),
    Candidate("8 trains^T, lz4hc-1 bitshuffle 1M", 8, True, _blosc("lz4hc", 1, BIT, 1024)),
    Candidate("8 trains^T, zstd-3 bitshuffle 1M", 8, True, _blosc("zstd", 3, BIT, 1024)),
    Candidate("8 trains^T, zstd-1 byteshuffle 1M", 8, True, _blosc("zstd", 1, BYTE, 1024)),
    Candidate("8 trains^T, lz4-5 bitshuffle 1M", 8, True, _blosc("lz4", 5, BIT, 1024)),
    Candidate("8 trains^T, lz4-9 bitshuffle 1M", 8, True, _blosc("lz4", 9, BIT, 1024)),
    Candidate("8 trains^T, zstd-1 (bytes only)", 8, True, lambda: numcodecs.Zstd(level=1)),
    Candidate("16 trains^T, zstd-1 bitshuffle 1M", 16, True, _blosc("zstd", 1, BIT, 1024)),
]
DEFAULT = next(c for c in CANDIDATES if c.label.endswith("(new default)"))
BRIEF = [TODAY, DEFAULT, next(c for c in CANDIDATES if c.label.startswith("8 trains^T, lz4-5"))]


def frames(kind: str, raw: bool, values: str, n_trains: int, n_pulses: int) -> np.ndarray:
    """(train, pulse, *frame) values of one module, exactly as write_run stores them."""
    modno = 1 if kind == "JUNGFRAU" else 3
    n_pulses = min(n_pulses, 16) if kind == "JUNGFRAU" else n_pulses
    return np.stack([np.stack([synth.frame_values(kind, modno, 10000 + t, p, raw=raw,
                                                  values=values) for p in range(n_pulses)])
                     for t in range(n_trains)])


def encode_all(data: np.ndarray, cand: Candidate, codec: numcodecs.abc.Codec) -> list[bytes]:
    """Every inner chunk (one pulse x ``cand.trains`` trains) encoded as to_zarr does:
    transposed (train axis innermost) into one reused, cache-hot buffer, then encoded."""
    out, buf = [], None
    for t in range(0, data.shape[0] - cand.trains + 1, cand.trains):
        for p in range(data.shape[1]):
            c = data[t:t + cand.trains, p]
            if cand.transpose:
                order = (*range(1, c.ndim), 0)
                if buf is None:
                    buf = np.empty(tuple(c.shape[a] for a in order), c.dtype)
                c = transposed(c, order, buf)
            out.append(codec.encode(np.ascontiguousarray(c)))
    return out


def measure(data: np.ndarray, cands: list[Candidate], n_rounds: int) -> dict[str, dict[str, float]]:
    res: dict[str, dict[str, float]] = {}
    rounds: dict[str, list[float]] = {}
    for _ in range(n_rounds):          # interleaved rounds: load changes hit every candidate
        for cand in cands:
            codec = cand.codec()
            t0 = time.thread_time()
            encoded = encode_all(data, cand, codec)
            cpu = time.thread_time() - t0
            nbytes = data[:data.shape[0] // cand.trains * cand.trains].nbytes
            halves = [data[:, :data.shape[1] // 2], data[:, data.shape[1] // 2:]]
            with ThreadPoolExecutor(2) as pool:
                w0 = time.perf_counter()
                list(pool.map(lambda d, cand=cand: encode_all(d, cand, cand.codec()), halves))
                wall2 = time.perf_counter() - w0
            d0 = time.thread_time()
            for e in encoded[:8]:
                codec.decode(e)
            dec = (time.thread_time() - d0) / min(8, len(encoded))
            r = res.setdefault(cand.label, {"cpu": 1e9, "wall2": 1e9, "dec": 1e9})
            r["ratio"] = nbytes / sum(len(e) for e in encoded)
            r["cpu"], r["wall2"] = min(r["cpu"], cpu / nbytes), min(r["wall2"], wall2 / nbytes)
            r["dec"] = min(r["dec"], dec)
            rounds.setdefault(cand.label, []).append(cpu / nbytes)
    for label, r in res.items():     # against the old default's time in the same round
        r["paired"] = float(np.median([base / cpu for base, cpu in zip(
            rounds[TODAY.label], rounds[label], strict=True)]))
    return res


def table(title: str, res: dict[str, dict[str, float]]) -> None:
    base = res[TODAY.label]["cpu"]
    print(f"\n{title}\n")
    print("| layout, codec | ratio | encode 1 core GB/s | vs old default (best; median of "
          "same-round ratios) | 2 threads GB/s | decode one chunk, CPU ms |")
    print("|---|---|---|---|---|---|")
    for label, r in res.items():
        print(f"| {label} | {r['ratio']:.2f} | {1 / r['cpu'] / 1e9:.2f} | "
              f"{base / r['cpu']:.2f}x; {r['paired']:.2f}x | {1 / r['wall2'] / 1e9:.2f} | "
              f"{r['dec'] * 1e3:.1f} |", flush=True)


def entropy_bits(residual: np.ndarray) -> float:
    """Shannon entropy (bits per value) of integer residuals, from their histogram."""
    _, counts = np.unique(residual, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def entropy_bound(data: np.ndarray, kind: str) -> None:
    """Entropy of raw values given their (known) pedestal, per plane, and what it allows."""
    from detstack.synth._kinds import KINDS
    from detstack.synth._values import pedestal, response
    cells = response(KINDS[kind]).memory_cells
    ped = np.stack([pedestal(kind, 0, p % cells) for p in range(data.shape[1])])
    resid = data[..., 1:, :].astype(np.int64) - ped[None, ..., 1:, :]  # no stamp pixels
    planes = [resid[:, :, i] for i in range(resid.shape[2])] if resid.ndim == 5 else [resid]
    h = [entropy_bits(p) for p in planes]
    values = data[..., 1:, :]
    marginal = [entropy_bits(values[:, :, i]) for i in range(len(h))] if resid.ndim == 5 \
        else [entropy_bits(values)]
    h_ped = [entropy_bits(ped[:, i, 1:] if ped.ndim == 4 else ped[:, 1:]) for i in range(len(h))]
    bits = 8 * data.dtype.itemsize
    mean_h, mean_ped = float(np.mean(h)), float(np.mean(h_ped))
    print(f"\nEntropy bound, {kind} raw ({data.dtype}): H(value | pedestal) = "
          + ", ".join(f"{x:.2f}" for x in h) + " bits per pixel and plane "
          f"(pedestals: {mean_ped:.1f} bits each); best lossless ratio {bits / mean_h:.2f}x "
          f"with pedestals known, {bits / (mean_h + mean_ped / 8):.2f}x when each 8-train "
          f"chunk must carry its pedestal, {bits / float(np.mean(marginal)):.2f}x for one "
          "frame per chunk (H(value) = " + ", ".join(f"{x:.2f}" for x in marginal) + " bits)")


def stores(values: str, workdir: Path, rounds: int, run: Path | None = None) -> None:
    """Convert one run with to_zarr in the old and the new default layout (interleaved
    rounds; CPU seconds of the whole process, all threads), then read one frame from each
    store (cold chunk each time). ``run``: an existing raw AGIPD-1M run instead of a new
    2-module one."""
    import zarr

    import detstack
    from detstack.convert import to_zarr
    from detstack.convert.zarr.layout import BloscCodec, BloscShuffle
    if run is None:
        run = workdir / "run"
        synth.write_run(run, "AGIPD1M", modules=[0, 1], n_trains=16, frames_per_train=32,
                        with_control=False, values=values, overwrite=True)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    shape = det["image.data"].shape         # modules, frames, data/gain, slow, fast
    n_mod, n_trains = shape[0], len(det.train_ids)
    n_pulses = shape[1] // n_trains
    nbytes = int(np.prod(shape)) * 2
    old = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.bitshuffle, blocksize=1 << 16)
    layouts = {"old default": {"compressor": old, "shards": 1,
                               "chunks": {"image.data": (1, 1, 1, 2, 512, 128)}},
               "new default": {}}
    urls = {name: workdir / f"{name.replace(' ', '-')}.zarr" for name in layouts}
    best: dict[str, tuple[float, float]] = {}
    per_round: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
    loads = []
    for _ in range(rounds):
        for name, kw in layouts.items():
            c0, w0 = time.process_time(), time.perf_counter()
            to_zarr(det, urls[name], overwrite=True, **kw)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            b = best.get(name, (1e9, 1e9))
            best[name] = (min(b[0], cpu), min(b[1], wall))
            per_round[name].append((cpu, wall))
        loads.append(os.getloadavg()[0])
    print(f"\nto_zarr (all keys; GB of image.data), raw AGIPD, {n_mod} modules x {n_trains} trains x "
          f"{n_pulses} pulses "
          f"({nbytes / 1e6:.0f} MB), {values} values, best of {rounds} interleaved rounds, "
          f"load average {min(loads):.1f}-{max(loads):.1f}:")
    base = best["old default"][0]
    for name, (cpu, wall) in best.items():
        size = sum(f.stat().st_size for f in (urls[name] / "image.data").rglob("*")
                   if f.is_file())
        paired = [(o[0] / n[0], o[1] / n[1]) for o, n in zip(per_round["old default"],
                                                              per_round[name], strict=True)]
        print(f"  {name:12} {nbytes / cpu / 1e9:5.2f} GB/cpu-s ({base / cpu:.2f}x the old "
              f"default; same-round median {np.median([p[0] for p in paired]):.2f}x per "
              f"CPU-second, {np.median([p[1] for p in paired]):.2f}x in wall time), "
              f"{nbytes / wall / 1e9:5.2f} GB/s wall, ratio {nbytes / size:.2f}")
    print("One frame from a local store (zarr-python arr[m, t, p] / detstack get_array on "
          "open_view, median of 20 random frames):")
    rng = np.random.default_rng(0)
    for name, url in urls.items():
        arr = zarr.open_group(str(url), mode="r")["image.data"]
        view = detstack.AGIPD1M(detstack.open_view(url), raw=True)
        t_zarr, t_ds = [], []
        for _ in range(20):
            m, t, p = (int(rng.integers(0, n_mod)), int(rng.integers(0, n_trains)),
                       int(rng.integers(0, n_pulses)))
            t0 = time.perf_counter()
            arr[m, t, p]
            t_zarr.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            view.select_trains(detstack.by_index[t]).get_array(
                "image.data", pulses=detstack.by_index[p:p + 1])
            t_ds.append(time.perf_counter() - t0)
        print(f"  {name:12} zarr-python {np.median(t_zarr) * 1e3:5.1f} ms, get_array "
              f"{np.median(t_ds) * 1e3:5.1f} ms (all {n_mod} modules)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", default="realistic", choices=synth.VALUE_MODELS)
    ap.add_argument("--trains", type=int, default=24)
    ap.add_argument("--pulses", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="raw AGIPD only, no stores")
    ap.add_argument("--stores-only", action="store_true", help="only the to_zarr stores")
    ap.add_argument("--only", nargs="*", default=None,
                    help="candidates whose label contains one of these (and the old default)")
    ap.add_argument("--dir", default="/tmp/bench-codecs", help="where the stores go")
    ap.add_argument("--run", default=None, help="convert this raw AGIPD-1M run in the store "
                    "comparison (default: a new 2-module run of 16 trains x 32 pulses)")
    args = ap.parse_args()
    print(f"value model: {args.values}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (a shared, loaded machine: compare rows, not runs)")
    if args.stores_only:
        return run_stores(args)
    agipd = frames("AGIPD1M", True, args.values, args.trains, args.pulses)
    table(f"Raw AGIPD, one module, {args.trains} trains x {args.pulses} pulses "
          f"({agipd.nbytes / 1e6:.0f} MB), {args.values} values",
          measure(agipd, [c for c in CANDIDATES if c is TODAY or args.only is None
                          or any(o in c.label for o in args.only)], args.rounds))
    if args.values == "realistic":
        entropy_bound(agipd, "AGIPD1M")
    if args.quick:
        return
    for kind, raw, label in (("AGIPD1M", False, "Corrected AGIPD (float32 keV)"),
                             ("LPD1M", True, "Raw LPD"), ("JUNGFRAU", True, "Raw JUNGFRAU")):
        data = frames(kind, raw, args.values, args.trains, args.pulses)
        table(f"{label}, one module, {data.shape[0]} trains x {data.shape[1]} "
              f"{'cells' if kind == 'JUNGFRAU' else 'pulses'} ({data.nbytes / 1e6:.0f} MB)",
              measure(data, BRIEF, args.rounds))
        if raw and args.values == "realistic":
            entropy_bound(data, kind)
    run_stores(args)


def run_stores(args: argparse.Namespace) -> None:
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-codecs-", dir=args.dir))
    try:
        stores(args.values, work, args.rounds, Path(args.run) if args.run else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
