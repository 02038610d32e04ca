"""The ``detstack`` command: demo, info and validate runs."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .detectors.identify import identify_multimod_detectors
from .errors import DetstackError
from .run.collection import DataCollection, RunDirectory

DESCRIPTION = """\
European XFEL multi-module detector runs as one (module, train, pulse, y, x) array.

  detstack demo                 write a small synthetic AGIPD-1M run and read it back
  detstack info RUN             what a run folder holds: trains, sources, detectors
  detstack validate RUN         check every file of a run folder and report problems
"""


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def describe(run: DataCollection) -> None:
    """Print trains, sources and the detectors found, with their array shapes."""
    tids = run.train_ids
    span = f"{tids[0]}..{tids[-1]}" if tids else "none"
    _say(f"  {len(run.files)} files, {len(tids)} trains ({span})")
    _say(f"  {len(run.instrument_sources)} instrument sources, "
         f"{len(run.control_sources)} control sources")
    found = identify_multimod_detectors(run)
    if not found:
        _say("  no multi-module detector found")
    for name, cls in sorted(found, key=lambda nc: nc[0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = cls(run, name)
        kd = det[det.kind.main_key]
        counts = np.unique(det.frame_map.train_counts())
        avail = det.frame_map.present
        _say(f"  {cls.__name__} {name!r}: modules {det.modules} of {det.n_modules}")
        _say(f"    {len(det.train_ids)} trains, frames per train {counts.tolist()}, "
             f"{int((~avail).sum())} (module, train) pairs missing")
        _say(f"    {det.kind.main_key}: shape {kd.shape} {kd.dtype} "
             f"({kd.dtype.itemsize * int(np.prod(kd.shape)) / 1e9:.2f} GB)")


def cmd_demo(args: argparse.Namespace) -> int:
    from . import synth
    from .detectors import AGIPD1M

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="detstack-demo-"))
    run_dir = out / "run"
    t0 = time.perf_counter()
    files = synth.demo_run(run_dir, overwrite=args.overwrite)
    _say(f"Wrote a synthetic AGIPD-1M run: {len(files)} files in {run_dir} "
         f"({time.perf_counter() - t0:.1f} s)")
    run = RunDirectory(run_dir)
    _say(f"Opened {run_dir}:")
    describe(run)
    det = AGIPD1M(run, raw=True)
    t0 = time.perf_counter()
    arr = det.get_array("image.data", pulses=np.s_[:4])
    _say(f"get_array('image.data', pulses=np.s_[:4]): {dict(arr.sizes)} {arr.dtype} "
         f"in {time.perf_counter() - t0:.2f} s")
    data = arr.sel(data_gain=0) if "data_gain" in arr.dims else arr
    _say(f"  mean photon count {float(data.mean()):.3f}; "
         f"module {det.modules[0]} train {det.train_ids[0]} pulse "
         f"{int(arr.pulse[0])} sum {int(data[0, 0, 0].sum())}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    run = RunDirectory(args.run)
    _say(f"{args.run}:")
    describe(run)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = RunDirectory(args.run)
    problems = [str(w.message) for w in caught]
    for src in sorted(run.all_sources):
        try:
            run.keys_for_source(src)
        except DetstackError as exc:
            problems.append(str(exc))
    for p in problems:
        _say(f"PROBLEM: {p}")
    _say(f"{len(run.files)} files checked, {len(problems)} problems")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detstack", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write a synthetic AGIPD-1M run, open and read it")
    demo.add_argument("--out", help="folder for the demo output (default: a new temp folder)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run")
    demo.set_defaults(func=cmd_demo)
    info = sub.add_parser("info", help="summarise a run folder")
    info.add_argument("run", help="run folder with EuXFEL .h5 files")
    info.set_defaults(func=cmd_info)
    val = sub.add_parser("validate", help="check the files of a run folder")
    val.add_argument("run", help="run folder with EuXFEL .h5 files")
    val.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (DetstackError, FileExistsError, ValueError) as exc:
        print(f"detstack: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
