"""Read and write paths at the machine's limit, side by side with the field, one run.

    python benchmarks/bench_paths.py [--trains 16] [--parts h5 zread zframe zwrite] [--dir DIR]

Data: synthetic AGIPD-1M runs (16 modules x ``--trains`` trains x 64 pulses) with the
realistic value model (``synth`` default: per-pixel, per-cell pedestals + noise +
photons in ADU; corrected: float32 keV with noise). The page cache is warm, each run
read back from the disk (``warm``: as a conversion finds its pages; ``zwrite`` before
every round of ``to_zarr``); every
figure is the best of ``--repeat`` runs, in GB/s of decoded array bytes.

* ``h5``: corrected ``image.data`` in shuffle+deflate and deflate files (EuXFEL's
  corrected layout, gzip 1, one frame per chunk). The machine's limit is ``cores x``
  the single-core decode speed (every chunk already in memory, decoded on one thread
  into a fresh array by the fastest installed inflate library, as the reader does). Compared: detstack
  ``get_array``, EXtra-data ``get_array`` with its parallel decompression (zlib-into
  installed) and serial (``EXTRA_NUM_THREADS=1``, what it does without zlib-into),
  plain h5py reading each module's frames.
* ``zread``: the raw run converted by ``to_zarr`` (default codec and layout), read
  whole by detstack (``get_array`` on ``open_view``), tensorstore, zarr-python, and
  zarr-python with the zarrs codec pipeline; plus a dask sum through ``xr.open_zarr``
  with its default chunks and with ``chunks="auto"``.
* ``zframe``: one frame of every module from that store (random frames, every tool in
  turn: detstack ``get_array`` labelled (its detector has read every train's pulse IDs
  once, as after browsing: they are kept per train), the same by a detector that has read
  none (pulse IDs read beside the pixels), detstack unlabelled (``ndarray()``), the
  store's array read directly (``ShardedArray``, no detector layer), tensorstore,
  zarr-python), beside the decode floor (the inner chunks holding that frame, bytes
  already in memory, decoded on one thread by numcodecs' C-Blosc1 and by python-blosc2,
  which detstack's reader uses when installed: ``fast`` extra). With fewer than 8 trains the inner chunks
  hold fewer trains than a default store's (8): use at least 16 for the real figure.
* ``zwrite``: ``to_zarr`` of the raw run (reads the HDF5 files too) against the
  limit ``cores x`` single-core encode speed (detstack's encoder of every inner chunk from
  memory: transposition, blosc, crc32c, on one worker thread; timed in the same rounds as
  the writers, the ratio a median of same-round ratios), and zarr-python, zarrs and
  tensorstore writing the same array (already in memory) with the same codec and shards;
  every writer starts from an absent target (removing the last round's is not timed) and
  with no dirty pages in the page cache, and is timed until its bytes are on disk
  (``os.sync``): ``to_zarr`` writes its shards past the page cache (``O_DIRECT``), the
  others through it, and a writer whose bytes were still in the page cache at the end
  would leave their writing out to the next one.

Every row also gives GB per CPU-second (all threads): on a loaded shared machine the
wall-clock ratios depend on the neighbours; a path whose GB/cpu-s matches the
single-core figure reaches ``cores x`` it once the cores are free.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cputime import cpu_seconds

warnings.simplefilter("ignore")
CORES = len(os.sched_getaffinity(0))


CPU: dict[str, float] = {}   # CPU seconds (all threads) of the best run, by row name


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(wall seconds, result) of the fastest of ``repeat`` runs; its CPU seconds are kept
    for the next ``row``: on a loaded machine, bytes per CPU-second tell the cost."""
    global _last_cpu
    times = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        c0, t0 = cpu_seconds(), time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0, cpu_seconds() - c0))
    wall, _last_cpu = min(times)
    return wall, result


_last_cpu = 0.0
SKIP: set[str] = set()


def warm(folder: Path, from_disk: bool = False) -> None:
    """Read every file of ``folder`` into the page cache. ``from_disk``: drop its pages
    first, so that they come back as a run read from the disk leaves them.

    The pages a writer leaves behind are as small as its writes (synth writes a chunk at
    a time): mapping such a run costs ~10x more kernel time per page than one read from
    the disk, whose readahead fills the cache in large folios (430 + 210 ns against
    45 + 10 ns per 4 KiB page to map and unmap here). A conversion reads its run from the
    disk (an hour of data is larger than any page cache), so a conversion is timed on a
    run read back like this."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                if from_disk:
                    os.fsync(fh.fileno())      # (dirty pages would stay)
                    os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                while fh.read(1 << 24):
                    pass


def ensure_run(folder: Path, raw: bool, layout: str, trains: int) -> Path:
    from detstack import synth
    marker = folder / f".bench-{trains}"
    if not marker.exists():
        print(f"writing {folder} ...", flush=True)
        synth.write_run(folder, "AGIPD1M", raw=raw, n_trains=trains, frames_per_train=64,
                        layout=layout, with_control=False, overwrite=True)
        marker.touch()
    warm(folder, from_disk=True)
    return folder


def row(name: str, seconds: float, nbytes: int, ref: float | None = None,
        note: str = "") -> float:
    """Print wall time, GB/s, ratio to ``ref`` GB/s, and GB per CPU-second."""
    speed = nbytes / seconds / 1e9
    ratio = f"{speed / ref:6.2f}x" if ref else "       "
    per_cpu = nbytes / max(_last_cpu, 1e-9) / 1e9
    print(f"  {name:52} {seconds:7.2f} s {speed:7.2f} GB/s {ratio}  {per_cpu:5.2f} GB/cpu-s "
          f"(load {os.getloadavg()[0]:4.1f}) {note}", flush=True)
    return speed


# -- compressed HDF5 --------------------------------------------------------------------

def raw_chunks(run: Path, inflate: Any = None) -> tuple[list[tuple[int, bytes]], Any, tuple, Any]:
    """Every stored image.data chunk of the run (filter mask, bytes), read into memory,
    and a decoder for them (the reader's, with ``inflate`` or the fastest installed)."""
    import h5py

    from detstack.detectors.deflate import ChunkDecoder
    from detstack.layout import chunk_table
    chunks = []
    for path in sorted(run.glob("CORR-*.h5")):
        with h5py.File(path, "r") as f:
            name = [n for n in f["INSTRUMENT/SPB_DET_AGIPD1M-1/CORR"]][0]
            ds = f[f"INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/{name}/image/data"]
            table = chunk_table(ds)
            n = int(f[f"INDEX/SPB_DET_AGIPD1M-1/CORR/{name}/image/count"][:].sum())
            for c in range(n // table.rows_per_chunk):
                mask, raw = ds.id.read_direct_chunk((c * table.rows_per_chunk, 0, 0))
                chunks.append((mask, raw))
            shape, dtype = table.chunk_shape, ds.dtype
            decoder = ChunkDecoder(table.filters, dtype.itemsize * int(np.prod(shape)),
                                   dtype.itemsize, inflate)
    return chunks, decoder, shape, dtype


def decode_chunks(chunks: list[tuple[int, bytes]], decoder: Any, shape: tuple,
                  dtype: Any) -> np.ndarray:
    """Decode every chunk on this thread into a fresh array, as any reader must."""
    out = np.empty((len(chunks),) + shape, dtype)
    for i, (mask, raw) in enumerate(chunks):
        decoder.decode(raw, mask, out[i])
    return out


def decode_limit(run: Path, inflate: Any = None) -> tuple[float, int]:
    """Seconds to decode every image.data chunk of the run on one thread, and bytes."""
    loaded = raw_chunks(run, inflate)
    seconds, out = best(lambda: decode_chunks(*loaded), 2)
    return seconds, out.nbytes


def bench_h5(base: Path, trains: int, repeat: int) -> None:
    for layout in ("shuffle-deflate", "deflate"):
        bench_h5_layout(ensure_run(base / f"corr-{layout}", False, layout, trains), layout,
                        trains, repeat)


def bench_h5_layout(run: Path, layout: str, trains: int, repeat: int) -> None:
    import h5py

    import detstack
    from detstack.detectors import deflate
    print(f"\ncorrected AGIPD-1M image.data, {layout} (gzip 1), 16 x {trains} trains x 64 "
          f"pulses, {CORES} cores; unshuffle: {deflate.UNSHUFFLE_NAME}")
    for name, inflate, _ in deflate.INFLATERS[1:]:
        s, nbytes = decode_limit(run, inflate)
        row(f"single-core decode, {name}", s, nbytes)
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    key = det["image.data"]
    # interleaved rounds: the single-core limit and our reader with 1, 2 and the default
    # number of threads take turns, so a change of load hits them all
    runs: dict[str, list[tuple[float, float]]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> int:
        gc.collect()
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn()
        runs.setdefault(name, []).append((time.perf_counter() - t0, cpu_seconds() - c0))
        return out if isinstance(out, int) else out.nbytes
    limit_name = f"single-core decode, {deflate.INFLATE_NAME}"
    names = {1: "detstack, 1 thread", 2: "detstack, 2 threads",
             0: "detstack get_array (default threads)"}
    loads = []
    loaded = raw_chunks(run)

    def decode_threads() -> int:       # the limit's work split over one thread per core
        from concurrent.futures import ThreadPoolExecutor
        chunks = loaded[0]
        parts = [chunks[i * len(chunks) // CORES:(i + 1) * len(chunks) // CORES]
                 for i in range(CORES)]
        with ThreadPoolExecutor(CORES) as pool:
            return sum(a.nbytes for a in pool.map(
                lambda part: decode_chunks(part, *loaded[1:]), parts))
    for _ in range(max(repeat, 3)):
        loads.append(os.getloadavg()[0])
        nbytes = timed(limit_name, lambda: decode_chunks(*loaded))
        timed(f"decode-only, {CORES} threads (what the cores give)", decode_threads)
        for n in (1, 2):
            timed(names[n], lambda n=n: key.ndarray(decompress_threads=n))
        timed(names[0], lambda: det.get_array("image.data"))
    global _last_cpu
    fastest: dict[str, tuple[float, float]] = {}
    for name, times in runs.items():
        wall, _last_cpu = fastest[name] = min(times)
        if name == limit_name:
            limit1 = row(name, wall, nbytes)
            limit = CORES * limit1
            print(f"  limit: {CORES} cores x {deflate.INFLATE_NAME} = {limit:.2f} GB/s")
        else:
            row(name, wall, nbytes, limit, "(vs limit)")
    per_cpu = {name: nbytes / cpu for name, (_, cpu) in fastest.items()}
    scaling = [t1 / t2 for (t1, _), (t2, _) in zip(runs[names[1]], runs[names[2]], strict=True)]
    both = f"decode-only, {CORES} threads (what the cores give)"
    print(f"  per CPU-second, {CORES}-thread decode-only / single-core: "
          f"{per_cpu[both] / per_cpu[limit_name]:.2f}x (the machine's own cost of "
          f"parallelism); detstack {CORES} threads / {CORES}-thread decode-only: "
          f"{per_cpu[names[2]] / per_cpu[both]:.2f}x")
    print(f"  per CPU-second, detstack / single-core decode: 1 thread "
          f"{per_cpu[names[1]] / per_cpu[limit_name]:.2f}x, 2 threads "
          f"{per_cpu[names[2]] / per_cpu[limit_name]:.2f}x, default "
          f"{per_cpu[names[0]] / per_cpu[limit_name]:.2f}x; wall-clock speed-up 1 -> 2 "
          f"threads per round: {', '.join(f'{x:.2f}' for x in scaling)} (load average "
          f"{', '.join(f'{x:.1f}' for x in loads)})")
    loaded[0].clear()        # the compressed chunks: free them before the next readers

    import extra_data
    from extra_data.components import AGIPD1M
    edet = AGIPD1M(extra_data.RunDirectory(str(run), parallelize=False))
    s, arr = best(lambda: edet.get_array("image.data"), repeat)
    row("EXtra-data get_array, parallel (zlib-into)", s, arr.nbytes, limit)
    del arr
    os.environ["EXTRA_NUM_THREADS"] = "1"
    s, arr = best(lambda: edet.get_array("image.data"), 1)
    row("EXtra-data get_array, serial (no zlib-into)", s, arr.nbytes, limit)
    del arr, os.environ["EXTRA_NUM_THREADS"]

    def plain() -> np.ndarray:
        files = sorted(run.glob("CORR-*.h5"))
        out = np.empty((len(files), trains * 64, 512, 128), np.float32)
        for i, path in enumerate(files):
            with h5py.File(path, "r") as f:
                name = [n for n in f["INSTRUMENT/SPB_DET_AGIPD1M-1/CORR"]][0]
                ds = f[f"INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/{name}/image/data"]
                ds.read_direct(out[i], np.s_[:trains * 64])
        return out
    s, arr = best(plain, 1)
    row("plain h5py, serial", s, arr.nbytes, limit)
    assert arr.nbytes == nbytes
    del arr


# -- zarr stores ---------------------------------------------------------------------------

def _store(base: Path, trains: int) -> tuple[Path, Path]:
    import detstack
    from detstack.convert import to_zarr
    run = ensure_run(base / "raw", True, "chunked", trains)
    store = base / "raw.zarr"
    if not (store / "zarr.json").exists():
        to_zarr(detstack.AGIPD1M(detstack.RunDirectory(run), raw=True), store, overwrite=True)
    warm(store)
    return run, store


def _blosc_decoders() -> dict[str, Callable[[Any, np.ndarray], Any]]:
    """``decode(blosc frame, out)`` of numcodecs' C-Blosc1 and of the library detstack's
    reader uses (python-blosc2 when installed): the floor is the faster one's."""
    import numcodecs

    from detstack.store import blosc_decode
    codec = numcodecs.Blosc()
    found = {"numcodecs blosc": lambda b, out: codec.decode(b, out=out)}
    if blosc_decode.decoder_name() != "numcodecs":
        found[f"{blosc_decode.decoder_name()}, detstack's"] = blosc_decode.decode_blosc
    return found


def bench_zread(base: Path, trains: int, repeat: int) -> None:
    import tensorstore as ts
    import xarray as xr
    import zarr

    import detstack
    run, store = _store(base, trains)
    arr_path = store / "image.data"
    meta = json.loads((arr_path / "zarr.json").read_text())
    conf = meta["codecs"][0]["configuration"]
    shards = meta["chunk_grid"]["configuration"]["chunk_shape"]
    print(f"\nraw AGIPD-1M image.data from a to_zarr store ({conf['codecs']}, inner chunks "
          f"{conf['chunk_shape']}, shards {shards}), {CORES} cores")
    z = zarr.open_array(str(arr_path), mode="r")

    # single-core decode limit: every inner chunk decoded on one thread (numcodecs, and
    # the library detstack decodes with)
    from detstack.store.zarr_shards import ShardedArray
    fast = ShardedArray.wrap(z, str(arr_path))
    nbytes_all = int(np.prod(z.shape)) * z.dtype.itemsize
    blobs = []
    for shard in sorted(arr_path.glob("c/*/*/0/0/0/0")):
        index = fast._index(str(shard), (0,) * 6)
        data = shard.read_bytes()
        blobs += [data[o:o + n] for o, n in index.tolist() if o != 2**64 - 1]
    one = 0.0
    for name, decode in _blosc_decoders().items():
        def decode_all(decode: Callable[[Any, np.ndarray], Any] = decode) -> np.ndarray:
            out = np.empty((len(blobs),) + z.chunks, z.dtype)   # fresh, as any reader's
            for i, b in enumerate(blobs):
                decode(b, out[i].reshape(-1).view(np.uint8))
            return out
        s, out = best(decode_all, 2)
        one = max(one, row(f"single-core decode ({name}, no un-transpose)", s, out.nbytes))
        del out
    blobs.clear()
    limit = CORES * one
    print(f"  limit: {CORES} cores x the faster single core = {limit:.2f} GB/s")

    dv = detstack.AGIPD1M(detstack.open_view(str(store)), raw=True)
    s, a = best(lambda: dv.get_array("image.data"), repeat)
    ours = row("detstack get_array(open_view(store))", s, a.nbytes, limit, "(vs limit)")
    del a
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(arr_path)}}
    tstore = ts.open(spec, read=True).result()
    s, a = best(lambda: tstore.read().result(), repeat)
    theirs = row("tensorstore read()", s, a.nbytes, limit)
    assert a.nbytes == nbytes_all
    del a
    if "zarr-python" not in SKIP:
        s, a = best(lambda: z[...], repeat)
        row("zarr-python arr[...]", s, a.nbytes, limit)
        del a
    try:
        if "zarrs" in SKIP:
            raise ImportError("left out (--without zarrs)")
        with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
            zz = zarr.open_array(str(arr_path), mode="r")
            s, a = best(lambda: zz[...], repeat)
            row("zarr-python + zarrs pipeline arr[...]", s, a.nbytes, limit)
            del a
    except ImportError as exc:
        print(f"  zarrs: not available ({exc})")
    print(f"  detstack / tensorstore: {ours / theirs:.2f}x (best of each)")
    pairs = []              # interleaved: one load for both in each round
    for _ in range(repeat):
        pair = []
        for fn in (lambda: dv.get_array("image.data"), lambda: tstore.read().result()):
            gc.collect()
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn()
            pair.append((time.perf_counter() - t0, cpu_seconds() - c0))
        pairs.append(pair)
        (dw, dc), (tw, tc) = pair
        print(f"    round: detstack {dw:.2f} s ({dc:.2f} s CPU), tensorstore {tw:.2f} s "
              f"({tc:.2f} s CPU)")
    print(f"  detstack / tensorstore, same-round medians of {repeat}: "
          f"{np.median([t[1] / d[1] for d, t in pairs]):.2f}x per CPU-second, "
          f"{np.median([t[0] / d[0] for d, t in pairs]):.2f}x in wall time "
          f"(load {os.getloadavg()[0]:.1f})")
    for name, opt in (("default", {}), ('chunks="auto"', {"chunks": "auto"})):
        data = xr.open_zarr(str(store), **opt)["image.data"].data
        chunks = data.chunksize
        s, _ = best(lambda data=data: data.sum(dtype=np.uint64).compute(), repeat)
        row(f"xr.open_zarr, {name}: dask sum", s, nbytes_all, limit,
            f"dask chunks {chunks} ({int(np.prod(chunks)) * 2 / 2**20:.0f} MiB)")


def bench_zframe(base: Path, trains: int, repeat: int) -> None:
    """One frame of every module (4 MiB) from the store, random frames, each read by every
    tool in turn; beside them the decode floor: the inner chunks that frame lies in
    (bytes already in memory) decoded on one thread by numcodecs and by the library
    detstack uses."""
    import tensorstore as ts
    import zarr

    import detstack
    from detstack.store.zarr_shards import ShardedArray
    _, store = _store(base, trains)
    arr_path = store / "image.data"
    z = zarr.open_array(str(arr_path), mode="r")
    fast = ShardedArray.wrap(z, str(arr_path))
    tstore = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(arr_path)}},
                     read=True).result()
    dv = detstack.AGIPD1M(detstack.open_view(str(store)), raw=True)
    n_mod, n_trains, n_pulses = z.shape[:3]
    inner = fast.inner
    print(f"\none frame of all {n_mod} modules ({int(np.prod(z.shape[3:])) * 2 * n_mod / 2**20:.0f}"
          f" MiB) from the store (inner chunks {list(inner)}: "
          f"{int(np.prod(inner)) * 2 * n_mod / 2**20:.0f} MiB decoded per frame), {CORES} cores")
    decoders = _blosc_decoders()
    scratch = np.empty(int(np.prod(inner)) * 2, np.uint8)

    def chunks_of(t: int, p: int) -> list[bytes]:
        out = []
        for m in range(n_mod):
            shard = (m, t // fast.shard[1], p // fast.shard[2]) + (0,) * (z.ndim - 3)
            path = fast._shard_path(shard)
            index = fast._index(path, shard)
            pos = np.ravel_multi_index(((t % fast.shard[1]) // inner[1],
                                        (p % fast.shard[2]) // inner[2]), fast.grid[1:3])
            off, n = (int(v) for v in index[pos])
            with open(path, "rb") as f:
                f.seek(off)
                out.append(f.read(n)[:-4])      # without the crc32c
        return out

    def floor(blobs: list[bytes], decode: Callable[[Any, np.ndarray], Any]) -> None:
        for b in blobs:
            decode(b, scratch)

    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(n_trains)), int(rng.integers(n_pulses)))
             for _ in range(10 * repeat + 2)]

    def ours(t: int, p: int) -> Any:
        return dv.select_trains(detstack.by_index[t]).get_array(
            "image.data", pulses=detstack.by_index[p:p + 1])

    dv.frame_labels("pulseId")      # steady state: the IDs of every train read once
    view = detstack.open_view(str(store))
    fresh = [detstack.AGIPD1M(view, raw=True) for _ in picks]

    def cold(t: int, p: int) -> Any:     # a detector that has read no IDs yet
        return fresh.pop().select_trains(detstack.by_index[t]).get_array(
            "image.data", pulses=detstack.by_index[p:p + 1])

    def unlabelled(t: int, p: int) -> Any:
        return dv.select_trains(detstack.by_index[t])["image.data"].select_pulses(
            detstack.by_index[p:p + 1]).ndarray()

    tools: dict[str, Callable[[int, int], Any]] = {
        "detstack get_array(open_view(store)), labelled": ours,
        "  the same, first read of the detector (no IDs known)": cold,
        "detstack ['image.data'].ndarray(), unlabelled": unlabelled,
        "detstack store array (ShardedArray[:, t, p])": lambda t, p: fast[:, t, p],
        "tensorstore arr[:, t, p].read()": lambda t, p: tstore[:, t, p].read().result(),
        "zarr-python arr[:, t, p]": lambda t, p: z[:, t, p]}
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in [*decoders, *tools]}
    warm(store)
    for i, (t, p) in enumerate(picks):
        blobs = chunks_of(t, p)
        sample = {}
        for name, decode in decoders.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            floor(blobs, decode)
            sample[name] = (time.perf_counter() - t0, time.thread_time() - c0)
        for name, fn in tools.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn(t, p)
            sample[name] = (time.perf_counter() - t0, cpu_seconds() - c0)
        if i >= 2:              # the first reads open files and warm caches
            for name, v in sample.items():
                got[name].append(v)
    for name in decoders:
        wall, cpu = (np.median([v[k] for v in got[name]]) * 1e3 for k in (0, 1))
        print(f"  {'decode floor, one thread (' + name + ')':52} {wall:6.1f} ms wall {cpu:6.1f} "
              f"ms CPU; / {CORES} cores: {cpu / CORES:.1f} ms (load {os.getloadavg()[0]:.1f})")
    for name in tools:
        wall, cpu = (np.median([v[k] for v in got[name]]) * 1e3 for k in (0, 1))
        print(f"  {name:52} {wall:6.1f} ms wall {cpu:6.1f} ms CPU (median of {len(got[name])} "
              f"frames; load {os.getloadavg()[0]:.1f})")


def bench_zwrite(base: Path, trains: int, repeat: int) -> None:
    import tensorstore as ts
    import zarr

    import detstack
    from detstack.convert import to_zarr
    from detstack.convert.zarr.layout import chunk_encoder
    run, store = _store(base, trains)
    meta = json.loads((store / "image.data" / "zarr.json").read_text())
    inner = meta["codecs"][0]["configuration"]
    shards = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    data = det.get_array("image.data").values       # (16, trains, 64, 2, 512, 128)
    print(f"\nraw AGIPD-1M to a zarr store ({[c['name'] for c in inner['codecs']]}, inner "
          f"chunks {inner['chunk_shape']}, shards {list(shards)}), {CORES} cores")
    encode = chunk_encoder([c for c in inner["codecs"] if c["name"] != "bytes"], data.dtype)
    ct = inner["chunk_shape"][1]
    picks = inner_chunks(data.shape, ct)

    def encode_on(threads: int) -> Callable[[], None]:
        return encode_from_memory(data, encode, ct, threads)

    def encode_apart(processes: int) -> Callable[[], None]:
        """The same, split over ``processes`` forked processes sharing nothing (no GIL, no
        allocator): what the cores give when each works alone on its part."""
        def run() -> None:
            pids = []
            for i in range(processes):
                pid = os.fork()
                if pid == 0:        # the child: encode its share, then leave at once
                    code = 1
                    try:
                        for m, t, p in picks[i::processes]:
                            encode(data[m:m + 1, t:t + ct, p:p + 1])
                        code = 0
                    finally:
                        os._exit(code)
                pids.append(pid)
            for pid in pids:
                if os.waitpid(pid, 0)[1] != 0:
                    raise RuntimeError("an encoding process failed")
        return run
    from detstack.convert.zarr.blosc_encode import _python_blosc
    print(f"  blosc encoder: {'python-blosc' if _python_blosc(1 << 20) else 'numcodecs'}")
    s, _ = best(encode_on(1), 1)
    one_cpu = data.nbytes / _last_cpu / 1e9      # a first figure, for the rows' x column
    out = base / "write"

    def ours() -> None:
        to_zarr(det, out / "ds.zarr", keys=["image.data"])
    # before each round the run's pages are read back from the disk, as a conversion finds
    # them (see ``warm``; a shared machine's page cache also forgets them within minutes),
    # and what mapping them costs the kernel is measured: it moves with the page cache
    page_ns: list[float] = []

    def from_disk() -> None:
        warm(run, from_disk=True)
        page_ns.append(map_cost(run))
    ours.setup = from_disk  # type: ignore[attr-defined]

    def with_zarr(pipeline: str | None) -> Callable[[], None]:
        def write() -> None:
            conf = {"codec_pipeline.path": pipeline} if pipeline else {}
            with zarr.config.set(conf):
                a = zarr.create_array(str(out / "zp.zarr"), shape=data.shape, dtype=data.dtype,
                                      chunks=shards, compressors=None, filters=None,
                                      serializer=zarr.codecs.ShardingCodec.from_dict(
                                          meta["codecs"][0]), fill_value=0)
                a[...] = data
        write.teardown = lambda: shutil.rmtree(out / "zp.zarr")  # type: ignore[attr-defined]
        write.durable = True  # type: ignore[attr-defined]
        return write

    def with_ts() -> None:
        m = {k: v for k, v in meta.items() if k not in ("attributes", "storage_transformers")}
        t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "ts.zarr")},
                     "metadata": m, "create": True, "delete_existing": True}).result()
        t.write(data).result()

    # every writer starts from an absent target and its output is removed untimed after
    # it (deleting 2 GB of shards took 7-12 s of this shared disk's time)
    for fn, name in ((ours, "ds.zarr"), (with_ts, "ts.zarr")):
        fn.teardown = lambda name=name: shutil.rmtree(out / name)  # type: ignore[attr-defined]
    for fn in (ours, with_ts):   # timed until on disk: see ``interleaved``
        fn.durable = True  # type: ignore[attr-defined]
    single = "single-core encode (every inner chunk, from memory, 1 thread)"
    apart = f"encode-only, {CORES} processes (what the cores give)"
    writers: dict[str, Callable[[], None]] = {
        "detstack to_zarr (image.data, reads the HDF5 too)": ours,
        single: encode_on(1),
        apart: encode_apart(CORES),
        f"encode-only, {CORES} threads": encode_on(CORES),
        "tensorstore write (in memory)": with_ts}
    if "zarr-python" not in SKIP:
        writers["zarr-python arr[...] = data (in memory)"] = with_zarr(None)
    try:
        import zarrs  # noqa: F401
        if "zarrs" in SKIP:
            raise ImportError("left out (--without zarrs)")
        writers["zarr-python + zarrs pipeline (in memory)"] = with_zarr("zarrs.ZarrsCodecPipeline")
    except ImportError as exc:
        print(f"  zarrs: not available ({exc})")
    rounds = interleaved(writers, data.nbytes, repeat, one_cpu)
    first = next(iter(writers))
    vs = [w / (CORES * o[0]) for (w, _), o in zip(rounds[single], rounds[first], strict=True)]
    cpu = [c / o[1] for (_, c), o in zip(rounds[single], rounds[first], strict=True)]
    print(f"  to_zarr against the limit ({CORES} cores x the single-core encode of the same "
          f"round): {np.median(vs):.2f}x in wall time (rounds: "
          f"{', '.join(f'{v:.2f}' for v in vs)}), {np.median(cpu):.2f}x per CPU-second")
    both = [w / o[0] for (w, _), o in zip(rounds[apart], rounds[first], strict=True)]
    print(f"  to_zarr against {CORES} processes encoding apart (same round): "
          f"{np.median(both):.2f}x in wall time (rounds: {', '.join(f'{v:.2f}' for v in both)})")
    print("  the run's pages, read back from the disk before each round: "
          f"{', '.join(f'{ns:.0f}' for ns in page_ns)} ns per 4 KiB page to map and unmap "
          "(the kernel's cost of to_zarr's mapped reads; pages left by a writer: 300-640 here)")
    shutil.rmtree(out, ignore_errors=True)


def map_cost(folder: Path) -> float:
    """ns per 4 KiB page to map (populated) and unmap ``folder``'s files: the kernel's cost
    of ``to_zarr``'s mapped reads, which depends on the page cache's folio sizes."""
    import mmap
    seconds = pages = 0.0
    for f in sorted(folder.glob("*.h5")):
        with open(f, "rb") as fh:
            n = os.fstat(fh.fileno()).st_size // mmap.PAGESIZE * mmap.PAGESIZE
            t = time.perf_counter()
            mmap.mmap(fh.fileno(), n, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ).close()
            seconds += time.perf_counter() - t
            pages += n / 4096
    return 1e9 * seconds / max(pages, 1)


def inner_chunks(shape: tuple[int, ...], ct: int) -> list[tuple[int, int, int]]:
    """(module, first train, pulse) of every inner chunk of ``ct`` trains x 1 pulse."""
    return [(m, t, p) for m in range(shape[0]) for t in range(0, shape[1] - ct + 1, ct)
            for p in range(shape[2])]


def encode_from_memory(data: np.ndarray, encode: Callable[[np.ndarray], Any], ct: int,
                       threads: int) -> Callable[[], None]:
    """Every inner chunk of ``data`` (module, train, pulse, ...) encoded from memory on
    ``threads`` worker threads (as to_zarr's tasks encode: on the main thread numcodecs'
    blosc would use its global context and its own threads); each output dropped at once,
    as to_zarr writes it."""
    picks = inner_chunks(data.shape, ct)

    def run() -> None:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: sum(len(encode(data[m:m + 1, t:t + ct, p:p + 1]))
                                        for m, t, p in picks[i::threads]), range(threads)))
    return run


def interleaved(fns: dict[str, Callable[[], Any]], nbytes: int, repeat: int,
                one_cpu: float) -> dict[str, list[tuple[float, float]]]:
    """Run ``fns`` one after the other in each of ``repeat`` rounds (each round sees one
    load for all; a function's ``setup`` / ``teardown`` attributes run untimed before /
    after it, and the page cache's dirty pages are written out untimed before it; a
    ``durable`` function is timed until its bytes are on disk, ``os.sync``), then print per
    row the medians of wall time, GB/s, GB per CPU-second (all threads; and relative to
    ``one_cpu``, the single-core codec's GB per CPU-second) and, against the first row,
    the medians of the same-round ratios."""
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    loads = []
    for _ in range(repeat):
        for name, fn in fns.items():
            getattr(fn, "setup", lambda: None)()
            os.sync()       # no writer pays for the dirty pages an earlier one left
            gc.collect()
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn()
            if getattr(fn, "durable", False):
                os.sync()   # until the bytes are on disk: buffered writers pay their writeback
            rounds[name].append((time.perf_counter() - t0, cpu_seconds() - c0))
            getattr(fn, "teardown", lambda: None)()
        loads.append(os.getloadavg()[0])
    first = next(iter(fns))
    print(f"  medians of {repeat} interleaved rounds (load {min(loads):.1f}-{max(loads):.1f}); "
          "'first row is': medians of the same-round speed ratios")
    for name, got in rounds.items():
        wall = float(np.median([w for w, _ in got]))
        cpu = float(np.median([c for _, c in got]))
        vs = [(c / o[1], w / o[0]) for (w, c), o in zip(got, rounds[first], strict=True)]
        print(f"  {name:52} {wall:7.2f} s {nbytes / wall / 1e9:7.2f} GB/s "
              f"{nbytes / cpu / 1e9:5.2f} GB/cpu-s = {nbytes / cpu / 1e9 / one_cpu:4.2f}x "
              "single-core codec"
              + ("" if name == first else
                 f"  first row is {np.median([v[0] for v in vs]):.2f}x as fast per CPU-s, "
                 f"{np.median([v[1] for v in vs]):.2f}x in wall time"), flush=True)
    return rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trains", type=int, default=16,
                    help="trains per run (>= 8: a default store holds 8 per inner chunk)")
    ap.add_argument("--parts", nargs="*", default=["h5", "zread", "zframe", "zwrite"])
    ap.add_argument("--dir", default="/tmp/detstack-bench/paths")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--without", nargs="*", default=[], choices=["zarrs", "zarr-python"],
                    help="leave these out (they are slow on the transposed layout)")
    args = ap.parse_args()
    SKIP.update(args.without)
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    print(f"machine: {CORES} cores, load average {os.getloadavg()[0]:.1f}")
    for part in args.parts:
        {"h5": bench_h5, "zread": bench_zread, "zframe": bench_zframe,
         "zwrite": bench_zwrite}[part](
            base, args.trains, args.repeat)


if __name__ == "__main__":
    main()
