"""Failures as one line that names the command-line flag, never a traceback.

Library messages speak Python (``pass raw=True``); :func:`flags_for` rewrites the
parameters they mention into the flags of the command (``--raw``) from one table,
so library and command line keep a single source of wording.
"""

from __future__ import annotations

import re

from ..errors import DetstackError, MissingDependencyError

#: Python parameter spelling -> command-line flag, for messages shown on the terminal.
PARAMETER_FLAGS: dict[str, str] = {
    "raw=True": "--raw",
    "raw=False": "--corrected",
    "raw=None": "neither --raw nor --corrected",
    "overwrite=True": "--overwrite",
    "resume=True": "--resume",
    "inc_suspect_trains=False": "--exc-suspect-trains",
    "allowed_prefixes=[...]": "--allow PREFIX",
    "allowed_prefixes": "--allow PREFIX",
    "detector_name=": "--detector NAME",
    "detector_name": "--detector NAME",
    "min_modules": "--min-modules",
    "modules=[...]": "--modules LIST",
    "keys=[...]": "--keys LIST",
    "on_unsupported='skip'": "--skip-unsupported",
    "storage_options": "--storage-options",
    "include=": "a narrower RUN",
}

_PARAM_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(p) for p in sorted(PARAMETER_FLAGS, key=len,
                                                            reverse=True)) + r")"
    r"(?:\s*\((?:detstack [^()]*?|CLI:\s*)?(--[\w-]+)(?:\s+[A-Z]+)?\))?")

#: importable name of an optional package -> the detstack extra that installs it.
PACKAGE_EXTRAS: dict[str, str] = {
    "fastparquet": "parquet",
    "pyarrow": "parquet",
    "s3fs": "s3",
    "distributed": "distributed",
    "icechunk": "icechunk",
    "matplotlib": "plot",
    "extra_geom": "geom",
}


def flags_for(message: str) -> str:
    """``message`` with Python parameters (``overwrite=True``) replaced by their flags.

    A flag the library already gave in parentheses (``overwrite=True (--overwrite)``,
    ``allowed_prefixes=[...] (CLI: --allow PREFIX)``) is not repeated.
    """
    return _PARAM_RE.sub(lambda m: PARAMETER_FLAGS[m.group(1)], message)


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts)


def missing_package(exc: ImportError) -> MissingDependencyError | None:
    """The detstack extra for an ImportError of an optional package, if it is one."""
    if isinstance(exc, MissingDependencyError):
        return exc
    name = (exc.name or "").split(".")[0]
    if name not in PACKAGE_EXTRAS:      # fsspec: "Install s3fs to access S3"
        name = next((p for p in PACKAGE_EXTRAS if re.search(rf"\b{p}\b", str(exc))), "")
    if not name:
        return None
    return MissingDependencyError(name, PACKAGE_EXTRAS[name], "This command")


def describe_failure(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an expected failure; None for a bug."""
    if isinstance(exc, ImportError):
        dep = missing_package(exc)
        return (str(dep), 2) if dep is not None else None
    if isinstance(exc, (DetstackError, FileExistsError, FileNotFoundError, NotADirectoryError,
                        IsADirectoryError, PermissionError, ValueError, KeyError,
                        TimeoutError)):
        msg = str(exc) if not isinstance(exc, KeyError) or isinstance(exc, DetstackError) \
            else f"no such key or source: {exc}"
        return flags_for(one_line(msg)) or type(exc).__name__, 2
    if isinstance(exc, OSError):
        return flags_for(one_line(str(exc))) or type(exc).__name__, 2
    return None
