"""``detstack info``: what a run folder, run file or view holds (lsxfel for detectors)."""

from __future__ import annotations

import argparse
from typing import Any

from .output import Output, count
from .targets import add_allow_option

HELP = "what a run, file or view holds: detectors, modules, trains, keys, gaps"
EXAMPLES = """\
examples:
  detstack info /gpfs/exfel/exp/SPB/202401/p700000/raw/r0238
  detstack info r0238/RAW-R0238-AGIPD00-S00000.h5        # a single file
  detstack info view.h5 --detail                          # every key, gaps, source files
  detstack info view.parq --json | jq .detectors[0].modules
"""


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP.capitalize() + ".", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter, parents=common)
    p.add_argument("target", metavar="RUN|FILE|VIEW",
                   help="run folder, EuXFEL .h5 file, or a view (.h5/.cxi/.json/.parq/zarr)")
    p.add_argument("--detail", action="store_true",
                   help="list every key, the gaps of every module and every source file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_allow_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from ..store.zarr_store import IncompleteStoreError
    from .errors import flags_for
    from .facts import collection_facts
    from .targets import VIEW, classify, open_target, trust_options
    from .zarr_state import incomplete_facts

    view_kwargs: dict[str, Any] = {}
    if classify(args.target) == VIEW:       # report missing sources rather than refuse
        view_kwargs["check_sources"] = False
        view_kwargs.update(trust_options(args.target, args.allow))
    try:
        opened = open_target(args.target, **view_kwargs)
    except IncompleteStoreError:
        doc = incomplete_facts(args.target)
        out.emit(doc)
        out.result(f"{args.target}: zarr store, incomplete: {doc['blocks_written']} of "
                   f"{doc['blocks']} blocks written; resume with `{doc['resume']}`")
        return 1
    with out.progress():
        doc = collection_facts(opened, detail=args.detail)
    out.emit(doc)
    if not out.json_mode:
        for line in render(doc, detail=args.detail):
            print(flags_for(line))
    return 1 if any("error" in d for d in doc["detectors"]) else 0


def render(doc: dict[str, Any], *, detail: bool = False) -> list[str]:
    """The facts as the lines ``info`` prints."""
    lines = [f"{doc['path']}: {_kind_label(doc)}"]
    if "view" in doc:
        lines += _view_lines(doc["view"])
    if "files" in doc:
        versions = ", ".join(f"{v} ({n})" for v, n in sorted(doc["files"]["format_versions"].items()))
        lines.append(f"  files: {doc['files']['count']}, format version {versions}")
        for f in doc["files"].get("list", []):
            lines.append(f"    {f['name']}  format {f['format_version']}, {count(f['trains'], 'train')}")
    for s in doc["skipped_files"]:
        lines.append(f"  SKIPPED: {s['problem']}")
    tr = doc["trains"]
    span = f" ({tr['first']}-{tr['last']})" if tr["count"] else ""
    lines.append(f"  trains: {tr['count']}{span}")
    if tr.get("time"):
        t = tr["time"]
        secs = f", {t['seconds']:g} s" if t.get("seconds") is not None else ""
        lines.append(f"  time: {t['start']} to {t['end']}{secs} (from {t['from']})")
    src = doc["sources"]
    lines.append(f"  sources: {src['instrument']} instrument, {src['control']} control")
    for name in src.get("list", []):
        lines.append(f"    {name}")
    if not doc["detectors"]:
        lines.append("  no multi-module detector found")
    for det in doc["detectors"]:
        lines += _detector_lines(det, detail=detail)
    return lines


def _kind_label(doc: dict[str, Any]) -> str:
    if "view" in doc:
        view = doc["view"]
        layout = "" if view.get("layout") in (None, "trains") else f", {view['layout']} layout"
        return f"detstack view ({view['form']}{layout})"
    return {"run": "run folder", "file": "run file"}.get(doc["kind"], doc["kind"])


LAYOUT_HELP = {
    "trains": "(module, train, pulse, ...), every train padded to the longest; best when "
              "frame counts are (nearly) constant and you index by pulse",
    "frames": "(module, frame, ...), frames end to end with per-frame train_id/pulse_id/"
              "cell_id, no padding; best for reduced or hit-selected data, and for HDF5 "
              "views of long runs (far fewer mappings: builds several times faster)",
}


def _view_lines(view: dict[str, Any]) -> list[str]:
    layout = view.get("layout") or "trains"
    lines = [f"  layout {layout}: {LAYOUT_HELP.get(layout, '')}".rstrip(": ")]
    origin = (f"proposal {view['proposal']} run {view['run']}"
              if view.get("run") is not None else "a run")
    src = view["sources"]
    if not src.get("needed", True) or not src["count"]:
        lines.append(f"  made from {origin}; self-contained (the source files are not needed)")
        return lines
    lines.append(f"  made from {origin} in {src['folder']}, created {view['created']}")
    if src["missing"] is None:
        lines.append(f"  source files: {src['count']} (remote: run `detstack verify` to check)")
    elif src["missing"] or src["changed"]:
        lines.append(f"  source files: {src['count']}, {src['missing']} MISSING, "
                     f"{src['changed']} CHANGED: run `detstack verify` for the list")
    else:
        lines.append(f"  source files: all {src['count']} present")
    return lines


def _detector_lines(det: dict[str, Any], *, detail: bool) -> list[str]:
    if "error" in det:
        return [f"  {det['class']} {det['name']!r}: CANNOT BE READ: {det['error']}",
                "    (`detstack validate` lists every problem)"]
    mods = det["modules"]
    missing = f"; missing: {_numbers(mods['missing'])}" if mods["missing"] else "; none missing"
    lines = [f"  {det['class']} {det['name']!r} ({det['data']} data): "
             f"{len(mods['present'])} of {mods['of']} modules{missing}"]
    tr = det["trains"]
    lines.append(f"    trains: {tr['count']}" + (f" ({tr['first']}-{tr['last']})" if tr["count"] else "")
                 + f", frames per train {_numbers(det['frames_per_train']) or 0}, "
                 f"{det['frames']} frames")
    for key, k in det["keys"].items():
        dims = ", ".join(f"{d} {n}" for d, n in zip(k["dims"], k["shape"], strict=True))
        lines.append(f"    {key}: ({dims}) {k['dtype']}")
    if not detail and det["n_keys"] > len(det["keys"]):
        lines.append(f"    ... {det['n_keys'] - len(det['keys'])} more keys (--detail lists them)")
    if det["gaps"]:
        worst = sum(g["count"] for g in det["gaps"].values())
        lines.append(f"    gaps: {count(worst, '(module, train) pair')} missing in "
                     f"{count(len(det['gaps']), 'module')}; "
                     f"{count(det['incomplete_trains'], 'train')} incomplete")
        shown = det["gaps"] if detail else dict(list(det["gaps"].items())[:4])
        for m, g in shown.items():
            lines.append(f"      module {m}: {count(g['count'], 'train')} missing: {g['trains']}")
        if len(shown) < len(det["gaps"]):
            lines.append(f"      ... {len(det['gaps']) - len(shown)} more modules (--detail)")
    else:
        lines.append("    gaps: none, every module has every train")
    return lines


def _numbers(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)
