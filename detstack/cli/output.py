"""What the command shows: text or one JSON document on stdout, messages and bars on stderr.

Library logging and Python warnings go to stderr as ``detstack: warning: ...`` lines
(no ``file.py:113: UserWarning`` prefixes); progress bars appear only on a terminal
and never with ``--quiet``.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import progress
from .errors import flags_for, one_line

log = logging.getLogger("detstack")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = flags_for(one_line(record.getMessage()))
        return f"detstack: {record.levelname.lower()}: {text}"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 train"``, ``"3 trains"``: counts people read on a terminal."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` replacement: the message only, as a log line."""
    log.warning("%s", message)


class Output:
    """The command's stdout/stderr, set up from ``--quiet``, ``--verbose`` and ``--json``."""

    def __init__(self, *, quiet: bool = False, verbose: int = 0, json_mode: bool = False
                 ) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.json_mode = json_mode

    def setup_logging(self) -> None:
        """Library logging (and warnings) to stderr: warnings by default, INFO with -v,
        DEBUG with -vv, errors only with --quiet."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        log.handlers[:] = [handler]
        log.propagate = False
        level = logging.ERROR if self.quiet else (
            logging.WARNING, logging.INFO, logging.DEBUG)[min(self.verbose, 2)]
        log.setLevel(level)
        warnings.showwarning = _show_warning

    def say(self, text: str = "") -> None:
        """A line of the human-readable report (nothing with --json or --quiet)."""
        if not (self.json_mode or self.quiet):
            print(text, flush=True)

    def result(self, text: str) -> None:
        """The final summary line: shown even with --quiet, not with --json."""
        if not self.json_mode:
            print(text, flush=True)

    def emit(self, doc: Any) -> None:
        """The JSON document (only with --json)."""
        if self.json_mode:
            print(json.dumps(doc, indent=2, default=_jsonable), flush=True)

    @property
    def bars(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    @contextmanager
    def progress(self) -> Iterator[None]:
        """Progress bars for the library's long steps inside the block (terminal only)."""
        with progress.reporting(progress.tqdm_bar if self.bars else None):
            yield


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)
