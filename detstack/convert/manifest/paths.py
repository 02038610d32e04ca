"""How a manifest names its files: in its references, and in its record.

References must be paths other tools resolve without help: VirtualiZarr refuses
kerchunk templates (``{{base}}``) and relative paths, plain fsspec resolves relative
paths against the working folder. So by default every reference is the file's
absolute real path. The record (``detstack_record``) names the same files relative
to the manifest's folder when relative paths were asked for, and never carries an
absolute path then; the folder the manifest was written in is kept beside the record
(root attribute ``detstack_origin``) so that detstack's reader can follow a run and
manifest that were moved together (``detstack.store.manifest_paths``).

The compact form (``compact=True``) keeps the older, smaller layout: one ``{{base}}``
template the reader may override. With a URL prefix (files on S3) references are full
URLs (``url_prefix`` + the file's path in the run's folder); so is the sidecar's when
the manifest is written inside the run's folder (to be published with it), otherwise
the sidecar is named by its local ``file://`` URL (data remote, manifest local).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE = "base"   # the JSON template naming the folder references are relative to


@dataclass(frozen=True)
class ManifestPaths:
    """The names of a manifest's files (source files, then the sidecar if any)."""

    kind: str                   # how the record names files: relative | absolute | url
    references: str             # how references name them: absolute | template | relative
    record: list[str]           # each file as the record lists it
    refs: list[str]             # each file as JSON references name it
    parquet_refs: list[str]     # ... and as Parquet references do (no templates there)
    templates: dict[str, str] = field(default_factory=dict)
    origin: str | None = None   # absolute folder the manifest was written in
    url_root: str | None = None  # URL form: the local folder url_prefix stands for
    url_base: str | None = None  # ... and the prefix (no trailing slash)

    def add(self, path: Path, folder: Path) -> ManifestPaths:
        """The same names plus one more local file (the sidecar)."""
        if self.kind == "url":
            return self._add_url(path)
        one = manifest_paths([path], folder, self.kind == "relative", None,
                             self.references != "absolute")
        return ManifestPaths(self.kind, self.references, self.record + one.record,
                             self.refs + one.refs, self.parquet_refs + one.parquet_refs,
                             self.templates, self.origin)


    def _add_url(self, path: Path) -> ManifestPaths:
        """The sidecar of a manifest naming its files by URL: by URL too if it lies in
        the run's folder (published with the run), else by its local ``file://`` URL (the
        protocol explicit, so readers can map each protocol to its file system)."""
        assert self.url_root is not None and self.url_base is not None
        root = Path(self.url_root)
        name = (f"{self.url_base}/{path.relative_to(root).as_posix()}"
                if path.is_relative_to(root) else path.as_uri())
        return ManifestPaths(self.kind, self.references, self.record + [name],
                             self.refs + [name], self.parquet_refs + [name], self.templates,
                             self.origin, self.url_root, self.url_base)


def _common(files: list[Path], folder: Path) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in files])) if files else folder


def manifest_paths(files: list[Path], folder: Path, relative: bool, url_prefix: str | None,
                   compact: bool) -> ManifestPaths:
    """Names of resolved local ``files`` for a manifest written into resolved ``folder``."""
    if url_prefix is not None:
        base = url_prefix.rstrip("/")
        common = _common(files, folder)
        rel = [Path(os.path.relpath(p, common)).as_posix() for p in files]
        urls = [f"{base}/{r}" for r in rel]
        if not compact:   # full URLs: what VirtualiZarr and kerchunk read
            return ManifestPaths("url", "absolute", urls, urls, urls,
                                 url_root=common.as_posix(), url_base=base)
        return ManifestPaths("url", "template", urls, [f"{{{{{TEMPLATE}}}}}/{r}" for r in rel],
                             urls, {TEMPLATE: base})
    kind = "relative" if relative else "absolute"
    absolute = [p.as_posix() for p in files]
    if relative:
        record = [Path(os.path.relpath(p, folder)).as_posix() for p in files]
    else:
        record = absolute
    if not compact:
        return ManifestPaths(kind, "absolute", record, absolute, absolute,
                             origin=folder.as_posix() if relative else None)
    if relative:   # an absolute base that readers may override (the files moved)
        return ManifestPaths(kind, "template", record,
                             [f"{{{{{TEMPLATE}}}}}/{r}" for r in record], record,
                             {TEMPLATE: folder.as_posix()}, folder.as_posix())
    common = _common(files, folder)
    rel = [Path(os.path.relpath(p, common)).as_posix() for p in files]
    return ManifestPaths(kind, "template", record, [f"{{{{{TEMPLATE}}}}}/{r}" for r in rel],
                         absolute, {TEMPLATE: common.as_posix()})


def finish_record(record: dict[str, Any], fmt: str, names: ManifestPaths, copied: list[str],
                  skipped: dict[str, str], sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """Name the files in ``record``, add its manifest section; the manifest's root
    attributes (the record, and the folder it was written in if paths are relative)."""
    for entry, name in zip(record["source_files"], names.record, strict=False):
        entry["path"] = name
    keys = list(record["keys"])
    record["manifest"] = {
        "format": fmt, "zarr_format": 2, "paths": names.kind, "references": names.references,
        "referenced": [k for k in keys if k not in copied],
        "copied": [k for k in keys if k in copied],
        "skipped": skipped,
    }
    if names.templates:
        record["manifest"]["template"] = TEMPLATE
    if sidecar is not None:
        record["manifest"]["sidecar"] = {"path": names.record[-1], **sidecar}
    attrs: dict[str, Any] = {"detstack_record": record}
    if names.origin is not None:
        attrs["detstack_origin"] = names.origin
    return attrs
