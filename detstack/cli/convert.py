"""``detstack convert``: one detector of a run as one array per key, in any view form.

One grammar for every form: ``detstack convert RUN OUT [--to FORM] [selection] [options]``;
the form follows from OUT's name unless ``--to`` says otherwise, and an option that does
not apply to the chosen form is refused rather than ignored.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from typing import Any

from .args import json_object, key_list, module_list, positive_int, seconds, train_range
from .output import Output, count

HELP = "write a view of a run's detector: HDF5 virtual view, CXI, zarr manifest or zarr store"
DESCRIPTION = """\
Write one array per key shaped (module, train, pulse, ...) (JUNGFRAU: cell) as
  vds       HDF5 virtual view (.h5): no copy, any HDF5 tool reads it
  cxi       virtual CXI 1.5 file (.cxi) for CrystFEL-style tools
  manifest  zarr manifest (.json, .parq): kerchunk references, no copy
  zarr      compressed, sharded Zarr v3 store (folder, .zip, s3://...): a copy
  icechunk  Icechunk repository of virtual references (.icechunk)
The form follows from OUT's name (.h5, .cxi, .json/.parq, .zarr/.zip, .icechunk) unless
--to names it."""
EXAMPLES = """\
examples:
  detstack convert r0238 r0238.h5                       # HDF5 virtual view
  detstack convert r0238 r0238.cxi --min-modules 12
  detstack convert r0238 r0238.parq --modules 0-7 --trains 10000:10500
  detstack convert r0238 r0238.zarr --raw               # a compressed copy
  detstack convert r0238 r0238.zarr --resume            # finish an interrupted copy
  detstack convert r0238 s3://bucket/r0238.zarr --storage-options '{"anon": false}'
  detstack convert r0238 r0238.zarr --scheduler tcp://10.0.0.1:8786
"""


@dataclass(frozen=True)
class Form:
    """One output form: its writer, the names that imply it, the options it takes."""

    writer: str
    suffixes: tuple[str, ...]
    options: frozenset[str]


FORMS: dict[str, Form] = {
    "vds": Form("to_vds", (".h5", ".hdf5"), frozenset({"absolute", "keys", "layout", "mapping"})),
    "cxi": Form("to_cxi", (".cxi",), frozenset()),
    "manifest": Form("to_manifest", (".json", ".parq", ".parquet"),
                     frozenset({"absolute", "skip_unsupported", "keys", "layout"})),
    "zarr": Form("to_zarr", (".zarr", ".zip"),
                 frozenset({"resume", "scheduler", "scheduler_timeout", "storage_options",
                            "workers", "keys", "layout", "lossy"})),
    "icechunk": Form("to_icechunk", (".icechunk",),
                     frozenset({"skip_unsupported", "keys", "layout"})),
}
LABELS = {"vds": "HDF5 virtual view", "cxi": "virtual CXI file", "manifest": "zarr manifest",
          "zarr": "zarr store", "icechunk": "Icechunk repository"}
#: options of one form only, as (dest, flag, value when not given)
FORM_OPTIONS = [("keys", "--keys", None), ("layout", "--layout", None), ("lossy", "--lossy", None),
                ("mapping", "--mapping", None),
                ("absolute", "--absolute", False), ("skip_unsupported", "--skip-unsupported", False),
                ("resume", "--resume", False), ("scheduler", "--scheduler", None),
                ("scheduler_timeout", "--scheduler-timeout", None),
                ("storage_options", "--storage-options", None), ("workers", "--workers", None)]


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("convert", help=HELP, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter, parents=common)
    p.add_argument("run", metavar="RUN", help="run folder (or one EuXFEL .h5 file)")
    p.add_argument("out", metavar="OUT", help="output file, folder or URL")
    p.add_argument("--to", choices=sorted(FORMS), help="output form (default: from OUT's name)")
    sel = p.add_argument_group("what to convert")
    sel.add_argument("--detector", metavar="NAME", help="detector name, if the run holds several")
    sel.add_argument("--modules", type=module_list, metavar="LIST",
                     help="module numbers, e.g. 0,1,2 or 0-7 (default: all)")
    sel.add_argument("--min-modules", type=positive_int, default=1, metavar="N",
                     help="keep trains where at least N modules have data (default 1)")
    sel.add_argument("--trains", type=train_range, metavar="A:B",
                     help="train IDs A to B (B excluded; A: and :B work too), or one train A")
    sel.add_argument("--keys", type=key_list, metavar="LIST",
                     help="keys to write, e.g. image.data,image.pulseId (default: every key "
                     "all modules have; CXI: its fixed set)")
    raw = sel.add_mutually_exclusive_group()
    raw.add_argument("--raw", dest="raw", action="store_const", const=True, default=None,
                     help="use raw data")
    raw.add_argument("--corrected", dest="raw", action="store_const", const=False,
                     help="use corrected data")
    sel.add_argument("--exc-suspect-trains", action="store_true",
                     help="leave out train IDs flagged as suspect")
    opt = p.add_argument_group("output")
    opt.add_argument("--overwrite", action="store_true", help="replace an existing output")
    opt.add_argument("--absolute", action="store_true",
                     help="vds, manifest: refer to source files by absolute path")
    opt.add_argument("--skip-unsupported", action="store_true",
                     help="manifest, icechunk: leave out keys that cannot be referenced exactly")
    opt.add_argument("--layout", choices=["trains", "frames"],
                     help="vds, manifest, zarr, icechunk: trains = (module, train, pulse, ...) padded to "
                     "the longest train (default); frames = (module, frame, ...), no padding "
                     "(reduced or hit-selected data)")
    opt.add_argument("--mapping", choices=["auto", "blocks", "per-train", "compact"],
                     help="vds: how pixel keys are mapped (default auto: per-train for short "
                     "runs, blocks of trains for long ones)")
    opt.add_argument("--lossy", metavar="MODE",
                     help="zarr, corrected data: 'photons:E' (round to photons of energy E, "
                     "error <= E/2) or 'bits:N' (keep N mantissa bits)")
    opt.add_argument("--resume", action="store_true",
                     help="zarr: finish an interrupted conversion")
    opt.add_argument("--scheduler", metavar="ADDRESS", help="zarr: dask.distributed scheduler")
    opt.add_argument("--scheduler-timeout", type=seconds, metavar="S",
                     help="zarr: seconds to wait for the scheduler (default 10)")
    opt.add_argument("--storage-options", type=json_object, metavar="JSON",
                     help='zarr: fsspec options as JSON, e.g. \'{"endpoint_url": "http://..."}\'')
    opt.add_argument("--workers", "--threads", dest="workers", type=positive_int, metavar="N",
                     help="zarr: processes copying data (default: one per core, at most 8)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def choose_form(args: argparse.Namespace) -> str:
    """The form from ``--to`` or OUT's name; options of other forms are refused."""
    form = args.to
    if form is None:
        name = args.out.lower().rstrip("/")
        form = next((f for f, spec in FORMS.items() if name.endswith(spec.suffixes)), None)
        if form is None:
            raise ValueError(f"cannot tell the output form from the name {args.out!r}: pass "
                             f"--to {'|'.join(FORMS)}, or end it in .h5, .cxi, .json, .parq, "
                             ".zarr, .zip or .icechunk")
    allowed = FORMS[form].options
    for dest, flag, unset in FORM_OPTIONS:
        if getattr(args, dest) != unset and dest not in allowed:
            users = [f for f, spec in FORMS.items() if dest in spec.options]
            raise ValueError(f"{flag} applies to --to {' or '.join(users)}, not to --to {form}")
    return form


def select_detector(args: argparse.Namespace, data: Any) -> Any:
    """The detector and train selection the arguments ask for; empty selections fail."""
    from ..convert.plan import as_detector
    from ..errors import EmptySelectionError
    from ..run.selection import ById

    det_kwargs: dict[str, Any] = {"min_modules": args.min_modules}
    if args.modules is not None:
        det_kwargs["modules"] = args.modules
    if args.raw is not None:
        det_kwargs["raw"] = args.raw
    det = as_detector(data, args.detector, **det_kwargs)
    if args.trains is None:
        return det
    have = det.train_ids
    with warnings.catch_warnings():     # "nothing selected": the error below says it all
        warnings.simplefilter("ignore", UserWarning)
        chosen = det.select_trains(ById(args.trains))
    if not chosen.train_ids:
        span = f"{have[0]}-{have[-1]}" if have else "none"
        raise EmptySelectionError(f"--trains {_spec(args.trains)} selects none of the "
                                  f"{len(have)} trains of {det.detector_name} ({span})")
    return chosen


def _spec(sel: slice | list[int]) -> str:
    if isinstance(sel, slice):
        return f"{'' if sel.start is None else sel.start}:{'' if sel.stop is None else sel.stop}"
    return str(sel[0])


def writer_kwargs(form: str, args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"overwrite": args.overwrite}
    for name in ("keys", "layout", "lossy", "mapping"):      # only when asked: library defaults apply
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if form in ("vds", "manifest"):
        kwargs["relative"] = not args.absolute
    if form in ("manifest", "icechunk") and args.skip_unsupported:
        kwargs["on_unsupported"] = "skip"
    if form == "zarr":
        kwargs.update(resume=args.resume, storage_options=args.storage_options,
                      workers=args.workers)
        if args.scheduler:
            kwargs["client"] = connect(args.scheduler, args.scheduler_timeout or 10.0)
    return kwargs


def connect(address: str, timeout: float) -> Any:
    """A dask.distributed client, or a one-line error when the scheduler does not answer."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise TimeoutError(f"the dask scheduler at {address} did not answer within "
                           f"{timeout:g} s ({type(exc).__name__}); is it running? "
                           "(--scheduler-timeout waits longer)") from exc


def run(args: argparse.Namespace, out: Output) -> int:
    from .. import convert
    from .targets import VIEW, classify, open_target

    form = choose_form(args)
    if classify(args.run) == VIEW:
        raise ValueError(f"{args.run} is a view; convert the run it was made from (a view "
                         "can be archived with `detstack archive VIEW OUT`)")
    args.interrupt_hint = ("run again with --resume" if form == "zarr"
                           else "nothing was written")
    t0 = time.perf_counter()
    with out.progress():
        opened = open_target(args.run, inc_suspect_trains=not args.exc_suspect_trains)
        det = select_detector(args, opened.data)
        kwargs = writer_kwargs(form, args)
        try:
            getattr(convert, FORMS[form].writer)(det, args.out, **kwargs)
        finally:
            if "client" in kwargs:
                kwargs["client"].close()
    doc = summary(form, args, opened, det, time.perf_counter() - t0)
    out.emit(doc)
    out.result(summary_line(doc))
    return 0


def summary(form: str, args: argparse.Namespace, opened: Any, det: Any,
            elapsed: float) -> dict[str, Any]:
    slots = {det.module_slot(m) for m in det.modules}
    base = det.kind.modno_base
    missing = [s + base for s in range(det.n_modules) if s not in slots]
    return {"output": args.out, "form": form, "run": args.run,
            "detector": det.detector_name, "class": type(det).__name__,
            "modules": {"present": det.modules, "missing": missing, "of": det.n_modules},
            "trains": len(det.train_ids), "frames": det.frame_map.n_frames()
            * det._frames_per_entry,
            "skipped_files": [{"path": w.path, "problem": str(w)} for w in opened.skipped],
            "seconds": round(elapsed, 3)}


def summary_line(doc: dict[str, Any]) -> str:
    mods = doc["modules"]
    parts = [f"{len(mods['present'])} of {mods['of']} modules"
             + (f", missing {', '.join(map(str, mods['missing']))}" if mods["missing"] else ""),
             count(doc["trains"], "train"), count(doc["frames"], "frame")]
    if doc["skipped_files"]:
        names = ", ".join(s["path"].rsplit("/", 1)[-1] for s in doc["skipped_files"][:3])
        parts.append(f"{count(len(doc['skipped_files']), 'unusable file')} skipped: {names}")
    return (f"Wrote {LABELS[doc['form']]} of {doc['detector']} ({'; '.join(parts)}) to "
            f"{doc['output']} in {doc['seconds']:.1f} s")
