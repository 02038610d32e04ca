"""The ``detstack`` command: one module per sub-command, shared plumbing beside them.

Every command module has ``register(subparsers, common)`` and ``run(args, out) -> int``.
Exit status: 0 success, 1 problems found (validate, verify, an incomplete store),
2 an error (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from .. import __version__

COMMANDS = ["demo", "info", "preview", "validate", "convert", "verify", "archive"]

DESCRIPTION = """\
European XFEL multi-module detector runs as one (module, train, pulse, y, x) array.

  detstack demo                       write a small synthetic AGIPD-1M run, convert, read back
  detstack info RUN|FILE|VIEW         detectors, modules, trains, keys, gaps (lsxfel-like)
  detstack preview RUN|VIEW -o P.png  one frame in detector layout + data availability
  detstack validate RUN|FILE          check every file and the modules; exit 1 on problems
  detstack convert RUN OUT [--to vds|cxi|manifest|zarr|icechunk]
                                      one array per key, (module, train, pulse, y, x)
  detstack verify VIEW                are a view's source files present and unchanged?
  detstack archive VIEW OUT           self-contained compressed copy of an HDF5 view

`detstack COMMAND --help` shows each command's options and examples.
"""


def common_options() -> argparse.ArgumentParser:
    """--quiet and --verbose, accepted before or after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only the result line and errors; no progress bars")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="library log messages on stderr (-vv: debug)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="detstack", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"detstack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub, [common])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from .errors import describe_failure
    from .output import Output

    args = build_parser().parse_args(argv)
    # icechunk's (Rust) log lines go to stdout, which holds our results (--json)
    os.environ.setdefault("ICECHUNK_LOG", "error")
    out = Output(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", 0) or 0,
                 json_mode=getattr(args, "json", False))
    out.setup_logging()
    try:
        return int(args.func(args, out))
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "")
        print("detstack: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr,
              flush=True)
        return 130
    except BrokenPipeError:             # `detstack info ... | head`
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line
        failure = describe_failure(exc)
        if failure is None:
            if out.verbose:
                traceback.print_exc()
            print(f"detstack: internal error: {type(exc).__name__}: {exc} (this is a bug; "
                  "run with --verbose for the traceback and please report it)",
                  file=sys.stderr, flush=True)
            return 3
        message, status = failure
        if out.verbose:
            logging.getLogger("detstack").debug("traceback", exc_info=exc)
        print(f"detstack: error: {message}", file=sys.stderr, flush=True)
        return status
