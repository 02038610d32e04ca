"""Which files an HDF5 view may make HDF5 read: its mappings against its record.

HDF5 follows every virtual-dataset mapping, external link and external raw
storage a file holds, wherever it points, and reads a missing mapped file as
fill values without a word. A view is data from someone else, so each of these
is checked against the source files the view's record lists (real paths,
symlinks resolved) and the prefixes the caller allowed, before HDF5 touches a
dataset: anything else is ``UnsafeReferenceError``; a missing source is
``MissingDataError`` when the dataset is opened, never silent fill.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h5py

from ..errors import MissingDataError, UnsafeReferenceError
from .verify import resolve_source

SHOW = 3
WIDEN = ("If you trust the view, pass allowed_prefixes=[...] (CLI: --allow PREFIX) naming "
         "that location")


@dataclass
class Trust:
    """The files a view may read: its own, the record's sources, allowed prefixes."""

    view: str
    folder: str
    files: set[str]
    allowed: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, path: str, record: dict[str, Any], allowed: Iterable[str] | None = None
           ) -> Trust:
        real = os.path.realpath(path)
        files = {real}
        for entry in record.get("source_files") or []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                files.add(os.path.realpath(resolve_source(path, entry["path"])))
        roots = [os.path.realpath(os.path.expanduser(p)) for p in (allowed or [])]
        return cls(path, os.path.dirname(real), files, roots)

    def locate(self, name: str) -> str:
        """Where HDF5 looks for a mapped file: '.' is the view, relative is beside it."""
        if name == ".":
            return os.path.realpath(self.view)
        return os.path.realpath(os.path.join(self.folder, name))

    def trusted(self, loc: str) -> bool:
        return loc in self.files or any(loc == r or loc.startswith(r.rstrip(os.sep) + os.sep)
                                        for r in self.allowed)


def _names(names: Iterable[str]) -> str:
    names = sorted(set(names))
    return ", ".join(names[:SHOW]) + (f" and {len(names) - SHOW} more" if len(names) > SHOW
                                      else "")


def dataset_files(ds: h5py.Dataset) -> dict[str, str]:
    """{file name as stored: what refers to it} for a dataset's mappings and external
    raw storage."""
    dcpl = ds.id.get_create_plist()
    out: dict[str, str] = {}
    if ds.is_virtual:
        for i in range(dcpl.get_virtual_count()):
            out.setdefault(dcpl.get_virtual_filename(i), "virtual-dataset mapping")
    for i in range(dcpl.get_external_count()):
        name = dcpl.get_external(i)[0]
        out.setdefault(name.decode() if isinstance(name, bytes) else name,
                       "external raw storage")
    return out


def dataset_problems(ds: h5py.Dataset, trust: Trust) -> tuple[list[str], list[str]]:
    """(untrusted, missing) files a dataset would read, each described."""
    unsafe, missing = [], []
    for name, how in dataset_files(ds).items():
        loc = trust.locate(name)
        if not trust.trusted(loc):
            unsafe.append(f"{how} of {ds.name} to {name!r} ({loc})")
        elif not os.path.exists(loc):
            missing.append(loc)
    return unsafe, missing


def check_dataset(ds: h5py.Dataset, trust: Trust) -> None:
    """Refuse a dataset reading untrusted files; a missing source is an error."""
    unsafe, missing = dataset_problems(ds, trust)
    if unsafe:
        raise UnsafeReferenceError(f"{trust.view}: {_names(unsafe)} point outside the source "
                                   f"files its record lists; refusing to read it. {WIDEN}")
    if missing:
        raise MissingDataError(trust.view, f"{ds.name} maps source files that are missing: "
                               f"{_names(missing)}",
                               "HDF5 would read their frames as fill values. Restore the "
                               "files, or rebuild the view")


def external_links(h5: h5py.File) -> list[tuple[str, str]]:
    """(link path, target file) of every external link in the file."""
    found: list[tuple[str, str]] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            found.append((name, link.filename))
    h5.visititems_links(visit)
    return found


def check_links(h5: h5py.File, trust: Trust) -> None:
    """Refuse external links to anything but the record's source files."""
    unsafe = [f"external link /{name} to {target!r}" for name, target in external_links(h5)
              if not trust.trusted(trust.locate(target))]
    if unsafe:
        raise UnsafeReferenceError(f"{trust.view}: {_names(unsafe)} point outside the source "
                                   f"files its record lists; refusing to open it. {WIDEN}")


def view_file_problems(path: str, record: dict[str, Any],
                       allowed: Iterable[str] | None = None) -> list[str]:
    """Every mapping, link and external storage of an HDF5 view that is untrusted or
    missing, one line each (for ``detstack verify``; opens every dataset)."""
    trust = Trust.of(path, record, allowed)
    problems: list[str] = []
    with h5py.File(path, "r") as h5:
        problems += [f"UNSAFE: external link /{n} to {t!r}" for n, t in external_links(h5)
                     if not trust.trusted(trust.locate(t))]

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                unsafe, missing = dataset_problems(obj, trust)
                problems.extend(f"UNSAFE: {u}" for u in unsafe)
                problems.extend(f"MISSING: {m} (mapped by /{name})" for m in missing)
        h5.visititems(visit)
    return problems
