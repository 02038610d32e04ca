"""HDF5 views: build, open and read times, against EXtra-data and direct source reads.

    python benchmarks/bench_views_h5.py [--dir /tmp/detstack-bench-h5] [--quick]

1. Scale: a sparse 16-module x 3000-train AGIPD-1M run (64 frames per train, 12
   sequence files per module, made with EXtra-data's mock writer; no pixel data on disk),
   raw and corrected. Times ``to_vds``, ``to_cxi`` and EXtra-data's ``write_virtual_cxi``
   (wall and CPU time of this process), opening the view with h5py and with
   ``detstack.store.open_view``.
2. Read speed: synthetic runs with real pixel data, raw and corrected, of every detector
   kind. Reads the main key of the whole view (and a range of trains) with plain h5py
   into a preallocated array, and the same rows straight from the source files; the
   ratio view/direct is the figure the design targets (>= 0.5). Also the CXI layouts:
   frames-first (the reference layout) and detstack's module-first ``by_module``.
   2b. The mapping forms of ``to_vds(mapping=...)`` on the AGIPD-1M runs: whole-run,
   train-range and one-train reads against the sources.
3. ``materialize`` throughput on one run.

Times are the best of 3 runs, warm page cache; the machine may be shared, so CPU time
is printed next to wall time for the builds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import detstack
from detstack import convert, synth
from detstack.store import open_view

warnings.simplefilter("ignore")

VALUES = "realistic"   # synth value model (say which, with figures)
KINDS = ["AGIPD1M", "AGIPD500K", "LPD1M", "DSSC1M", "JUNGFRAU"]


def best(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU of this process) seconds for one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


# -- 1. scale -------------------------------------------------------------------------------

def make_sparse_run(folder: Path, raw: bool, n_trains: int, per_file: int) -> None:
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import AGIPDModule
    if folder.is_dir() and any(folder.glob("*.h5")):
        return
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "RAW" if raw else "CORR"
    for m in range(16):
        for s in range(n_trains // per_file):
            write_file(str(folder / f"{prefix}-R0001-AGIPD{m:02}-S{s:05}.h5"),
                       [AGIPDModule(f"SPB_DET_AGIPD1M-1/DET/{m}CH0", frames_per_train=64,
                                    raw=raw)],
                       ntrains=per_file, firsttrain=10000 + per_file * s, chunksize=32,
                       format_version="1.0")


def scale_one(base: Path, raw: bool, n_trains: int) -> list[str]:
    from extra_data import RunDirectory as EdRun
    from extra_data import components
    label = "raw" if raw else "corrected"
    run = base / f"sparse-{label}-{n_trains}"
    make_sparse_run(run, raw, n_trains, 250)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=raw)
    view, cxi = base / f"scale-{label}.h5", base / f"scale-{label}.cxi"
    ref = base / f"scale-{label}-ed.cxi"
    w_vds, c_vds = timed(lambda: convert.to_vds(det, view, overwrite=True))
    w_cxi, c_cxi = timed(lambda: convert.to_cxi(det, cxi, overwrite=True))
    ed = components.AGIPD1M(EdRun(str(run), parallelize=False), raw=raw)
    with contextlib.redirect_stdout(io.StringIO()):
        w_ed, c_ed = timed(lambda: ed.write_virtual_cxi(str(ref)))

    def h5_open() -> None:
        with h5py.File(view, "r") as f:
            f["image.data"].shape  # noqa: B018  (opening the dataset is the point)

    t_open = best(h5_open)
    t_view = best(lambda: detstack.AGIPD1M(open_view(view), raw=raw))
    with h5py.File(view, "r") as f:
        maps = f["image.data"].id.get_create_plist().get_virtual_count()
    return [f"AGIPD-1M {label}", f"16 x {n_trains}", f"{w_vds:.2f} ({c_vds:.2f})", f"{maps}",
            f"{t_open:.3f}", f"{t_view:.3f}", f"{w_cxi:.2f} ({c_cxi:.2f})",
            f"{w_ed:.2f} ({c_ed:.2f})"]


def scale(base: Path, n_trains: int) -> list[list[str]]:
    return [scale_one(base, raw, n_trains) for raw in (True, False)]


# -- 2. read speed ----------------------------------------------------------------------------

def make_run(base: Path, kind: str, raw: bool, quick: bool) -> Path:
    """All modules present (one train missing in one module), several sequence files,
    16 frames per train (JUNGFRAU: 16 memory cells, 4 modules); 0.25-1 GiB each."""
    folder = base / f"run-{kind}-{'raw' if raw else 'corr'}{'-q' if quick else ''}-{VALUES}"
    if folder.is_dir() and any(folder.glob("*.h5")):
        return folder
    n_trains = 4 if quick else 8
    if kind == "JUNGFRAU":
        synth.write_run(folder, kind, raw=raw, n_trains=n_trains, n_modules=4, n_cells=16,
                        trains_per_file=n_trains // 2 + 1, missing_trains={2: [10001]},
                        with_control=False, values=VALUES)
    else:
        synth.write_run(folder, kind, raw=raw, n_trains=n_trains, frames_per_train=16,
                        trains_per_file=n_trains // 2 + 1, missing_trains={2: [10001]},
                        with_control=False, values=VALUES)
    return folder


def direct_reader(det: Any, key: str, trains: slice | None = None
                  ) -> tuple[Callable[[], None], int]:
    """Read the key's rows of every module (of some trains) from the source files,
    block by block, into preallocated arrays."""
    fmap = det.group_map(det[key].group)
    per_train = not det.kind.xtdf
    offsets = fmap.offsets(per_train)
    a, b, _ = (trains or slice(None)).indices(len(fmap.train_ids))
    selected = np.zeros(int(offsets[-1]), bool)
    selected[offsets[a]:offsets[b]] = True
    jobs = []
    total = 0
    for m in range(fmap.n_modules):
        src = fmap.sources[m]
        for run in fmap.runs(m, selected, per_train=per_train):
            f = fmap.files[run.file]
            shape, dtype = f.source_keys(src)[key]
            buf = np.empty((run.length,) + tuple(shape[1:]), dtype)
            buf.fill(0)
            total += buf.nbytes
            jobs.append((f.path, f.dataset_path(src, key), run.src_start, buf))
    files: dict[Any, h5py.File] = {}

    def read() -> None:
        for fpath, dpath, start, buf in jobs:
            if fpath not in files:
                files[fpath] = h5py.File(fpath, "r")
            files[fpath][dpath].read_direct(buf, np.s_[start:start + len(buf)])
    return read, total


def view_reader(path: Path, dset: str, sel: Any = ()) -> tuple[Callable[[], None], int]:
    f = h5py.File(path, "r")
    ds = f[dset]
    shape = np.empty(ds.shape, bool)[sel].shape if sel != () else ds.shape
    buf = np.empty(shape, ds.dtype)
    buf.fill(0)

    def read() -> None:
        ds.read_direct(buf, sel if sel != () else None)
    return read, buf.nbytes


def frames_first_read(path: Path, n_frames: int) -> tuple[Callable[[], None], int]:
    f = h5py.File(path, "r")
    ds = f["entry_1/instrument_1/detector_1/data"]
    n = min(n_frames, ds.shape[0])
    buf = np.empty((n,) + ds.shape[1:], ds.dtype)

    def read() -> None:
        ds.read_direct(buf, np.s_[:n])
    return read, buf.nbytes


def reads(base: Path, quick: bool) -> list[list[str]]:
    rows = []
    for kind in KINDS:
        for raw in (True, False):
            run = make_run(base, kind, raw, quick)
            det = getattr(detstack, kind)(detstack.RunDirectory(run), raw=raw)
            key = det.kind.main_key
            view = convert.to_vds(det, base / f"{run.name}.h5", overwrite=True)
            cxi = convert.to_cxi(det, base / f"{run.name}.cxi", overwrite=True)
            d_read, nbytes = direct_reader(det, key)
            v_read, _ = view_reader(view, key)
            n_tr = len(det.train_ids)
            part = slice(n_tr // 3, 2 * n_tr // 3)
            d_part, _ = direct_reader(det, key, part)
            v_part, _ = view_reader(view, key, np.s_[:, part])
            b_read, _ = view_reader(cxi, "entry_1/by_module/data")
            t_direct, t_view = best(d_read), best(v_read)
            t_dpart, t_vpart = best(d_part), best(v_part)
            t_bulk = best(b_read)
            ff_read, ff_bytes = frames_first_read(cxi, 16)
            t_ff = best(ff_read, 1)
            gbs = nbytes / 2**30
            rows.append([f"{kind} {'raw' if raw else 'corr'}", f"{nbytes / 2**20:.0f}",
                         f"{t_direct:.3f} ({gbs / t_direct:.2f})",
                         f"{t_view:.3f} ({gbs / t_view:.2f})",
                         f"{t_direct / t_view:.2f}", f"{t_dpart / t_vpart:.2f}",
                         f"{t_bulk:.3f} ({gbs / t_bulk:.2f})",
                         f"{ff_bytes / 2**30 / t_ff:.3f}"])
    return rows


def mapping_reads(base: Path, quick: bool) -> list[list[str]]:
    """The same run under each ``to_vds(mapping=...)``: whole-run, train-range and one-train
    reads with plain h5py against direct source reads (blocks of 2 trains: several blocks)."""
    rows = []
    for raw in (True, False):
        run = make_run(base, "AGIPD1M", raw, quick)
        det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=raw)
        key = det.kind.main_key
        n_tr = len(det.train_ids)
        part = slice(n_tr // 3, 2 * n_tr // 3)
        d_read, nbytes = direct_reader(det, key)
        d_part, _ = direct_reader(det, key, part)
        d_one, _ = direct_reader(det, key, slice(n_tr // 2, n_tr // 2 + 1))
        t_direct, t_dpart, t_done = best(d_read), best(d_part), best(d_one)
        for mapping in ("per-train", "blocks", "compact"):
            view = convert.to_vds(det, base / f"{run.name}-{mapping}.h5", overwrite=True,
                                  mapping=mapping, block_trains=2)
            with h5py.File(view, "r") as f:
                maps = f["image.data"].id.get_create_plist().get_virtual_count()
            repeat = 1 if mapping == "compact" else 3   # compact bulk reads take long
            v_read, _ = view_reader(view, key)
            v_part, _ = view_reader(view, key, np.s_[:, part])
            v_one, _ = view_reader(view, key, np.s_[:, n_tr // 2:n_tr // 2 + 1])
            t_view, t_vpart, t_vone = best(v_read, repeat), best(v_part, repeat), best(v_one)
            rows.append([f"AGIPD-1M {'raw' if raw else 'corr'}", f"{nbytes / 2**20:.0f}",
                         mapping, f"{maps}", f"{t_view:.3f}", f"{t_direct / t_view:.2f}",
                         f"{t_dpart / t_vpart:.2f}", f"{t_done / t_vone:.2f}"])
    return rows


def materialize_speed(base: Path, quick: bool) -> list[list[str]]:
    run = make_run(base, "AGIPD1M", False, quick)
    view = base / f"{run.name}.h5"
    out = base / "materialized.h5"
    wall, cpu = timed(lambda: convert.materialize(view, out, overwrite=True))
    with h5py.File(view, "r") as f:
        size = f["image.data"].size * f["image.data"].dtype.itemsize
    return [["AGIPD-1M corr view", f"{size / 2**20:.0f}", f"{wall:.2f} ({cpu:.2f})",
             f"{size / 2**20 / wall:.0f}", f"{os.path.getsize(out) / 2**20:.0f}"]]


def table(title: str, head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/detstack-bench-h5", help="scratch folder")
    ap.add_argument("--quick", action="store_true", help="smaller runs (300 trains for scale)")
    ap.add_argument("--clean", action="store_true", help="delete the scratch folder after")
    ap.add_argument("--mappings-only", action="store_true", help="only table 2b")
    args = ap.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    print(f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, {os.cpu_count()} CPUs, "
          f"value model: {VALUES}")
    tables = ["2b"] if args.mappings_only else ["1", "2", "2b", "3"]
    if "1" in tables:
        table("1. Build and open, AGIPD-1M, 64 frames per train, 12 sequence files per module "
              "(seconds; CPU seconds in brackets)",
              ["data", "modules x trains", "to_vds", "image.data mappings", "h5py open",
               "open_view + det", "to_cxi", "EXtra-data write_virtual_cxi"],
              scale(base, 300 if args.quick else 3000))
    if "2" in tables:
        table("2. Whole-run read of the main key with plain h5py, warm cache "
              "(seconds; GiB/s of source data in brackets)",
              ["run", "MiB", "sources direct", "view (5-D)", "view/direct",
               "train range view/direct", "CXI by_module", "CXI frames-first GiB/s (16 frames)"],
              reads(base, args.quick))
    table("2b. Mapping forms (to_vds(mapping=...), block_trains=2), plain h5py reads of the "
          "main key, warm cache; ratios are direct source reads / view reads",
          ["run", "MiB", "mapping", "mappings in image.data", "whole run s", "whole run",
           "train range", "one train"],
          mapping_reads(base, args.quick))
    if "3" in tables:
        table("3. materialize (gzip level 1)",
              ["view", "MiB", "seconds (CPU)", "MiB/s", "file MiB"],
              materialize_speed(base, args.quick))
    if args.clean:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
