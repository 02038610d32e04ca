"""``detstack archive``: a self-contained, compressed copy of an HDF5 view or CXI file."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .output import Output
from .targets import add_allow_option, trust_options

HELP = "copy an HDF5 view or CXI file into a self-contained compressed HDF5 file"
EXAMPLES = """\
examples:
  detstack archive view.h5 r0238-archive.h5                 # gzip level 1
  detstack archive view.cxi r0238.cxi --compression lzf
  detstack archive view.h5 copy.h5 --compression gzip --level 4 --overwrite
"""


def compression(text: str) -> str | int | None:
    """``gzip``, ``lzf``, ``none`` or an HDF5 filter number."""
    if text.lower() == "none":
        return None
    if text.isdigit():
        return int(text)
    return text


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("archive", help=HELP, description=HELP.capitalize() + ". The copy "
                       "has the same datasets, shapes, dtypes and attributes; it no longer "
                       "needs the run's files.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter, parents=common)
    p.add_argument("view", metavar="VIEW", help="HDF5 virtual view (.h5) or CXI file")
    p.add_argument("out", metavar="OUT", help="the archival copy to write (.h5, .cxi)")
    p.add_argument("--compression", type=compression, default="gzip", metavar="NAME",
                   help="gzip (default), lzf, none, or an HDF5 filter number")
    p.add_argument("--level", type=int, metavar="N",
                   help="compression level (gzip: 1-9, default 1)")
    p.add_argument("--no-shuffle", action="store_true", help="no byte shuffle before compressing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_allow_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from ..convert import materialize
    from .targets import classify

    classify(args.view)
    args.interrupt_hint = "nothing was written"
    t0 = time.perf_counter()
    with out.progress():
        path = materialize(args.view, args.out, compression=args.compression,
                           compression_opts=args.level, shuffle=not args.no_shuffle,
                           overwrite=args.overwrite,
                           **trust_options(args.view, args.allow))
    size_out = path.stat().st_size
    doc = {"view": args.view, "output": str(path), "compression": args.compression,
           "bytes": size_out, "seconds": round(time.perf_counter() - t0, 3)}
    out.emit(doc)
    out.result(f"Archived {args.view} to {path}: {size_out / 1e6:.1f} MB, "
               f"{args.compression or 'uncompressed'}, self-contained, in "
               f"{doc['seconds']:.1f} s")
    return 0
