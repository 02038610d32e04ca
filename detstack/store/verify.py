"""Check that the source files a view refers to are present and unchanged.

HDF5 silently reads fill values for a missing virtual-dataset source, and a
manifest would read garbage from a rewritten file: verifying catches both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class VerifyReport:
    view: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed)

    def lines(self) -> list[str]:
        out = [f"MISSING: {p}" for p in self.missing]
        out += [f"CHANGED: {p}" for p in self.changed]
        status = "OK" if self.ok else f"{len(self.missing)} missing, {len(self.changed)} changed"
        out.append(f"{self.view}: {self.checked} source files checked: {status}")
        return out


def resolve_source(view_path: str | os.PathLike[str], rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else Path(view_path).resolve().parent / p


def verify_record(view_path: str | os.PathLike[str], record: dict[str, Any]) -> VerifyReport:
    report = VerifyReport(str(view_path))
    for entry in record.get("source_files", []):
        report.checked += 1
        path = resolve_source(view_path, entry["path"])
        try:
            st = path.stat()
        except FileNotFoundError:
            report.missing.append(str(path))
            continue
        if st.st_size != entry["size"] or abs(st.st_mtime - entry["mtime"]) > 1e-3:
            report.changed.append(f"{path} (size {entry['size']} -> {st.st_size})"
                                  if st.st_size != entry["size"] else f"{path} (modified)")
    return report


def verify_view(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
                ) -> VerifyReport:
    """Open the view's record and check every source file it names."""
    from .open import open_view
    view = open_view(path, storage_options=storage_options, check_sources=False)
    return verify_record(path, dict(view.record))
