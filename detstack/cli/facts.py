"""What a run, file or view holds, as plain JSON-able dicts (``info`` renders them)."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DetstackError
from .targets import VIEW, Opened


def id_ranges(ids: np.ndarray | list[int]) -> str:
    """Train IDs as compact ranges: ``10003-10005, 10010``."""
    ids = sorted(int(i) for i in ids)
    if not ids:
        return ""
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")


def _metadata_date(text: object) -> str | None:
    try:
        return dt.datetime.strptime(str(text), "%Y%m%dT%H%M%SZ").replace(
            tzinfo=dt.UTC).isoformat(timespec="seconds")
    except ValueError:
        return None


def time_span(files: list[Any]) -> dict[str, Any] | None:
    """Start, end and length of a run: INDEX/timestamp where files have it, else the
    METADATA creation and update dates; None when the data says nothing."""
    stamps = []
    for f in files:
        h5 = getattr(f, "h5", None)
        if hasattr(h5, "get") and "INDEX/timestamp" in h5:
            ts = np.asarray(h5["INDEX/timestamp"][:], dtype=np.uint64)
            ts = ts[ts > 0]
            if len(ts):
                stamps += [int(ts.min()), int(ts.max())]
    if stamps:
        lo, hi = min(stamps), max(stamps)
        return {"start": _iso(lo), "end": _iso(hi), "seconds": round((hi - lo) / 1e9, 3),
                "from": "INDEX/timestamp"}
    meta: dict[str, Any] = {}
    for f in files:
        try:
            meta = f.metadata()
        except (OSError, KeyError):
            continue
        if meta.get("creationDate"):
            break
    start, end = _metadata_date(meta.get("creationDate")), _metadata_date(meta.get("updateDate"))
    if start is None:
        return None
    out: dict[str, Any] = {"start": start, "end": end, "from": "METADATA creationDate/updateDate"}
    if end is not None:
        out["seconds"] = (dt.datetime.fromisoformat(end)
                          - dt.datetime.fromisoformat(start)).total_seconds()
    return out


def collection_facts(opened: Opened, *, detail: bool = False) -> dict[str, Any]:
    """Files, trains, sources and detectors of an opened run, file or view."""
    from ..detectors.identify import identify_multimod_detectors

    data = opened.data
    tids = data.train_ids_array
    doc: dict[str, Any] = {"path": opened.path, "kind": opened.kind}
    if opened.kind != VIEW:
        versions = Counter(str(f.format_version) for f in data.files)
        doc["files"] = {"count": len(data.files), "format_versions": dict(versions)}
        if detail:
            doc["files"]["list"] = [{"name": f.path.name, "format_version": f.format_version,
                                     "trains": len(f.train_ids)} for f in data.files]
    doc["skipped_files"] = [{"path": w.path, "problem": str(w)} for w in opened.skipped]
    doc["trains"] = {"count": len(tids), "first": int(tids[0]) if len(tids) else None,
                     "last": int(tids[-1]) if len(tids) else None,
                     "time": time_span(data.files) if opened.kind != VIEW else None}
    doc["sources"] = {"instrument": len(data.instrument_sources),
                      "control": len(data.control_sources)}
    if detail:
        doc["sources"]["list"] = sorted(data.all_sources)
    doc["detectors"] = []
    for name, cls in sorted(identify_multimod_detectors(data), key=lambda nc: nc[0]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # the raw-data fallback note
                det = cls(data, name)
        except (DetstackError, ValueError) as exc:  # e.g. modules disagree on frame counts
            doc["detectors"].append({"class": cls.__name__, "name": name, "error": str(exc)})
            continue
        doc["detectors"].append(detector_facts(det, detail=detail))
    if opened.kind == VIEW:
        doc["view"] = view_facts(opened.path, dict(data.record))
    return doc


def detector_facts(det: Any, *, detail: bool = False) -> dict[str, Any]:
    """Modules present and missing, trains, frames, keys in the view layout, gaps."""
    from ..convert.plan import ViewPlan

    fmap = det.frame_map
    base = det.kind.modno_base
    slots = {det.module_slot(m) for m in det.modules}
    missing = [s + base for s in range(det.n_modules) if s not in slots]
    counts = fmap.train_counts() * det._frames_per_entry
    nonzero = np.unique(counts[counts > 0]).astype(int).tolist()
    present = fmap.present
    plan = ViewPlan(det)
    frame_dim = "cell" if not det.kind.xtdf else "pulse"
    keys = {}
    for kp in plan.keys:
        if not detail and kp.key != det.kind.main_key:
            continue
        dims = ["module", "train"] + ([frame_dim] if kp.per_frame else [])
        dims += entry_dims(kp.entry_shape, det.module_shape, det.kind.xtdf)
        keys[kp.key] = {"shape": list(plan.shape(kp)), "dims": dims, "dtype": str(kp.dtype)}
    gaps = {}
    for row, m in enumerate(det.modules):
        absent = fmap.train_ids[~present[row]]
        if len(absent):
            gaps[str(m)] = {"count": len(absent), "trains": id_ranges(absent)}
    return {
        "class": type(det).__name__,
        "name": det.detector_name,
        "data": "raw" if det._is_all_raw() else "corrected",
        "modules": {"present": det.modules, "missing": missing, "of": det.n_modules},
        "trains": {"count": len(fmap.train_ids),
                   "first": int(fmap.train_ids[0]) if len(fmap.train_ids) else None,
                   "last": int(fmap.train_ids[-1]) if len(fmap.train_ids) else None},
        "frames_per_train": nonzero,
        "frames": int(counts.sum()),
        "keys": keys,
        "n_keys": len(plan.keys),
        "gaps": gaps,
        "incomplete_trains": int((~present.all(axis=0)).sum()),
    }


def entry_dims(entry: tuple[int, ...], module_shape: tuple[int, int], xtdf: bool) -> list[str]:
    """Names of a key's entry axes, as ``get_array`` names them."""
    if tuple(entry[-2:]) != tuple(module_shape):
        return [f"dim_{i}" for i in range(len(entry))]
    extra = len(entry) - 2
    lead = (["data_gain"] if xtdf else ["cell"]) if extra == 1 else [f"dim_{i}" for i in range(extra)]
    return lead + ["slow_scan", "fast_scan"]


def view_facts(path: str, record: dict[str, Any]) -> dict[str, Any]:
    """Form, origin and the state of the source files of a view."""
    from ..store.verify import verify_record

    files = record.get("source_files", [])
    run = record.get("run_metadata", {})
    layout = record.get("layout", "trains")
    if int(record.get("schema_version", 1)) < 2:     # version 1 named its array layout
        layout = "frames" if layout == "cxi" else "trains"
    out: dict[str, Any] = {"form": record.get("form"), "layout": layout,
                           "created": record.get("created"),
                           "detstack_version": record.get("detstack_version"),
                           "proposal": run.get("proposalNumber"), "run": run.get("runNumber")}
    if record.get("materialized_from"):
        out["materialized_from"] = record["materialized_from"]
    if not files:
        out["sources"] = {"needed": False, "count": 0}
        return out
    local = "://" not in path or path.startswith("file://")
    report = verify_record(path, record) if local else None
    folders = {str(Path(_resolve(path, e["path"])).parent) for e in files}
    out["sources"] = {"needed": record.get("form") != "zarr", "count": len(files),
                      "folder": folders.pop() if len(folders) == 1 else sorted(folders),
                      "missing": len(report.missing) if report else None,
                      "changed": len(report.changed) if report else None}
    return out


def _resolve(view: str, rel: str) -> str:
    return rel if os.path.isabs(rel) else os.path.normpath(
        os.path.join(os.path.dirname(os.path.abspath(view)), rel))
