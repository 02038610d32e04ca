"""``detstack verify``: are the files a view reads present and unchanged?"""

from __future__ import annotations

import argparse
from typing import Any

from .args import json_object
from .output import Output
from .targets import add_allow_option

HELP = "check that a view's source files are present and unchanged (--full: every frame)"
EXAMPLES = """\
examples:
  detstack verify view.h5
  detstack verify r0238.zarr --full      # every block against the checksums of conversion
  detstack verify view.json --json
  detstack verify s3://bucket/r0238.zarr --storage-options '{"anon": true}'
"""


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help=HELP, description=HELP.capitalize() + ".",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       parents=common)
    p.add_argument("view", help="view file or URL (.h5, .cxi, .json, .parq, zarr store)")
    p.add_argument("--full", action="store_true",
                   help="also read every frame and compare it with the sources (views, "
                   "manifests) or the checksums recorded at conversion (zarr stores)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--storage-options", metavar="JSON", type=json_object,
                   help="fsspec options for a remote view, as JSON")
    add_allow_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from ..store.verify import verify_view
    from .targets import classify, trust_options

    classify(args.view)             # a missing local path: one line, not a traceback
    with out.progress():
        report = verify_view(args.view, storage_options=args.storage_options, full=args.full,
                             **trust_options(args.view, args.allow))
    from .errors import flags_for

    lines = [flags_for(line) for line in report.lines()]
    for line in lines[:-1]:
        out.say(line)
    out.result(lines[-1])
    out.emit(report.to_json())
    return 0 if report.ok else 1
