"""Writing a manifest's metadata and references: JSON in batches, Parquet record files."""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Zlib

from .holes import record_holes
from .parallel import map_tasks
from .refs import (
    RefBatch,
    concat,
)
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


def write_parquet(path: Path, specs: list[ArraySpec], meta: dict[str, Any],
                  urls: list[str], record_size: int) -> None:
    """fsspec's lazy Parquet reference layout; holes are null paths (read as fill).

    Written with pyarrow straight from the reference arrays: the path column is
    dictionary-encoded (each record file stores the paths it uses once, and per reference
    only their number), so no Python string is made per reference. The files carry no
    pandas or arrow schema, so every reader (fastparquet, which fsspec uses by default,
    pyarrow, kerchunk, VirtualiZarr) sees plain string, int64 and binary columns."""
    try:   # fastparquet reads them (fsspec, detstack): a manifest nobody here can read
        import fastparquet  # noqa: F401 - is refused before it is written
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"Parquet manifests need {exc.name or 'pyarrow and fastparquet'}: "
                          "pip install 'detstack[parquet]'", name=exc.name) from exc

    def write(file: Path, columns: dict[str, Any]) -> None:
        # offsets and sizes: required columns with statistics (pandas reading through
        # fastparquet makes an integer column without them float, room for nulls)
        ints = [name for name in ("offset", "size") if name in columns]
        fields = [pa.field(name, col.type if isinstance(col, pa.Array) else pa.int64(),
                           nullable=name not in ints) for name, col in columns.items()]
        pq.write_table(pa.table(columns, schema=pa.schema(fields)), file, compression="zstd",
                       write_statistics=ints or False, store_schema=False,
                       use_dictionary=["path"])

    path.mkdir(parents=True, exist_ok=True)
    url_arr = pa.array(urls, pa.string())
    for s in specs:
        (path / s.name).mkdir()
    for s in specs:
        if s.inline:
            raws = [blob for _, blob in s.inline_chunks()]
            for r0 in range(0, math.prod(s.grid), record_size):
                write(path / s.name / f"refs.{r0 // record_size}.parq",
                      {"raw": pa.array(raws[r0:r0 + record_size], pa.binary())})

    def references(s: ArraySpec) -> list[list[int]]:
        """Write the record files of ``s``; its unallocated chunks (see holes.py)."""
        assert s.refs is not None
        n_total = math.prod(s.grid)
        for r, batch in _records(s.refs(), record_size):
            n = min(record_size, n_total - r * record_size)
            pos = batch.index - r * record_size
            used, number = np.unique(batch.url, return_inverse=True)
            which = np.full(n, -1, np.int32)
            which[pos] = number
            offset = np.zeros(n, np.int64)
            size = np.zeros(n, np.int64)
            offset[pos] = batch.offset
            size[pos] = batch.size
            paths = pa.DictionaryArray.from_arrays(pa.array(which, mask=which < 0),
                                                   url_arr.take(pa.array(used)))
            write(path / s.name / f"refs.{r}.parq",
                  {"path": paths, "offset": offset, "size": size})
        return s.unallocated

    referenced = [s for s in specs if not s.inline]
    for s, holes in zip(referenced, map_tasks(lambda i: references(referenced[i]),
                                              len(referenced)), strict=True):
        s.unallocated[:] = holes
    record_holes(meta, specs)      # known once the references are built
    zmeta = {"zarr_consolidated_format": 1, "metadata": meta, "record_size": record_size}
    (path / ".zmetadata").write_text(json.dumps(zmeta))


def _records(batches: Iterator[RefBatch], record_size: int) -> Iterator[tuple[int, RefBatch]]:
    """(record number, its references) for every record holding references, from
    batches in ascending chunk order; only the current record stays in memory."""
    pending: list[RefBatch] = []
    for batch in batches:
        if not len(batch):
            continue
        pending.append(batch)
        merged = concat(pending) if len(pending) > 1 else batch
        complete = (int(merged.index[-1]) + 1) // record_size   # records below are final
        rec = merged.index // record_size
        cut = int(np.searchsorted(rec, complete))
        bounds = np.flatnonzero(np.diff(rec[:cut])) + 1
        for sel in np.split(np.arange(cut), bounds):
            if len(sel):
                yield int(rec[sel[0]]), _take(merged, sel)
        pending = [_take(merged, np.arange(cut, len(merged)))] if cut < len(merged) else []
    if pending:
        merged = concat(pending)
        rec = merged.index // record_size
        for sel in np.split(np.arange(len(rec)), np.flatnonzero(np.diff(rec)) + 1):
            yield int(rec[sel[0]]), _take(merged, sel)


def _take(b: RefBatch, sel: np.ndarray) -> RefBatch:
    return RefBatch(b.index[sel], b.url[sel], b.offset[sel], b.size[sel])


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
