"""Writing a manifest's metadata and references: JSON in batches, Parquet record files."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Zlib

from .holes import record_holes
from .parallel import Tasks
from .records import (
    Shared,
    module_records,
    records,
    shared_records,
    write_record,
    write_table,
)
from .sidecar import SidecarWritten, write_sidecar
from .specs import ArraySpec

log = logging.getLogger(__name__)

_ZLIB = Zlib(level=1)

# -- writing -------------------------------------------------------------------------


def zarr_metadata(specs: list[ArraySpec], root_attrs: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": root_attrs}
    for s in specs:
        meta[f"{s.name}/.zarray"] = s.zarray()
        meta[f"{s.name}/.zattrs"] = {"_ARRAY_DIMENSIONS": s.dims}
    return meta


def _chunk_keys(spec: ArraySpec, index: np.ndarray) -> list[str]:
    coords = np.unravel_index(index, spec.grid)
    cols = [c.astype(str) for c in coords]
    prefix = spec.name + "/"
    return [prefix + ".".join(t) for t in zip(*cols, strict=True)]


JSON_BATCH = 100_000   # references encoded at a time


def write_json(path: Path, specs: list[ArraySpec], meta: dict[str, Any],
               urls: list[str], templates: dict[str, str]) -> None:
    """kerchunk's JSON reference layout, streamed: one batch of references in memory at a
    time, so memory does not grow with the run (the file does: ~100 bytes a chunk). The
    metadata comes last: its holes are known once the references are built."""
    sep = (",", ":")

    def batches() -> Iterator[dict[str, Any]]:
        for s in specs:
            if s.inline:
                yield {_chunk_keys(s, np.array([i]))[0]:
                       "base64:" + base64.b64encode(blob).decode()
                       for i, blob in s.inline_chunks()}
                continue
            assert s.refs is not None
            for b in s.refs():
                for lo in range(0, len(b), JSON_BATCH):
                    hi = lo + JSON_BATCH
                    yield {key: [urls[u], o, n] for key, u, o, n in zip(
                        _chunk_keys(s, b.index[lo:hi]), b.url[lo:hi].tolist(),
                        b.offset[lo:hi].tolist(), b.size[lo:hi].tolist(), strict=True)}
        record_holes(meta, specs)      # known once the references are built
        tail: dict[str, Any] = {k: json.dumps(v) for k, v in meta.items()}
        tail[".zmetadata"] = json.dumps({"zarr_consolidated_format": 1, "metadata": meta})
        yield tail

    with open(path, "w") as fh:
        head = {"version": 1, **({"templates": templates} if templates else {})}
        fh.write(json.dumps(head, separators=sep)[:-1] + ',"refs":{')
        first = True
        for batch in batches():
            if batch:   # each chunk key appears once: batches join into one object
                fh.write(("" if first else ",") + json.dumps(batch, separators=sep)[1:-1])
                first = False
        fh.write("}}")


SPOOL = ".pieces"   # inside the Parquet folder being written: the tasks' shared pieces


@dataclass
class StartedReferences:
    """The tasks of a Parquet manifest under way: the sidecar (if any, task 0), then the
    referenced keys' module tasks."""

    tasks: list[tuple[list[ArraySpec], int]]   # (keys, frame-map module)
    running: Tasks
    record_size: int
    sidecar: bool

    def results(self) -> tuple[SidecarWritten | None, list[list[Shared]]]:
        """Wait for every task: the sidecar's result, and each module task's pieces."""
        out = self.running.results()
        return (out[0], out[1:]) if self.sidecar else (None, out)


GROUP_MODULES = 8   # this many modules or more: one task per module for all its keys


def module_tasks(specs: list[ArraySpec]) -> list[tuple[list[ArraySpec], int]]:
    """The tasks building the referenced keys: one per module for all keys that have it
    (each source file opened once), or one per (key, module) when modules are too few to
    keep the workers busy."""
    per_key = [(s, m) for s in specs if s.source is not None for m in s.source.modules()]
    modules = sorted({m for _, m in per_key})
    if len(modules) < GROUP_MODULES:
        return [([s], m) for s, m in per_key]
    return [([s for s, mm in per_key if mm == m], m) for m in modules]


def sidecar_records(path: Path, specs: list[ArraySpec], url: int, target: Path,
                    record_size: int, url_arr: Any) -> SidecarWritten:
    """The sidecar task (a worker's, when there are workers): write the sidecar inside
    the Parquet folder ``path`` being written, then the record files of its arrays."""
    written = write_sidecar(path / "arrays.h5", specs, url, target)
    for s in specs:
        if s.copied:
            assert s.refs is not None
            for r, batch in records(s.refs(), record_size):
                write_record(path, s, r, batch, record_size, url_arr)
    return written


@contextlib.contextmanager
def parquet_references(path: Path, specs: list[ArraySpec], urls: list[str], record_size: int,
                       sidecar: Path | None = None) -> Iterator[StartedReferences]:
    """Start building the Parquet manifest at ``path``: the sidecar (arrays copied from
    the run; ``sidecar`` names the manifest, the sidecar's url number is the last of
    ``urls``) and the referenced keys, module by module, each task writing the records
    only it fills (``records``); ``urls`` names the files. Every task runs in a worker
    process where there are workers, so this process holds none of their data."""
    try:   # fastparquet reads them (fsspec, detstack): a manifest nobody here can read
        import fastparquet  # noqa: F401 - is refused before it is written
        import pyarrow as pa
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"Parquet manifests need {exc.name or 'pyarrow and fastparquet'}: "
                          "pip install 'detstack[parquet]'", name=exc.name) from exc
    path.mkdir(parents=True, exist_ok=True)
    (path / SPOOL).mkdir()
    for s in specs:
        (path / s.name).mkdir()
    url_arr = pa.array(urls, pa.string())
    tasks = module_tasks(specs)
    for s in specs:   # url numbers found here, once, not again in every worker
        if s.source is not None:
            s.source.urls  # noqa: B018 - a cached property, computed before the fork
    jobs: list[Callable[[], Any]] = [
        functools.partial(module_records, path, path / SPOOL, keys, m, record_size, url_arr)
        for keys, m in tasks]
    if sidecar is not None:
        jobs.insert(0, functools.partial(sidecar_records, path, specs, len(urls) - 1, sidecar,
                                         record_size, url_arr))
    with Tasks(lambda i: jobs[i](), len(jobs)) as running:
        yield StartedReferences(tasks, running, record_size, sidecar is not None)


def write_parquet(path: Path, specs: list[ArraySpec], meta: dict[str, Any],
                  urls: list[str], started: StartedReferences,
                  shared: list[list[Shared]]) -> None:
    """fsspec's lazy Parquet reference layout; holes are null paths (read as fill): the
    inline arrays of the compact form, then the records the module tasks shared
    (``shared``: their results), then the metadata."""
    import pyarrow as pa
    record_size = started.record_size
    url_arr = pa.array(urls, pa.string())
    for s in specs:
        if s.inline:
            (path / s.name).mkdir(exist_ok=True)
            raws = [blob for _, blob in s.inline_chunks()]
            for r0 in range(0, math.prod(s.grid), record_size):
                write_table(path / s.name / f"refs.{r0 // record_size}.parq",
                            {"raw": pa.array(raws[r0:r0 + record_size], pa.binary())})
    for s in specs:
        if s.source is None:
            continue
        mine = [sh for (keys, _), task in zip(started.tasks, shared, strict=True)
                for k, sh in zip(keys, task, strict=True) if k is s]
        s.unallocated[:] = [h for sh in mine for h in sh.holes]
        shared_records(path, s, mine, record_size, url_arr)
    (path / SPOOL).rmdir()   # empty now: every piece was joined into its record
    record_holes(meta, specs)      # known once the references are built
    zmeta = {"zarr_consolidated_format": 1, "metadata": meta, "record_size": record_size}
    (path / ".zmetadata").write_text(json.dumps(zmeta))


def manifest_format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in ("json", "parquet"):
            raise ValueError(f"format must be 'json' or 'parquet', not {format!r}")
        return format
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".parq", ".parquet"):
        return "parquet"
    raise ValueError(f"cannot tell the manifest format of {path.name}: name it .json or .parq, "
                     "or pass format='json'|'parquet'")
