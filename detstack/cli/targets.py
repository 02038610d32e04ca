"""What a path on the command line names: a run folder, one run file, or a view."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FileFormatError, UnusableFileWarning

RUN = "run"          # a folder of EuXFEL HDF5 files
FILE = "file"        # a single EuXFEL HDF5 file
VIEW = "view"        # anything detstack wrote: HDF5 view/CXI, manifest, zarr store
VIEW_SUFFIXES = (".json", ".parq", ".parquet", ".zarr", ".zip", ".icechunk")


@dataclass
class Opened:
    """A run, file or view opened for a command, with the files that were left out."""

    kind: str
    path: str
    data: Any                                   # DataCollection or ViewCollection
    skipped: list[UnusableFileWarning] = field(default_factory=list)


def is_url(name: str) -> bool:
    return "://" in name and not name.startswith("file://")


def classify(name: str) -> str:
    """RUN, FILE or VIEW for a path or URL; a missing local path is an error."""
    if is_url(name):
        return VIEW
    path = Path(name)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file or folder")
    if name.rstrip("/").lower().endswith(VIEW_SUFFIXES):
        return VIEW
    if path.is_dir():
        if (path / "zarr.json").exists() or (path / ".detstack-progress").exists():
            return VIEW
        return RUN
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return FILE if "INDEX" in f else VIEW
    except OSError as exc:
        raise FileFormatError(path, f"cannot be opened as HDF5 ({exc})",
                              "Name a run folder, an EuXFEL .h5 file or a detstack view"
                              ) from exc


ALLOW_HELP = ("views: also follow references into files under PREFIX (a folder or URL "
              "prefix) beyond the files the view lists; repeat for several")


def add_allow_option(parser: Any) -> None:
    """``--allow PREFIX`` (repeatable), for every command that opens views."""
    parser.add_argument("--allow", metavar="PREFIX", action="append", default=[],
                        help=ALLOW_HELP)


def trust_options(name: str, allow: list[str]) -> dict[str, Any]:
    """``open_view`` options widening trust to ``--allow`` prefixes (empty without them)."""
    if not allow:
        return {}
    if name.lower().rstrip("/").endswith(".icechunk"):
        raise ValueError("--allow applies to HDF5 views, manifests and zarr stores, not to "
                         "Icechunk repositories")
    return {"allowed_prefixes": list(allow)}


def open_target(name: str, *, inc_suspect_trains: bool = True,
                storage_options: dict[str, Any] | None = None, **view_kwargs: Any) -> Opened:
    """Open ``name`` as a run folder, single run file or view, collecting skipped files."""
    name = os.fspath(name)
    kind = classify(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnusableFileWarning)
        if kind == RUN:
            from ..run.collection import RunDirectory
            data = RunDirectory(name, inc_suspect_trains=inc_suspect_trains)
        elif kind == FILE:
            from ..run.collection import H5File
            data = H5File(name, inc_suspect_trains=inc_suspect_trains)
        else:
            from ..store.open import open_view
            data = open_view(name, storage_options=storage_options, **view_kwargs)
    skipped = [w.message for w in caught if isinstance(w.message, UnusableFileWarning)]
    for w in caught:             # show the others as the command shows every warning
        if not isinstance(w.message, UnusableFileWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    for w in skipped:
        warnings.showwarning(w, UnusableFileWarning, "", 0)
    return Opened(kind, name, data, skipped)
