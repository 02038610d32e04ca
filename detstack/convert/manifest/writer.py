"""Zarr manifests: a run laid out as one array per key, as references into its own files.

A manifest holds Zarr (v2) metadata and, for every chunk, a byte range inside the
original HDF5 files, in the kerchunk reference format that fsspec reads: JSON
(``.json``) or Parquet (``.parq``, for millions of chunks). Plain
``xarray.open_dataset("reference://", engine="zarr", ...)`` and zarr-python open it;
``detstack.store.open_view`` turns it back into a collection every detector accepts.

Zarr can only reference what it can decode chunk by chunk, so each chunk of the
view must be exactly one HDF5 chunk (or one row of uncompressed storage): keys
where that is impossible are refused (or skipped) with the reason, never written
wrong. Small keys (pulse/cell IDs, headers) and the coordinates are copied into
the manifest instead, compressed.

Arrays follow ``ViewPlan`` with ``squeeze=True``: raw LPD/DSSC frames are ``(module,
train, pulse, slow_scan, fast_scan)`` (the source's length-1 axis dropped; the chunk
bytes are the same), every dimension named; ``layout="frames"`` gives ``(module, frame,
...)``. Fill values follow the view convention; ``.zarray`` names them where they are
not zero (floats NaN, masks all bits set) and keeps ``null`` for zero-filled integers.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...progress import track
from ..atomic import atomic_dir, atomic_path, check_target
from ..plan import KeyPlan, ViewPlan, as_detector
from ..writer_docs import writer_docs
from .output import (
    StartedReferences,
    manifest_format,
    parquet_references,
    write_json,
    write_parquet,
    zarr_metadata,
)
from .paths import ManifestPaths, finish_record, manifest_paths
from .sidecar import adopt, check_sidecar_target, sidecar_path, sidecar_written
from .specs import (
    INLINE_BELOW,
    ArraySpec,
    coordinate_specs,
    copied_spec,
    key_storages,
    referenced_spec,
)
from .storage import UnsupportedKeyError

log = logging.getLogger(__name__)

RECORD_SIZE = 100_000        # Parquet references per record file


@dataclass
class Layout:
    """Everything a reference writer needs: the arrays, the record, the source files."""

    specs: list[ArraySpec]     # keys, then coordinates
    record: dict[str, Any]
    coordinates: list[str]     # names xarray should show as coordinates
    files: list[Path]          # resolved source files; ArraySpec.url indexes this list
    skipped: dict[str, str]


def build_layout(det: Any, keys: list[str] | None, on_unsupported: str, form: str,
                 base: Path, layout: str = "trains") -> Layout:
    """Check and reference every key (copying the small ones), plus the coordinates."""
    if on_unsupported not in ("raise", "skip"):
        raise ValueError(f"on_unsupported must be 'raise' or 'skip', not {on_unsupported!r}")
    plan = ViewPlan(det, keys, layout=layout, squeeze=True)
    given = plan.source_files()
    files = [p.resolve() for p in given]
    url_of = {p: i for i, p in enumerate(files)}
    url_of.update({p: url_of[r] for p, r in zip(given, files, strict=True)})  # as the run names them
    specs: list[ArraySpec] = []
    skipped: dict[str, str] = {}
    def copied(kp: KeyPlan) -> bool:
        return kp.dtype.itemsize * math.prod(kp.entry_shape) < INLINE_BELOW

    storages = key_storages(plan, [kp for kp in plan.keys
                                   if kp.dtype.kind in "biuf" and not copied(kp)])
    for kp in track(plan.keys, "references"):
        try:
            if kp.dtype.kind not in "biuf":
                raise UnsupportedKeyError(kp.key, f"its dtype {kp.dtype} is not a plain number")
            if copied(kp):
                specs.append(copied_spec(plan, kp))
            else:
                specs.append(referenced_spec(plan, kp, url_of, storages[kp.key]))
        except UnsupportedKeyError as exc:
            if on_unsupported == "raise":
                raise
            warnings.warn(str(exc), stacklevel=3)
            skipped[kp.key] = exc.reason
    kept = [kp for kp in plan.keys if kp.key not in skipped]
    if not kept:
        raise UnsupportedKeyError(", ".join(skipped), "no key of the detector can be "
                                  "referenced exactly")
    record = plan.record(form, base=base)
    record["keys"] = {k: v for k, v in record["keys"].items() if k not in skipped}
    groups = sorted({kp.group for kp in kept})
    record["index_groups"] = groups
    coords = [f"count.{g}" for g in groups]
    coords += [k for k in (det.kind.pulse_key, det.kind.cell_key)
               if k in record["keys"] and k not in coords]
    coord_specs = coordinate_specs(plan, [kp.key for kp in kept])
    specs += coord_specs
    coords += [s.name for s in coord_specs if s.name not in ("train", "module", *coords)]
    return Layout(specs, record, coords, files, skipped)


@writer_docs
def to_manifest(det_or_run: Any, path: str | os.PathLike[str], *, keys: list[str] | None = None,
                format: str | None = None, relative: bool = True, overwrite: bool = False,
                on_unsupported: str = "raise", url_prefix: str | None = None,
                layout: str = "trains", compact: bool = False,
                detector_name: str | None = None, **det_kwargs: Any) -> Path:
    """Write a zarr manifest (kerchunk references) of a detector's run; return its path.

    One reference per chunk points into the run's HDF5 files (no copy), so
    ``xarray.open_dataset("reference://", engine="zarr", ...)``, zarr-python and
    ``detstack.open_view`` read it. The manifest opens wherever it is written.

    Parameters
    ----------
    $det_or_run
    path : str or path-like
        ``.json`` for kerchunk JSON references, ``.parq`` for Parquet references
        (millions of chunks; needs the ``parquet`` extra).
    $keys
    format : {'json', 'parquet'}, optional
        Override the format the name implies.
    relative : bool, default True
        The record names the source files relative to the manifest's folder (a run and
        its manifest moved together still open with ``open_view``); ``False`` records
        absolute paths. References always hold absolute paths (or URLs), which
        VirtualiZarr, kerchunk and plain fsspec resolve from any working folder.
    $overwrite
    on_unsupported : {'raise', 'skip'}, default 'raise'
        Keys that cannot be referenced exactly (e.g. compressed with a filter zarr
        cannot decode) raise, or are left out with a warning.
    layout : {'trains', 'frames'}, default 'trains'
        ``"trains"``: (module, train, pulse, ...); ``"frames"``: (module, frame, ...)
        with per-frame ``train_id``, ``pulse_id``, ``cell_id`` coordinates and no
        padding of short trains.
    url_prefix : str, optional
        Where remote readers find the run's files, e.g. ``"s3://bucket/run/"``:
        references are full URLs (the prefix + each file's path in the run's folder).
        The sidecar is named by URL too when the manifest is written inside the run's
        folder (publish them together), else by its local ``file://`` URL.
    compact : bool, default False
        The older single-file form: references relative to a ``{{base}}`` template
        and small arrays inline. Smaller, read by fsspec/xarray/zarr-python and
        detstack, but not by VirtualiZarr. By default small arrays and coordinates
        go into a sidecar HDF5 file beside the manifest (``view.arrays.h5``; inside
        a Parquet folder: ``arrays.h5``), listed in the record with its identity.
    detector_name : str, optional
        Detector to pick when ``det_or_run`` is a run with several.
    **det_kwargs
        Passed to the detector class when ``det_or_run`` is a run (``modules=``,
        ``min_modules=``, ``raw=``...).

    Returns
    -------
    $returns_path

    Raises
    ------
    UnsupportedKeyError
        A key cannot be referenced exactly and ``on_unsupported='raise'``.
    $path_exists
    ImportError
        ``.parq`` without fastparquet installed (``pip install 'detstack[parquet]'``).
    OutputWriteError
        The manifest could not be written; nothing is left.
    """
    target = Path(path)
    fmt = manifest_format(target, format)
    check_target(target, overwrite)
    if not compact and fmt == "json":
        check_sidecar_target(sidecar_path(target, fmt), overwrite)
    det = as_detector(det_or_run, detector_name, **det_kwargs)
    folder = target.parent.resolve()
    lay = build_layout(det, keys, on_unsupported, "manifest", folder, layout)
    names = manifest_paths(lay.files, folder, relative, url_prefix, compact)
    if fmt == "json":
        with atomic_path(target, overwrite) as tmp:
            if compact:
                _write_json(tmp, lay, names, None)
            else:
                with sidecar_written(folder / target.name, lay.specs,
                                     len(lay.files)) as (side, entry):
                    _write_json(tmp, lay, names.add(side, folder), entry)
        return target
    side = None if compact else sidecar_path(folder / target.name, fmt)
    if side is not None:
        names = names.add(side, folder)
    with atomic_dir(target, overwrite) as tmp, \
            parquet_references(tmp, lay.specs, names.parquet_refs, RECORD_SIZE,
                               None if side is None else folder / target.name) as started:
        _write_parquet(tmp, lay, names, started)
    return target


def _metadata(lay: Layout, fmt: str, names: ManifestPaths,
              sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """The record (how files are named, the sidecar) and the Zarr metadata."""
    copied = [s.name for s in lay.specs if s.copied]
    attrs = finish_record(lay.record, fmt, names, copied, lay.skipped, sidecar)
    attrs["coordinates"] = " ".join(lay.coordinates)
    return zarr_metadata(lay.specs, attrs)


def _write_json(out: Path, lay: Layout, names: ManifestPaths,
                sidecar: dict[str, Any] | None) -> None:
    write_json(out, lay.specs, _metadata(lay, "json", names, sidecar), names.refs,
               names.templates)


def _write_parquet(out: Path, lay: Layout, names: ManifestPaths,
                   started: StartedReferences) -> None:
    """Wait for the tasks (sidecar, modules), then the metadata and the shared records."""
    written, shared = started.results()
    if written is not None:   # written in a worker: these specs learn what it wrote
        adopt(lay.specs, written, len(names.parquet_refs) - 1)
    meta = _metadata(lay, "parquet", names, None if written is None else written.entry)
    write_parquet(out, lay.specs, meta, names.parquet_refs, started, shared)
