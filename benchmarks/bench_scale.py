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

Memory vs run length: the summary gives each row's peak RSS growth per 1,000 trains
between the shortest and the longest run. What still grows, measured by the rows
mem_structures and h5_mapping: the opened run (frame map 12 bytes per (module, train), the
files' train IDs 8-9, the rest per file: ~29 bytes per (module, train) in all, 0.46 MB per
1,000 AGIPD-1M trains, plus what malloc keeps of the open's freed temporaries), and
HDF5's ~25 KB per mapping of a virtual dataset being created, inherent to HDF5 (two
hyperslab selections of fixed size per mapping, copied while the dataset is created): the
writers bound it by nesting datasets of more than 128 mappings in blocks
(convert/vds/nested.py).

The rows live in benchmarks/scale/, one module per thing measured (rows_open: opening the run;
rows_vds: the HDF5 view; rows_cxi: the CXI layout; rows_manifest: the zarr manifest; rows_memory: where memory goes); this
file is the runner (command line, one fresh process per cell, the table and its summary).

Adding a row: in the module of what it measures, write a function `f(ctx: Context) -> str | None` (it runs in the child; the
clock covers the whole call, so do imports at module level of the function's body before
calling `ctx.start()`), decorate it with `@measurement("row_id", "row label")` and, if it needs
something prepared first (e.g. a view written), pass `prepare=` a function run in the parent
before the child starts (it may itself call `run_child`). The returned string is a note
printed under the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scale import load_rows
from scale.process import child, run_child
from scale.registry import MEASUREMENTS, Context
from scale.report import fmt, summary
from scale.runs import ensure_run


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


if __name__ == "__main__":
    load_rows()
    main()
