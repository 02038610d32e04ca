"""The text of ``DataCollection.info()``: trains, detectors, sources."""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .collection import DataCollection


def _detector_lines(dc: DataCollection) -> tuple[list[str], set[str]]:
    """Lines for each multi-module detector, and the sources they cover."""
    from .collection import DETECTOR_SOURCE
    groups: dict[str, list[str]] = {}
    for src in sorted(dc.detector_sources):
        groups.setdefault(DETECTOR_SOURCE.match(src).group(1), []).append(src)
    lines: list[str] = []
    for prefix, sources in sorted(groups.items()):
        first = sources[0]
        lines.append(f"{len(sources)} XTDF detector modules of {prefix}/*")
        keys = dc.keys_for_source(first)
        if "image.data" in keys:
            shape, _ = dc.key_info(first, "image.data")
            lines.append(f"  e.g. module {DETECTOR_SOURCE.match(first).group(2)} : "
                         f"{' x '.join(str(n) for n in shape[-2:])} pixels")
            table = dc.key_table(first, "image.data")
            counts = table.count[table.count > 0]
            if len(counts):
                per_train = (f"{int(counts[0])}" if (counts == counts[0]).all()
                             else f"{int(counts.min())}-{int(counts.max())}")
                lines.append(f"  {first}")
                lines.append(f"  {per_train} frames per train, up to "
                             f"{int(table.count.sum())} frames total")
        lines.append("")
    return lines, {s for srcs in groups.values() for s in srcs}


def _duration(seconds: float) -> str:
    """``H:MM:SS.s``, trains being 0.1 s apart."""
    whole = dt.timedelta(seconds=int(seconds))
    return f"{whole}.{round((seconds % 1) * 10) % 10}"


def summary_lines(dc: DataCollection, details_for_sources: Iterable[str] = ()) -> list[str]:
    tids = dc.train_ids_array
    lines = [f"# of trains:    {len(tids)}",
             f"Duration:       {_duration(len(tids) / 10)}"]
    if len(tids):
        lines += [f"First train ID: {int(tids[0])}", f"Last train ID:  {int(tids[-1])}"]
    lines.append("")
    det_lines, covered = _detector_lines(dc)
    lines += det_lines
    details = list(details_for_sources)

    def source_block(title: str, sources: list[str]) -> None:
        lines.append(f"{len(sources)} {title}:")
        for src in sources:
            lines.append(f"  - {src}")
            if any(fnmatch.fnmatch(src, pat) for pat in details):
                for key in sorted(dc.keys_for_source(src)):
                    shape, dtype = dc.key_info(src, key)
                    lines.append(f"    - {key}: {np.dtype(dtype)} {tuple(shape)}")
        lines.append("")

    inst = sorted(s for s in dc.instrument_sources if s not in covered)
    excluding = " (excluding XTDF detectors)" if covered or det_lines == [] else ""
    source_block(f"instrument sources{excluding}", inst)
    source_block("control sources", sorted(dc.control_sources))
    return lines
