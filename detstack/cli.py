"""The ``detstack`` command: demo, info and validate runs."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .detectors.identify import identify_multimod_detectors
from .errors import DetstackError
from .run.collection import DataCollection, RunDirectory

DESCRIPTION = """\
European XFEL multi-module detector runs as one (module, train, pulse, y, x) array.

  detstack demo                 write a small synthetic AGIPD-1M run and read it back
  detstack info RUN             what a run folder holds: trains, sources, detectors
  detstack validate RUN         check every file of a run folder and report problems
  detstack convert RUN OUT --to vds|cxi|manifest|zarr
                                one array per key, (module, train, pulse, y, x)
  detstack verify VIEW          check that a view's source files are present and unchanged
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
        counts = np.unique(det.frame_map.train_counts()) * det._frames_per_entry
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
    if not args.no_convert:
        demo_views(det, out, arr)
    return 0


def demo_views(det: Any, out: Path, expected: Any) -> None:
    """Convert the demo run to every view form and read each back through the same API."""
    from . import convert
    from .detectors import AGIPD1M
    from .store import open_view

    forms = [("HDF5 virtual view", "to_vds", out / "view.h5"),
             ("virtual CXI", "to_cxi", out / "view.cxi"),
             ("zarr manifest", "to_manifest", out / "run" / "view.json"),
             ("zarr store", "to_zarr", out / "view.zarr")]
    for label, writer, target in forms:
        t0 = time.perf_counter()
        getattr(convert, writer)(det, target, overwrite=True)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        view_det = AGIPD1M(open_view(target), raw=True)
        got = view_det.get_array("image.data", pulses=np.s_[:4])
        same = bool((got.values == expected.values).all()) and got.dims == expected.dims
        _say(f"{label:18} {target.name:10} written in {t_write:5.2f} s, read back in "
             f"{time.perf_counter() - t0:5.2f} s: {'identical' if same else 'DIFFERENT'}")
        if not same:
            raise RuntimeError(f"{label} read back different data")


def cmd_info(args: argparse.Namespace) -> int:
    if Path(args.run).is_dir() and not (Path(args.run) / "zarr.json").exists():
        run = RunDirectory(args.run)
    else:
        from .store import open_view
        run = open_view(args.run)
    _say(f"{args.run}:")
    describe(run)
    record = getattr(run, "record", None)
    if isinstance(record, dict):
        _say(f"  view ({record.get('form')}), layout {record.get('layout', 'trains')}: "
             + LAYOUT_HELP.get(record.get("layout", "trains"), ""))
    return 0


LAYOUT_HELP = {"trains": "(module, train, pulse, ...), trains padded to the longest",
               "frames": "(module, frame, ...), frames end to end, per-frame train_id/pulse_id"}


def cmd_validate(args: argparse.Namespace) -> int:
    from .run.files import RunFile

    folder = Path(args.run)
    names = sorted(p for p in folder.glob("*.h5") if p.name.lower() != "overview.h5")
    problems: list[str] = []
    files = []
    for path in names:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                files.append(RunFile(path))
            problems += [str(w.message) for w in caught]
        except DetstackError as exc:
            problems.append(str(exc))
    for f in files:
        tids = f.train_ids
        if len(tids) > 1 and (np.diff(tids.astype(np.int64)) <= 0).any():
            problems.append(f"{f.path}: train IDs do not strictly increase")
        if not f.validity.all():
            bad = tids[~f.validity][:5].tolist()
            problems.append(f"{f.path}: {int((~f.validity).sum())} suspect train IDs "
                            f"(e.g. {bad}); open with inc_suspect_trains=False to drop them")
    if files:
        try:
            DataCollection(files)
        except DetstackError as exc:
            problems.append(str(exc))
    for p in problems:
        _say(f"PROBLEM: {p}")
    _say(f"{len(names)} files checked, {len(problems)} problems")
    return 1 if problems or not names else 0


def _trains(spec: str | None) -> Any:
    if not spec:
        return None
    start, _, stop = spec.partition(":")
    return slice(int(start) if start else None, int(stop) if stop else None)


class ProgressBar:
    """A one-line progress bar on stderr (the library itself never prints)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        print(f"\r{self.label} [{bar:30}] {done}/{total} ({rate:.1f}/s)", end="",
              file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr, flush=True)


def cmd_convert(args: argparse.Namespace) -> int:
    from . import convert
    from .convert.plan import as_detector
    from .run.selection import ById

    source = RunDirectory(args.run, inc_suspect_trains=not args.exc_suspect_trains)
    det_kwargs: dict[str, Any] = {"min_modules": args.min_modules}
    if args.modules:
        det_kwargs["modules"] = [int(m) for m in args.modules.split(",")]
    if args.raw is not None:
        det_kwargs["raw"] = args.raw
    det = as_detector(source, args.detector, **det_kwargs)
    trains = _trains(args.trains)
    if trains is not None:
        det = det.select_trains(ById(trains))
    kwargs: dict[str, Any] = {"overwrite": args.overwrite}
    if args.to != "cxi":        # CXI files are frame-first: always the frame layout
        kwargs["layout"] = args.layout
    if args.to == "vds":
        kwargs["relative"] = not args.absolute
        if args.mapping:
            kwargs["mapping"] = args.mapping
    elif args.to == "manifest":
        kwargs["relative"] = not args.absolute
        if args.skip_unsupported:
            kwargs["on_unsupported"] = "skip"
    elif args.to == "zarr":
        kwargs.update(resume=args.resume, progress=ProgressBar("converting"))
        if args.storage_options:
            kwargs["storage_options"] = json.loads(args.storage_options)
        if args.scheduler:
            from distributed import Client
            kwargs["client"] = Client(args.scheduler)
    t0 = time.perf_counter()
    writer = getattr(convert, f"to_{args.to}")
    try:
        writer(det, args.out, **kwargs)
    finally:
        if "client" in kwargs:
            kwargs["client"].close()
    _say(f"Wrote {args.to} view of {det.detector_name} ({len(det.modules)} modules, "
         f"{len(det.train_ids)} trains) to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .store.verify import verify_view
    report = verify_view(args.view)
    for line in report.lines():
        _say(line)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detstack", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write a synthetic AGIPD-1M run, open and read it")
    demo.add_argument("--out", help="folder for the demo output (default: a new temp folder)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run")
    demo.add_argument("--no-convert", action="store_true",
                      help="only write and read the run, skip converting it to views")
    demo.set_defaults(func=cmd_demo)
    info = sub.add_parser("info", help="summarise a run folder")
    info.add_argument("run", help="run folder with EuXFEL .h5 files, or a view (file or URL)")
    info.set_defaults(func=cmd_info)
    val = sub.add_parser("validate", help="check the files of a run folder")
    val.add_argument("run", help="run folder with EuXFEL .h5 files")
    val.set_defaults(func=cmd_validate)
    conv = sub.add_parser("convert", help="write a view of a run's detector",
                          description="Write one array per key shaped (module, train, pulse, "
                          "y, x) (JUNGFRAU: cell) as an HDF5 virtual view, a virtual CXI file, "
                          "a zarr manifest (.json/.parq) or a compressed zarr store (any "
                          "fsspec URL).")
    conv.add_argument("run", help="run folder with EuXFEL .h5 files")
    conv.add_argument("out", help="output file, or URL for --to zarr")
    conv.add_argument("--to", required=True, choices=["vds", "cxi", "manifest", "zarr"])
    conv.add_argument("--detector", help="detector name, if the run holds several")
    conv.add_argument("--modules", help="comma-separated module numbers (default: all)")
    conv.add_argument("--min-modules", type=int, default=1,
                      help="keep trains where at least N modules have data (default 1)")
    conv.add_argument("--trains", help="train ID range A:B (B excluded)")
    conv.add_argument("--layout", choices=["trains", "frames"], default="trains",
                      help="trains: (module, train, pulse, ...), padded to the longest train; "
                      "frames: (module, frame, ...), no padding (reduced or hit-selected data)")
    raw = conv.add_mutually_exclusive_group()
    raw.add_argument("--raw", dest="raw", action="store_const", const=True, default=None,
                     help="use raw data")
    raw.add_argument("--corrected", dest="raw", action="store_const", const=False,
                     help="use corrected data")
    conv.add_argument("--exc-suspect-trains", action="store_true",
                      help="drop train IDs flagged as suspect")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing output")
    conv.add_argument("--absolute", action="store_true",
                      help="refer to source files by absolute path (default: relative)")
    conv.add_argument("--skip-unsupported", action="store_true",
                      help="manifest: skip keys that cannot be referenced exactly")
    conv.add_argument("--resume", action="store_true",
                      help="zarr: continue an interrupted conversion")
    conv.add_argument("--scheduler", help="zarr: dask.distributed scheduler address")
    conv.add_argument("--mapping", choices=["auto", "blocks", "per-train", "compact"],
                      help="vds: how pixel keys are mapped (default auto; see README)")
    conv.add_argument("--storage-options", metavar="JSON",
                      help='zarr: fsspec options as JSON, e.g. \'{"endpoint_url": "http://..."}\'')
    conv.set_defaults(func=cmd_convert)
    ver = sub.add_parser("verify", help="check a view's source files")
    ver.add_argument("view", help="view file or URL")
    ver.set_defaults(func=cmd_verify)
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
