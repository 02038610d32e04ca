"""``detstack verify``: are a view's source files the ones it was made from, and (with
``full``) does every frame it returns equal its sources?

HDF5 silently reads fill values for a missing virtual-dataset source, and a
manifest would read garbage from a rewritten file: verifying catches both. Files
are compared by content identity (size plus a hash of a few parts, recorded at
conversion; see ``identity``), not by modification time, so a ``touch``ed file is
not "changed". A self-contained view (a zarr store, a materialized copy) holds
its data: missing sources are reported as a note, not as damage.

``full`` reads every (module, train) block: virtual views and manifests are
compared frame by frame with the source files (plain h5py reads of the rows the
view's frame map names); zarr stores with the checksums recorded while
converting (``detstack.convert.checksums``), and the culprit frame is named when
the sources are at hand.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DetstackError
from .identity import file_identity, same_identity

SELF_CONTAINED_FORMS = {"zarr", "materialized"}
MAX_LISTED = 20          # mismatches listed in a report (all are counted)


@dataclass
class Mismatch:
    """One (key, module, train) block whose frames differ from what they must be."""

    key: str
    module: int
    train: int
    frames: list[int] | None   # culprit frames (None: unknown, e.g. checksum only)
    detail: str

    def line(self) -> str:
        where = f"frame {', '.join(map(str, self.frames[:8]))}" if self.frames else "frames ?"
        if self.frames and len(self.frames) > 8:
            where += f" (+{len(self.frames) - 8} more)"
        return f"MISMATCH: {self.key} module {self.module} train {self.train} {where}: " \
               f"{self.detail}"


@dataclass
class VerifyReport:
    view: str
    form: str = ""
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)   # the view itself is refused
    full: bool = False
    blocks_checked: int = 0
    frames_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    n_mismatches: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.errors or self.n_mismatches)

    def add_mismatch(self, m: Mismatch) -> None:
        self.n_mismatches += 1
        if len(self.mismatches) < MAX_LISTED:
            self.mismatches.append(m)

    def lines(self) -> list[str]:
        out = [f"REFUSED: {e}" for e in self.errors]
        out += [f"MISSING: {p}" for p in self.missing]
        out += [f"CHANGED: {p}" for p in self.changed]
        out += [f"NOTE: {n}" for n in self.notes]
        out += [m.line() for m in self.mismatches]
        if self.n_mismatches > len(self.mismatches):
            out.append(f"... and {self.n_mismatches - len(self.mismatches)} more mismatches")
        problems = [f"{len(v)} {label}" for v, label in
                    ((self.errors, "refused"), (self.missing, "missing"),
                     (self.changed, "changed")) if v]
        if self.n_mismatches:
            problems.append(f"{self.n_mismatches} mismatching blocks")
        status = "OK" if self.ok else ", ".join(problems)
        summary = f"{self.view}: {self.checked} source files checked"
        if self.full:
            summary += f", {self.frames_checked} frames in {self.blocks_checked} blocks read"
        out.append(f"{summary}: {status}")
        return out

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc


def resolve_source(view_path: str | os.PathLike[str], rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else Path(view_path).resolve().parent / p


def source_path(view_path: str | os.PathLike[str], entry: dict[str, Any]) -> Path | None:
    """The local path of a source entry (None for a URL)."""
    path = str(entry["path"])
    if "://" in path:
        return None if not path.startswith("file://") else Path(path[len("file://"):])
    return resolve_source(view_path, path)


def verify_record(view_path: str | os.PathLike[str], record: dict[str, Any]) -> VerifyReport:
    """Check every source file the record names: present, and the same content."""
    form = str(record.get("form", ""))
    report = VerifyReport(str(view_path), form)
    self_contained = form in SELF_CONTAINED_FORMS
    absent = []
    info = record.get("manifest")
    sidecar = info.get("sidecar") if isinstance(info, dict) else None   # a manifest's arrays
    for entry in record.get("source_files", []) + ([sidecar] if sidecar else []):
        path = source_path(view_path, entry)
        if path is None:
            continue
        report.checked += 1
        try:
            found = file_identity(path)
        except FileNotFoundError:
            absent.append(str(path))
            continue
        except (DetstackError, OSError) as exc:
            report.changed.append(f"{path} (unreadable: {exc})")
            continue
        recorded = entry.get("identity")
        if recorded is not None:
            if not same_identity(recorded, found):
                how = f"size {recorded.get('size')} -> {found['size']}" \
                    if recorded.get("size") != found["size"] else "content differs"
                report.changed.append(f"{path} ({how})")
        elif found["size"] != entry.get("size"):     # views written before identities
            report.changed.append(f"{path} (size {entry.get('size')} -> {found['size']})")
    if self_contained:
        if absent:
            report.notes.append(f"{len(absent)} of {report.checked} source files are not "
                                "present; this view holds a copy of the data and does not "
                                "need them")
    else:
        report.missing += absent
    return report


def verify_view(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                full: bool = False, **trust: Any) -> VerifyReport:
    """Check that the source files a view names are present and unchanged.

    Parameters
    ----------
    path : str or path-like
        The view (any form ``open_view`` opens).
    storage_options : dict, optional
        fsspec options for a remote view.
    full : bool, default False
        Also read every frame and compare it with its sources (views, manifests) or
        the checksums recorded while converting (zarr stores).
    **trust
        ``allowed_prefixes=[...]``, passed to ``open_view``: folders or URL prefixes
        the view's references may reach beyond the files it lists.

    Returns
    -------
    VerifyReport
        Missing and changed files, mismatching blocks, and refusals (a view that
        cannot be opened safely is reported, not raised); ``.ok`` says whether all
        is well.

    Raises
    ------
    FileNotFoundError
        There is no view at ``path``.
    """
    from .open import open_view
    try:
        view = open_view(path, storage_options=storage_options, check_sources=False, **trust)
    except DetstackError as exc:        # e.g. a manifest whose sources changed
        if isinstance(exc, FileNotFoundError):
            raise
        return VerifyReport(str(path), errors=[str(exc)])
    report = verify_record(path, dict(view.record))
    allowed = trust.get("allowed_prefixes")
    if isinstance(allowed, (str, os.PathLike)):
        allowed = [allowed]
    view_problems(path, view, report, [os.fspath(a) for a in allowed or []])
    if full:
        from .verify_full import verify_frames
        report.full = True
        verify_frames(path, view, report, storage_options)
    return report


def view_problems(path: str | os.PathLike[str], view: Any, report: VerifyReport,
                  allowed: Any = None) -> None:
    """What the view itself holds wrong, without reading pixels: HDF5 views' mappings,
    links and external storage against the record (``h5_guard``); chunks the counts
    promise but whose reference is gone (manifests; zarr stores read through zarr-python,
    e.g. zip files); every shard of a local folder store: present where the counts say,
    and its index whole and consistent with the file (``zarr_shard_check``)."""
    name = os.fspath(path)
    if name.lower().endswith((".h5", ".hdf5", ".cxi", ".nxs")) and "://" not in name:
        from .h5_guard import view_file_problems
        for line in view_file_problems(name, dict(view.record), allowed):
            kind, _, what = line.partition(": ")
            if kind == "MISSING":
                if not any(what.startswith(m) for m in report.missing):
                    report.missing.append(what)
            else:
                report.errors.append(what)
    seen: set[int] = set()
    for vf in view.files:
        for rows in getattr(vf, "h5", {}).values():
            objects = getattr(getattr(rows, "array", None), "objects", None)
            if objects is None or id(objects) in seen:
                continue
            if "://" in objects.url and not objects.url.startswith("file://"):
                continue     # a remote store: a request per object; --full reads them
            seen.add(id(objects))
            try:
                objects.require(range(objects.shape[0]), range(objects.shape[1]))
            except DetstackError as exc:
                report.errors.append(str(exc))
    from .zarr_shard_check import store_shard_problems
    report.errors += store_shard_problems(view)
