"""``detstack validate``: check every file of a run (or one file) and the run as a whole."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .output import Output, count

HELP = "check the files of a run (or one file): index, train IDs, modules; exit 1 on problems"
EXAMPLES = """\
examples:
  detstack validate /gpfs/exfel/exp/SPB/202401/p700000/raw/r0238
  detstack validate r0238/RAW-R0238-AGIPD00-S00000.h5
  detstack validate r0238 --json
"""
SHOW_POSITIONS = 3


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help=HELP, description=HELP.capitalize() + ".",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       parents=common)
    p.add_argument("run", metavar="RUN|FILE", help="run folder or one EuXFEL .h5 file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run_files(target: Path) -> list[Path]:
    """The run files to check: one file, or the ``*.h5`` files of a folder."""
    from ..errors import NoUsableFilesError

    if not target.exists():
        raise FileNotFoundError(f"{target}: no such file or folder")
    if target.is_file():
        return [target]
    names = sorted(p for p in target.glob("*.h5") if p.name.lower() != "overview.h5")
    if not names:
        raise NoUsableFilesError(f"No .h5 files in {target}: name a run folder or a run file")
    return names


def order_problem(tids: np.ndarray) -> str | None:
    """Where train IDs fail to increase strictly, with the values, e.g.
    ``not strictly increasing at 2 (10002 >= 9000)``."""
    t = tids.astype(np.int64)
    bad = np.flatnonzero(np.diff(t) <= 0) + 1
    if not len(bad):
        return None
    shown = ", ".join(f"{i} ({t[i - 1]} >= {t[i]})" for i in bad[:SHOW_POSITIONS])
    more = f" and {len(bad) - SHOW_POSITIONS} more" if len(bad) > SHOW_POSITIONS else ""
    return f"train IDs not strictly increasing at {shown}{more}"


def check(target: Path) -> tuple[list[Path], list[Path], list[dict[str, Any]]]:
    """(files checked, views left out, problems as {"file", "message"})."""
    from .. import progress
    from ..errors import DetstackError
    from ..run.collection import DataCollection
    from ..run.consistency import check as module_problems
    from ..run.derived import is_derived_view
    from ..run.files import RunFile

    paths = run_files(target)
    problems: list[dict[str, Any]] = []
    files, views = [], []
    for path in progress.track(paths, "checking files"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                f = RunFile(path)
        except DetstackError as exc:
            if is_derived_view(path):
                views.append(path)
                continue
            problems.append({"file": str(path), "message": str(exc)})
            continue
        files.append(f)
        problems += [{"file": str(path), "message": str(w.message)} for w in caught]
        order = order_problem(f.train_ids)
        if order:
            problems.append({"file": str(path), "message": f"{path}: {order}"})
        if not f.validity.all():
            bad = f.train_ids[~f.validity][:5].tolist()
            problems.append({"file": str(path), "message":
                             f"{path}: {int((~f.validity).sum())} suspect train IDs (e.g. {bad}); "
                             "open with inc_suspect_trains=False to drop them"})
    if not files and not problems:
        from ..errors import NoUsableFilesError
        raise NoUsableFilesError(f"{target} holds no run files, only {len(views)} views")
    if files:
        try:
            data = DataCollection(files)
            problems += [{"file": None, "message": str(m)} for m in module_problems(data)]
        except DetstackError as exc:
            problems.append({"file": None, "message": str(exc)})
    checked = [p for p in paths if p not in views]
    return checked, views, problems


def run(args: argparse.Namespace, out: Output) -> int:
    from .errors import flags_for

    target = Path(os.fspath(args.run))
    with out.progress():
        checked, views, problems = check(target)
    for p in problems:
        p["message"] = flags_for(p["message"])
        out.say(f"PROBLEM: {p['message']}")
    left_out = f" ({len(views)} views left out)" if views else ""
    out.result(f"{target}: {count(len(checked), 'file')} checked{left_out}, "
               f"{count(len(problems), 'problem')}")
    out.emit({"target": str(target), "files_checked": len(checked),
              "views_left_out": [str(v) for v in views], "problems": problems,
              "ok": not problems})
    return 1 if problems else 0
