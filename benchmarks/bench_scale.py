"""Real-size runs: open and view an hour of AGIPD-1M, side by side with EXtra-data.

    python benchmarks/bench_scale.py [--trains 1000,3000,10000,30000] [--kinds raw,corrected]
        [--rows NAME,...] [--workdir /tmp/detstack-scale]

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

    def start(self) -> None:
        """Start the clock (call after imports)."""
        self.t0 = time.perf_counter()

    @property
    def scratch(self) -> Path:
        path = Path(self.workdir) / "scratch" / f"{self.kind}-{self.trains}"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Measurement:
    id: str       # short name for --rows
    name: str     # the row label
    func: Callable[[Context], str | None]
    prepare: Callable[[Context], None] | None = None
    env: Callable[[Context], dict[str, str]] | None = None


MEASUREMENTS: dict[str, Measurement] = {}


def measurement(id_: str, name: str, *, prepare: Callable[[Context], None] | None = None,
                env: Callable[[Context], dict[str, str]] | None = None
                ) -> Callable[[Callable[[Context], str | None]], Callable[[Context], str | None]]:
    """Register a row of the table (rows appear in registration order)."""
    def deco(func: Callable[[Context], str | None]) -> Callable[[Context], str | None]:
        MEASUREMENTS[id_] = Measurement(id_, name, func, prepare, env)
        return func
    return deco


# -- environment helpers ------------------------------------------------------------------

def detstack_cache(ctx: Context) -> Path:
    """The detstack metadata cache of this benchmark (XDG_CACHE_HOME of the children)."""
    return Path(ctx.workdir) / "xdg-cache"


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


@measurement("ds_det", "detstack RunDirectory + AGIPD1M(run)", prepare=_ds_warm, env=detstack_env)
def _ds_detector(ctx: Context) -> str | None:
    import detstack
    quiet()
    ctx.start()
    det = detstack.AGIPD1M(detstack.RunDirectory(ctx.run))
    assert det.n_modules == 16, det.n_modules
    return None


@measurement("ed_det", "EXtra-data RunDirectory + AGIPD1M(run)", prepare=_ed_warm)
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
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "note": note}))


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
            ctx = Context(str(folder), kind, n, str(args.workdir))
            columns.append((f"{kind} {n:,} trains ({info['files']} files)", ctx, info))
    results: dict[str, list[str]] = {}
    notes: list[str] = []
    for row in rows:
        m = MEASUREMENTS[row]
        name = m.name
        cells = []
        for label, ctx, _ in columns:
            if m.prepare:
                m.prepare(ctx)
            res = run_child(row, ctx)
            cells.append(fmt(res))
            if res.get("note"):
                notes.append(f"{name}, {label}: {res['note']}")
            print(f"  {name} | {label}: {fmt(res)}", file=sys.stderr, flush=True)
        results[name] = cells

    print("| operation | " + " | ".join(label for label, _, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    gen = [f"{info['seconds']:.0f} s, {info['disk_mb']:.0f} MB disk" for _, _, info in columns]
    print("| synth.write_run(metadata_only=True) | " + " | ".join(gen) + " |")
    for name, cells in results.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
