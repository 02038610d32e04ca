"""Real-size runs: open and view an hour of AGIPD-1M, side by side with EXtra-data.

    python benchmarks/bench_scale.py [--trains 1000,3000,10000,30000] [--kinds raw,corrected]
        [--rows NAME,...] [--workdir /tmp/detstack-scale] [--scratch DIR]

Runs are metadata-only synthetic AGIPD-1M runs in the real layout (`synth.write_run(...,
metadata_only=True)`): 16 modules, 64 frames per train, sequence files of 250 trains, pixel
datasets chunked one frame per chunk with every chunk allocated and none written, so the
files are sparse but their chunk indexes are as large as the DAQ's. They are generated once
under --workdir and reused by later invocations.

Every measurement runs in a fresh Python process (imports done before the clock starts);
the table shows the time of the operation and the peak RSS of that process (or of the
largest worker process it started), so each figure belongs to one operation alone. The page cache is warm (the files were just
written or read).

Adding a row: write a function `f(ctx: Context) -> str | None` (it runs in the child; the
clock covers the whole call, so do imports at module level of the function's body before
calling `ctx.start()`), decorate it with `@measurement("row_id", "row label")` and, if it needs
something prepared first (e.g. a view written), pass `prepare=` a function run in the parent
before the child starts (it may itself call `run_child`). The returned string is a note
printed under the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

TRAINS_PER_FILE = 250
FRAMES_PER_TRAIN = 64


@dataclass
class Context:
    """What a measurement knows about the run it measures; passed to the child as JSON."""

    run: str          # the run folder
    kind: str         # "raw" or "corrected"
    trains: int
    workdir: str      # scratch space for outputs (views, caches) of this run
    t0: float = 0.0
    rss0: float = 0.0   # MB resident when the clock started (the opened run, imports)

    def start(self) -> None:
        """Start the clock (call after imports)."""
        self.rss0 = current_rss_mb()
        self.t0 = time.perf_counter()

    @property
    def scratch(self) -> Path:
        path = Path(self.workdir) / "scratch" / f"{self.kind}-{self.trains}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def current_rss_mb() -> float:
    """This process's resident memory now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


@dataclass(frozen=True)
class Measurement:
    id: str       # short name for --rows
    name: str     # the row label
    func: Callable[[Context], str | None]
    prepare: Callable[[Context], None] | None = None
    env: Callable[[Context], dict[str, str]] | None = None
    max_trains: int | None = None   # longer runs are skipped (say why in the row label)


MEASUREMENTS: dict[str, Measurement] = {}


def measurement(id_: str, name: str, *, prepare: Callable[[Context], None] | None = None,
                env: Callable[[Context], dict[str, str]] | None = None,
                max_trains: int | None = None,
                ) -> Callable[[Callable[[Context], str | None]], Callable[[Context], str | None]]:
    """Register a row of the table (rows appear in registration order)."""
    def deco(func: Callable[[Context], str | None]) -> Callable[[Context], str | None]:
        MEASUREMENTS[id_] = Measurement(id_, name, func, prepare, env, max_trains)
        return func
    return deco


# -- environment helpers ------------------------------------------------------------------

def detstack_cache(ctx: Context) -> Path:
    """The detstack metadata cache of this benchmark (XDG_CACHE_HOME of the children)."""
    return Path(ctx.workdir) / "xdg-cache" / f"{ctx.kind}-{ctx.trains}"   # one per column


def detstack_env(ctx: Context) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(detstack_cache(ctx))}


def clear_detstack_cache(ctx: Context) -> None:
    shutil.rmtree(detstack_cache(ctx) / "detstack", ignore_errors=True)


def clear_extra_data_cache(ctx: Context) -> None:
    """EXtra-data keeps its cache in the run folder (karabo_data_map.json)."""
    (Path(ctx.run) / "karabo_data_map.json").unlink(missing_ok=True)


def quiet() -> None:
    import logging
    import warnings
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


# -- rows ---------------------------------------------------------------------------------

@measurement("baseline", "python + imports (baseline)")
def _baseline(ctx: Context) -> str | None:
    import extra_data  # noqa: F401
    import h5py  # noqa: F401
    import numpy  # noqa: F401
    import xarray  # noqa: F401

    import detstack  # noqa: F401
    ctx.start()
    return None


@measurement("ds_open", "detstack RunDirectory, first open", prepare=clear_detstack_cache,
             env=detstack_env)
def _ds_open(ctx: Context) -> str | None:
    import detstack
    quiet()
    ctx.start()
    run = detstack.RunDirectory(ctx.run)
    assert len(run.train_ids) == ctx.trains, len(run.train_ids)
    return f"{len(run.files)} files"


def _ds_warm(ctx: Context) -> None:
    clear_detstack_cache(ctx)
    run_child("ds_open", ctx)


@measurement("ds_open_cached", "detstack RunDirectory, second open (cache)", prepare=_ds_warm, env=detstack_env)
def _ds_open_cached(ctx: Context) -> str | None:
    return _ds_open(ctx)


@measurement("ed_open", "EXtra-data 1.25 RunDirectory, first open", prepare=clear_extra_data_cache)
def _ed_open(ctx: Context) -> str | None:
    import extra_data
    quiet()
    ctx.start()
    run = extra_data.RunDirectory(ctx.run)
    assert len(run.train_ids) == ctx.trains, len(run.train_ids)
    return None


def _ed_warm(ctx: Context) -> None:
    clear_extra_data_cache(ctx)
    run_child("ed_open", ctx)


@measurement("ed_open_cached", "EXtra-data 1.25 RunDirectory, second open (cache)", prepare=_ed_warm)
def _ed_open_cached(ctx: Context) -> str | None:
    try:
        return _ed_open(ctx)
    finally:
        clear_extra_data_cache(ctx)  # EXtra-data wrote it into the run folder; detstack never does


@measurement("ds_det", "detstack RunDirectory (cache) + AGIPD1M(run), index not cached",
             prepare=_ds_warm, env=detstack_env)
def _ds_detector(ctx: Context) -> str | None:
    import detstack
    quiet()
    ctx.start()
    det = detstack.AGIPD1M(detstack.RunDirectory(ctx.run))
    assert det.n_modules == 16, det.n_modules
    return None


def _ds_det_warm(ctx: Context) -> None:
    _ds_warm(ctx)
    run_child("ds_det", ctx)   # reads every index group once and caches it


@measurement("ds_det_cached", "detstack RunDirectory + AGIPD1M(run), both caches warm",
             prepare=_ds_det_warm, env=detstack_env)
def _ds_detector_cached(ctx: Context) -> str | None:
    return _ds_detector(ctx)


@measurement("ed_det", "EXtra-data RunDirectory (cache) + AGIPD1M(run)", prepare=_ed_warm)
def _ed_detector(ctx: Context) -> str | None:
    import extra_data
    from extra_data.components import AGIPD1M
    quiet()
    try:
        ctx.start()
        det = AGIPD1M(extra_data.RunDirectory(ctx.run))
        assert det.n_modules == 16, det.n_modules
    finally:
        clear_extra_data_cache(ctx)
    return None


# -- views: HDF5 virtual view, CXI, zarr manifest ----------------------------------------
# The detector is opened before the clock starts (its open is the rows above); the peak RSS
# is the whole process's, so it includes the opened run.

_CPU0 = [0.0, 0.0]


def _cpu_seconds() -> tuple[float, float]:
    """CPU time of this process and of the worker processes it has waited for."""
    import resource
    return tuple(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def _start(ctx: Context) -> None:
    """Start the clock, and the CPU clock: on a shared machine CPU time is the steadier figure."""
    _CPU0[:] = _cpu_seconds()
    ctx.start()


def _cpu(note: str | None = None) -> str:
    own, workers = (now - then for now, then in zip(_cpu_seconds(), _CPU0, strict=True))
    cpu = f"CPU {own:.1f} s" + (f" + {workers:.1f} s in worker processes" if workers >= 0.05
                                else "")
    return f"{cpu}; {note}" if note else cpu


def _det(ctx: Context):  # noqa: ANN202
    import detstack
    quiet()
    return detstack.AGIPD1M(detstack.RunDirectory(ctx.run))


def _view(ctx: Context, name: str) -> Path:
    return ctx.scratch / name


def _need(row: str, out: str) -> Callable[[Context], None]:
    """prepare=: write the view with the row ``row`` unless it exists."""
    def prepare(ctx: Context) -> None:
        if not _view(ctx, out).exists():
            run_child(row, ctx)
    return prepare


@measurement("vds_build", "to_vds, every key (pixel keys mapping='auto': blocks; "
             "workers=None: 2 processes for long runs)")
def _vds_build(ctx: Context) -> str | None:
    import json

    import h5py

    from detstack.convert import to_vds
    det = _det(ctx)
    _start(ctx)
    out = to_vds(det, _view(ctx, "view.h5"), overwrite=True)
    with h5py.File(out) as f:
        maps = json.loads(f.attrs["detstack_record"])["mappings"]
    pixel = {k: v["count"] for k, v in maps.items() if v["form"] == "blocks"}
    return _cpu(f"blocked keys and mappings {pixel}, {os.path.getsize(out) / 2**20:.0f} MiB file")


@measurement("vds_build_serial", "to_vds(workers=1), every key (blocks built in one process)")
def _vds_build_serial(ctx: Context) -> str | None:
    from detstack.convert import to_vds
    det = _det(ctx)
    _start(ctx)
    out = to_vds(det, _view(ctx, "view-serial.h5"), overwrite=True, workers=1)
    size = os.path.getsize(out) / 2**20
    out.unlink()
    return _cpu(f"{size:.0f} MiB file")


@measurement("vds_compact", "to_vds(mapping='compact'), every key")
def _vds_compact(ctx: Context) -> str | None:
    from detstack.convert import to_vds
    det = _det(ctx)
    _start(ctx)
    to_vds(det, _view(ctx, "compact.h5"), overwrite=True, mapping="compact")
    return _cpu()


@measurement("vds_frames", "to_vds(layout='frames'), every key")
def _vds_frames(ctx: Context) -> str | None:
    from detstack.convert import to_vds
    det = _det(ctx)
    _start(ctx)
    out = to_vds(det, _view(ctx, "frames.h5"), overwrite=True, layout="frames")
    return _cpu(f"{os.path.getsize(out) / 2**20:.0f} MiB file")


@measurement("vds_open", "plain h5py: `h5py.File(view)['image.data']`",
             prepare=_need("vds_build", "view.h5"))
def _vds_open(ctx: Context) -> str | None:
    import h5py
    _start(ctx)
    f = h5py.File(_view(ctx, "view.h5"), "r")
    ds = f["image.data"]
    assert ds.shape[:2] == (16, ctx.trains), ds.shape
    return _cpu()


@measurement("vds_train", "plain h5py: read one train, 16 modules, from the view",
             prepare=_need("vds_build", "view.h5"))
def _vds_train(ctx: Context) -> str | None:
    import h5py
    _start(ctx)
    with h5py.File(_view(ctx, "view.h5"), "r") as f:
        block = f["image.data"][:, ctx.trains // 2]
    assert block.shape[:2] == (16, FRAMES_PER_TRAIN), block.shape
    return _cpu()


@measurement("vds_frames_open", "plain h5py: `h5py.File(frames view)['image.data']`",
             prepare=_need("vds_frames", "frames.h5"))
def _vds_frames_open(ctx: Context) -> str | None:
    import h5py
    _start(ctx)
    f = h5py.File(_view(ctx, "frames.h5"), "r")
    ds = f["image.data"]
    assert ds.shape[:2] == (16, ctx.trains * FRAMES_PER_TRAIN), ds.shape
    return _cpu()


@measurement("vds_frames_train", "plain h5py: read one train, 16 modules, from the frames view",
             prepare=_need("vds_frames", "frames.h5"))
def _vds_frames_train(ctx: Context) -> str | None:
    import h5py
    _start(ctx)
    a = ctx.trains // 2 * FRAMES_PER_TRAIN
    with h5py.File(_view(ctx, "frames.h5"), "r") as f:
        block = f["image.data"][:, a:a + FRAMES_PER_TRAIN]
    assert block.shape[:2] == (16, FRAMES_PER_TRAIN), block.shape
    return _cpu()


@measurement("vds_detstack", "detstack: open_view(view) + AGIPD1M",
             prepare=_need("vds_build", "view.h5"))
def _vds_detstack(ctx: Context) -> str | None:
    import detstack
    quiet()
    _start(ctx)
    det = detstack.AGIPD1M(detstack.open_view(_view(ctx, "view.h5")))
    assert det.n_modules == 16 and len(det.train_ids) == ctx.trains
    return _cpu()


# trains of every module per bulk read (corrected: 512 MB). Each bulk row reads its frames
# once before the clock starts: the sparse run files' holes cost the kernel a zero-filled
# page each on first touch, which would charge whichever row reads a region first.
BULK_TRAINS = 2


def _bulk_note(nbytes: int, ctx: Context) -> str:
    return _cpu(f"{nbytes / 2**20 / (time.perf_counter() - ctx.t0):.0f} MB/s")


@measurement("vds_bulk", f"plain h5py: bulk read of {BULK_TRAINS} trains x 16 modules "
             "from the view", prepare=_need("vds_build", "view.h5"))
def _vds_bulk(ctx: Context) -> str | None:
    import h5py
    t0 = ctx.trains // 3
    with h5py.File(_view(ctx, "view.h5"), "r") as f:
        ds = f["image.data"]
        ds[:, t0:t0 + BULK_TRAINS]      # warm the page cache (see BULK_TRAINS)
        _start(ctx)
        block = ds[:, t0:t0 + BULK_TRAINS]
    assert block.shape[:3] == (16, BULK_TRAINS, FRAMES_PER_TRAIN), block.shape
    return _bulk_note(block.nbytes, ctx)


@measurement("vds_frames_bulk", f"plain h5py: bulk read of {BULK_TRAINS} trains x 16 modules "
             "from the frames view", prepare=_need("vds_frames", "frames.h5"))
def _vds_frames_bulk(ctx: Context) -> str | None:
    import h5py
    a = ctx.trains // 3 * FRAMES_PER_TRAIN
    with h5py.File(_view(ctx, "frames.h5"), "r") as f:
        ds = f["image.data"]
        ds[:, a:a + BULK_TRAINS * FRAMES_PER_TRAIN]      # warm the page cache
        _start(ctx)
        block = ds[:, a:a + BULK_TRAINS * FRAMES_PER_TRAIN]
    assert block.shape[:2] == (16, BULK_TRAINS * FRAMES_PER_TRAIN), block.shape
    return _bulk_note(block.nbytes, ctx)


@measurement("src_bulk", f"plain h5py: the same {BULK_TRAINS} trains x 16 modules read "
             "from the run files directly")
def _src_bulk(ctx: Context) -> str | None:
    import h5py
    det = _det(ctx)
    fmap = det.frame_map
    t0 = ctx.trains // 3
    reads = []   # (path, dataset, first row, rows): where the view's frames are stored
    for m in range(fmap.n_modules):
        for t in range(t0, t0 + BULK_TRAINS):
            f = fmap.files[int(fmap.file[m, t])]
            reads.append((str(f.path), f.dataset_path(fmap.sources[m], "image.data"),
                          int(fmap.first[m, t]), int(fmap.counts[m, t])))
    files: dict[str, h5py.File] = {}
    for warm in (True, False):      # the first pass warms the page cache
        nbytes = 0
        if not warm:
            _start(ctx)
        for path, dset, first, count in reads:
            if path not in files:
                files[path] = h5py.File(path, "r")
            nbytes += files[path][dset][first:first + count].nbytes
    return _bulk_note(nbytes, ctx)


@measurement("cxi_build", "to_cxi (CXI frames-first + by_module)")
def _cxi_build(ctx: Context) -> str | None:
    from detstack.convert import to_cxi
    det = _det(ctx)
    _start(ctx)
    to_cxi(det, _view(ctx, "view.cxi"), overwrite=True)
    return _cpu()


@measurement("ed_cxi", "EXtra-data AGIPD1M(run).write_virtual_cxi")
def _ed_cxi(ctx: Context) -> str | None:
    import extra_data
    from extra_data.components import AGIPD1M
    quiet()
    det = AGIPD1M(extra_data.RunDirectory(ctx.run))
    _start(ctx)
    try:
        det.write_virtual_cxi(str(_view(ctx, "ed.cxi")))
    finally:
        clear_extra_data_cache(ctx)
        _view(ctx, "ed.cxi").unlink(missing_ok=True)
    return _cpu()


@measurement("cxi_open", "plain h5py: open CXI `entry_1/data_1/data`",
             prepare=_need("cxi_build", "view.cxi"))
def _cxi_open(ctx: Context) -> str | None:
    import h5py
    _start(ctx)
    f = h5py.File(_view(ctx, "view.cxi"), "r")
    assert f["entry_1/data_1/data"].shape[0] == ctx.trains * FRAMES_PER_TRAIN
    return _cpu()


@measurement("man_build", "to_manifest, Parquet (.parq), every key")
def _man_build(ctx: Context) -> str | None:
    import resource

    from detstack.convert import to_manifest
    det = _det(ctx)
    shutil.rmtree(_view(ctx, "view.parq"), ignore_errors=True)   # not part of the build
    _start(ctx)
    out = to_manifest(det, _view(ctx, "view.parq"))
    mib = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)   # modules are built in workers
    return _cpu(f"workers {kids.ru_utime + kids.ru_stime:.1f} s CPU; {mib:.1f} MiB of "
                f"references; load average {os.getloadavg()[0]:.1f}")


JSON_MAX_TRAINS = 3000   # ~100 bytes of JSON per chunk: 30,000 corrected trains is 10 GB


@measurement("man_json", f"to_manifest, JSON, every key (up to {JSON_MAX_TRAINS:,} trains)",
             max_trains=JSON_MAX_TRAINS)
def _man_json(ctx: Context) -> str | None:
    from detstack.convert import to_manifest
    det = _det(ctx)
    _start(ctx)
    out = to_manifest(det, _view(ctx, "view.json"), overwrite=True)
    mib = out.stat().st_size / 2**20
    out.unlink()
    return _cpu(f"{mib:.0f} MiB of JSON")


@measurement("man_open", "plain zarr: open manifest `image.data`",
             prepare=_need("man_build", "view.parq"))
def _man_open(ctx: Context) -> str | None:
    import zarr
    quiet()
    os.chdir(ctx.scratch)   # relative Parquet references resolve against the working folder
    _start(ctx)
    group = zarr.open_group("reference://", mode="r", storage_options={
        "fo": str(_view(ctx, "view.parq")), "remote_protocol": "file"})
    assert group["image.data"].shape[:2] == (16, ctx.trains)
    return _cpu()


@measurement("man_frame", "plain zarr: open manifest + read one frame",
             prepare=_need("man_build", "view.parq"))
def _man_frame(ctx: Context) -> str | None:
    import zarr
    quiet()
    os.chdir(ctx.scratch)
    _start(ctx)
    group = zarr.open_group("reference://", mode="r", storage_options={
        "fo": str(_view(ctx, "view.parq")), "remote_protocol": "file"})
    opened = time.perf_counter()
    import pandas  # noqa: F401 - fsspec reads the records with it: timed apart
    imported = time.perf_counter()
    frame = group["image.data"][5, ctx.trains // 2, 7]
    assert frame.shape[-2:] == (512, 128)
    return _cpu(f"open {opened - ctx.t0:.2f} s, pandas import {imported - opened:.2f} s, "
                f"frame {time.perf_counter() - imported:.2f} s; {_records(ctx)}")


def _records(ctx: Context) -> str:
    """The record size and file count of the measured manifest."""
    meta = json.loads((_view(ctx, "view.parq") / ".zmetadata").read_text())
    files = sum(1 for p in _view(ctx, "view.parq").rglob("refs.*.parq"))
    return f"{meta.get('record_size', '?'):,} references per record file, {files:,} files"


@measurement("man_view", "detstack open_view of the Parquet manifest + one frame",
             prepare=_need("man_build", "view.parq"))
def _man_view(ctx: Context, imported: str = "first imports of zarr, pandas, xarray, dask "
              "included") -> str | None:
    import numpy as np

    import detstack
    from detstack.store import open_view
    quiet()
    _start(ctx)
    det = detstack.AGIPD1M(open_view(_view(ctx, "view.parq")))
    opened, cpu_opened = time.perf_counter() - ctx.t0, time.process_time()
    tid = int(det.train_ids[ctx.trains // 2])
    frame = det.select_trains(detstack.by_id[[tid]]).get_array("image.data", pulses=np.s_[7:8])
    assert frame.shape[-2:] == (512, 128)
    return _cpu(f"open {opened:.2f} s, frame {time.perf_counter() - ctx.t0 - opened:.3f} s "
                f"(CPU {time.process_time() - cpu_opened:.3f} s; {imported}); load average "
                f"{os.getloadavg()[0]:.1f}")


@measurement("man_view_imported", "detstack open_view of the Parquet manifest + one frame, "
             "libraries imported first (as the plain zarr rows import zarr)",
             prepare=_need("man_build", "view.parq"))
def _man_view_imported(ctx: Context) -> str | None:
    import dask.array  # noqa: F401 - xarray imports it when it makes the first DataArray
    import pandas  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import detstack.detectors  # noqa: F401
    import detstack.store.manifest  # noqa: F401
    return _man_view(ctx, "libraries imported before the clock")


# -- running ------------------------------------------------------------------------------

def run_child(name: str, ctx: Context) -> dict[str, object]:
    """Run one measurement in a fresh process: {'seconds', 'rss_mb', 'note'} or {'error'}."""
    m = MEASUREMENTS[name]
    env = dict(os.environ)
    if m.env:
        env.update(m.env(ctx))
    payload = json.dumps({"name": name, "ctx": asdict(ctx)})
    proc = subprocess.run([sys.executable, __file__, "--child", payload], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child(payload: str) -> None:
    import resource
    spec = json.loads(payload)
    ctx = Context(**spec["ctx"])
    note = MEASUREMENTS[spec["name"]].func(ctx)
    seconds = time.perf_counter() - ctx.t0
    # the largest process: this one, or a worker it started and waited for (EXtra-data's pool)
    rss = max(resource.getrusage(who).ru_maxrss
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "start_mb": ctx.rss0, "note": note}))


def ensure_run(workdir: Path, kind: str, trains: int) -> tuple[Path, dict[str, object]]:
    """The metadata-only run of this size (generated in a subprocess the first time)."""
    folder = workdir / f"agipd1m-{kind}-{trains}"
    marker = workdir / f"agipd1m-{kind}-{trains}.json"
    import fcntl
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / ".generate.lock", "w") as lock:  # benchmarks sharing a workdir
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and folder.is_dir():
            return folder, json.loads(marker.read_text())
        return folder, _generate(folder, marker, kind, trains)


def _generate(folder: Path, marker: Path, kind: str, trains: int) -> dict[str, object]:
    code = (
        "import json, sys, time\n"
        "from detstack import synth\n"
        "t = time.perf_counter()\n"
        f"files = synth.write_run({str(folder)!r}, 'AGIPD1M', raw={kind == 'raw'}, "
        f"n_trains={trains}, frames_per_train={FRAMES_PER_TRAIN}, "
        f"trains_per_file={TRAINS_PER_FILE}, metadata_only=True, overwrite=True)\n"
        "import os\n"
        "disk = sum(os.stat(p).st_blocks * 512 for p in files)\n"
        "print(json.dumps({'files': len(files), 'seconds': time.perf_counter() - t, "
        "'disk_mb': disk / 2**20}))\n"
    )
    print(f"writing {folder} ...", file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    marker.write_text(json.dumps(info))
    return info


def fmt(result: dict[str, object]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    return f"{result['seconds']:.2f} s, {result['rss_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trains", default="1000,3000,10000,30000")
    parser.add_argument("--kinds", default="raw,corrected")
    parser.add_argument("--rows", default="", help="comma-separated row ids (default all)")
    parser.add_argument("--workdir", default="/tmp/detstack-scale", type=Path)
    parser.add_argument("--scratch", type=Path, help="outputs and caches (default: --workdir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = [r.strip() for r in args.rows.split(",") if r.strip()] or list(MEASUREMENTS)
    unknown = [r for r in rows if r not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {list(MEASUREMENTS)}")
    kinds = [k.strip() for k in args.kinds.split(",")]
    trains = [int(t) for t in args.trains.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)

    columns: list[tuple[str, Context, dict[str, object]]] = []
    for kind in kinds:
        for n in trains:
            folder, info = ensure_run(args.workdir, kind, n)
            ctx = Context(str(folder), kind, n, str(args.scratch or args.workdir))
            columns.append((f"{kind} {n:,} trains ({info['files']} files)", ctx, info))
    results: dict[str, list[str]] = {}
    raw: dict[str, list[dict[str, object] | None]] = {}
    notes: list[str] = []
    for row in rows:
        m = MEASUREMENTS[row]
        name = m.name
        cells = []
        raw[row] = []   # a row asked for twice: the summary uses its last round
        for label, ctx, _ in columns:
            if m.max_trains is not None and ctx.trains > m.max_trains:
                cells.append("-")
                raw[row].append(None)
                continue
            if m.prepare:
                m.prepare(ctx)
            res = run_child(row, ctx)
            cells.append(fmt(res))
            raw[row].append(res if "error" not in res else None)
            if res.get("note"):
                notes.append(f"{name}, {label}: {res['note']}")
            print(f"  {name} | {label}: {fmt(res)}", file=sys.stderr, flush=True)
        results[name] = cells

    print("value model: none (metadata-only runs: pixel chunks allocated, never written)")
    print("| operation | " + " | ".join(label for label, _, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    gen = [f"{info['seconds']:.0f} s, {info['disk_mb']:.0f} MB disk" for _, _, info in columns]
    print("| synth.write_run(metadata_only=True) | " + " | ".join(gen) + " |")
    for name, cells in results.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    for note in notes:
        print(f"- {note}")
    for line in summary(raw, [ctx for _, ctx, _ in columns]):
        print(f"- {line}")


def memory_vs_length(name: str, kind: str, n0: int, r0: dict[str, object], n1: int,
                     r1: dict[str, object]) -> str:
    """How peak RSS grows with run length: MB per 1,000 trains between the shortest and
    the longest run, of the whole process and of the operation alone (peak minus the RSS
    when the clock started: the opened run and the imports)."""
    per = 1000 / (n1 - n0)
    peak = (float(r1["rss_mb"]) - float(r0["rss_mb"])) * per
    line = f"memory vs run length, {name}, {kind}: peak {peak:+.1f} MB per 1,000 trains"
    if r0.get("start_mb") and r1.get("start_mb"):
        own = [float(r["rss_mb"]) - float(r["start_mb"]) for r in (r0, r1)]
        opened = (float(r1["start_mb"]) - float(r0["start_mb"])) * per
        line += (f" (the operation alone {own[0]:.0f} MB at {n0:,} trains, {own[1]:.0f} MB at "
                 f"{n1:,}: {(own[1] - own[0]) * per:+.1f} MB per 1,000; the opened run before "
                 f"it {opened:+.1f})")
    return line


def summary(raw: dict[str, list[dict[str, object] | None]], ctxs: list[Context]) -> list[str]:
    """Peak RSS at the shortest and longest run of each kind (is memory independent of
    run length?), and the view's bulk-read speed relative to reading the sources."""
    out = []
    for row, results in raw.items():
        for kind in sorted({c.kind for c in ctxs}):
            have = [(c.trains, r) for c, r in zip(ctxs, results, strict=True)
                    if c.kind == kind and r is not None]
            if len(have) >= 2:
                (n0, r0), (n1, r1) = min(have, key=lambda x: x[0]), max(have, key=lambda x: x[0])
                out.append(f"peak RSS, {MEASUREMENTS[row].name}, {kind}: {r0['rss_mb']:.0f} MB "
                           f"at {n0:,} trains, {r1['rss_mb']:.0f} MB at {n1:,}")
                out.append(memory_vs_length(MEASUREMENTS[row].name, kind, n0, r0, n1, r1))
    for row, what in (("vds_bulk", "the view"), ("vds_frames_bulk", "the frames view")):
        if row not in raw or "src_bulk" not in raw:
            continue
        for c, v, d in zip(ctxs, raw[row], raw["src_bulk"], strict=True):
            if v is not None and d is not None:
                out.append(f"bulk read, {c.kind} {c.trains:,} trains: {what} reads at "
                           f"{float(d['seconds']) / float(v['seconds']):.2f}x the speed of "
                           "the run files")
    return out


if __name__ == "__main__":
    main()
