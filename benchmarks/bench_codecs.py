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
given their pedestal, hence the best ratio any lossless codec can reach), and times reads of
one frame from real stores written by ``to_zarr`` in the old and the new default layout.
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
from detstack.convert.zarr_layout import transposed

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
    Candidate("8 trains^T, zstd-1 bitshuffle 64K", 8, True, _blosc("zstd", 1, BIT, 64)),
    Candidate("8 trains^T, zstd-1 bitshuffle 1M (new default)", 8, True, _blosc("zstd", 1, BIT, 1024)),
    Candidate("8 trains^T, zstd-3 bitshuffle 1M", 8, True, _blosc("zstd", 3, BIT, 1024)),
    Candidate("8 trains^T, zstd-1 byteshuffle 1M", 8, True, _blosc("zstd", 1, BYTE, 1024)),
    Candidate("8 trains^T, lz4-5 bitshuffle 1M", 8, True, _blosc("lz4", 5, BIT, 1024)),
    Candidate("8 trains^T, lz4-9 bitshuffle 1M", 8, True, _blosc("lz4", 9, BIT, 1024)),
    Candidate("8 trains^T, zstd-1 (bytes only)", 8, True, lambda: numcodecs.Zstd(level=1)),
    Candidate("16 trains^T, zstd-1 bitshuffle 1M", 16, True, _blosc("zstd", 1, BIT, 1024)),
]
BRIEF = [TODAY, CANDIDATES[6], CANDIDATES[9]]


def frames(kind: str, raw: bool, values: str, n_trains: int, n_pulses: int) -> np.ndarray:
    """(train, pulse, *frame) values of one module, exactly as write_run stores them."""
    modno = 1 if kind == "JUNGFRAU" else 3
    n_pulses = min(n_pulses, 16) if kind == "JUNGFRAU" else n_pulses
    return np.stack([np.stack([synth.frame_values(kind, modno, 10000 + t, p, raw=raw,
                                                  values=values) for p in range(n_pulses)])
                     for t in range(n_trains)])


def chunks_of(data: np.ndarray, cand: Candidate) -> list[np.ndarray]:
    """The inner chunks (as the encoder sees them) of one pulse x ``trains`` trains each."""
    out = []
    for t in range(0, data.shape[0] - cand.trains + 1, cand.trains):
        for p in range(data.shape[1]):
            c = data[t:t + cand.trains, p]
            out.append(transposed(c, (*range(1, c.ndim), 0)) if cand.transpose
                       else np.ascontiguousarray(c))
    return out


def measure(data: np.ndarray, cands: list[Candidate], rounds: int) -> dict[str, dict[str, float]]:
    res: dict[str, dict[str, float]] = {}
    for _ in range(rounds):          # interleaved rounds: load changes hit every candidate
        for cand in cands:
            codec = cand.codec()
            t0 = time.thread_time()
            parts = chunks_of(data, cand)
            encoded = [codec.encode(c) for c in parts]
            cpu = time.thread_time() - t0
            nbytes = sum(c.nbytes for c in parts)
            with ThreadPoolExecutor(2) as pool:
                w0 = time.perf_counter()
                list(pool.map(lambda c, codec=codec: codec.encode(c), chunks_of(data, cand)))
                wall2 = time.perf_counter() - w0
            d0 = time.thread_time()
            for e in encoded[:8]:
                codec.decode(e)
            dec = (time.thread_time() - d0) / min(8, len(encoded))
            r = res.setdefault(cand.label, {"cpu": 1e9, "wall2": 1e9, "dec": 1e9})
            r["ratio"] = nbytes / sum(len(e) for e in encoded)
            r["cpu"], r["wall2"] = min(r["cpu"], cpu / nbytes), min(r["wall2"], wall2 / nbytes)
            r["dec"] = min(r["dec"], dec)
    return res


def table(title: str, res: dict[str, dict[str, float]]) -> None:
    base = res[TODAY.label]["cpu"]
    print(f"\n{title}\n")
    print("| layout, codec | ratio | encode 1 core GB/s | vs old default | 2 threads GB/s "
          "| decode one chunk, CPU ms |")
    print("|---|---|---|---|---|---|")
    for label, r in res.items():
        print(f"| {label} | {r['ratio']:.2f} | {1 / r['cpu'] / 1e9:.2f} | "
              f"{base / r['cpu']:.2f}x | {1 / r['wall2'] / 1e9:.2f} | {r['dec'] * 1e3:.1f} |",
              flush=True)


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


def store_reads(values: str, workdir: Path) -> None:
    """Read one frame from to_zarr stores (old and new default layout), cold chunk each time."""
    import zarr

    import detstack
    from detstack.convert import to_zarr
    from detstack.convert.zarr_layout import BloscCodec, BloscShuffle
    run = workdir / "run"
    synth.write_run(run, "AGIPD1M", modules=[0, 1], n_trains=16, frames_per_train=32,
                    with_control=False, values=values, overwrite=True)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    old = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.bitshuffle, blocksize=1 << 16)
    layouts = {"old default": {"compressor": old, "shards": 1,
                               "chunks": {"image.data": (1, 1, 1, 2, 512, 128)}},
               "new default": {}}
    print("\nOne frame from a local store (zarr-python arr[m, t, p] / detstack get_array on "
          "open_view, median of 20 random frames):")
    rng = np.random.default_rng(0)
    for name, kw in layouts.items():
        url = workdir / f"{name.replace(' ', '-')}.zarr"
        to_zarr(det, url, keys=["image.data"], overwrite=True, **kw)
        arr = zarr.open_group(str(url), mode="r")["image.data"]
        view = detstack.AGIPD1M(detstack.open_view(url), raw=True)
        t_zarr, t_ds = [], []
        for _ in range(20):
            m, t, p = (int(rng.integers(0, 2)), int(rng.integers(0, 16)),
                       int(rng.integers(0, 32)))
            t0 = time.perf_counter()
            arr[m, t, p]
            t_zarr.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            view.select_trains(detstack.by_index[t]).get_array(
                "image.data", pulses=detstack.by_index[p:p + 1])
            t_ds.append(time.perf_counter() - t0)
        size = sum(f.stat().st_size for f in url.rglob("*") if f.is_file())
        print(f"  {name:12} zarr-python {np.median(t_zarr) * 1e3:5.1f} ms, get_array "
              f"{np.median(t_ds) * 1e3:5.1f} ms (both modules), store {size / 1e6:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", default="realistic", choices=synth.VALUE_MODELS)
    ap.add_argument("--trains", type=int, default=16)
    ap.add_argument("--pulses", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="raw AGIPD only, no store reads")
    args = ap.parse_args()
    print(f"value model: {args.values}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (a shared, loaded machine: compare rows, not runs)")
    agipd = frames("AGIPD1M", True, args.values, args.trains, args.pulses)
    table(f"Raw AGIPD, one module, {args.trains} trains x {args.pulses} pulses "
          f"({agipd.nbytes / 1e6:.0f} MB), {args.values} values",
          measure(agipd, CANDIDATES, args.rounds))
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
    work = Path(tempfile.mkdtemp(prefix="bench-codecs-"))
    try:
        store_reads(args.values, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
