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

import base64
import functools
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numcodecs import Zlib

from ..errors import DetstackError
from ..progress import track
from .atomic import atomic_dir, atomic_path, check_target
from .manifest_holes import index_ranges, record_holes
from .manifest_paths import ManifestPaths, finish_record, manifest_paths
from .manifest_refs import (
    RefBatch,
    chunk_table,
    concat,
    dataset,
    dataset_id,
    key_rows,
    row_groups,
    source_datasets,
    url_numbers,
)
from .manifest_sidecar import check_sidecar_target, sidecar_path, sidecar_written
from .plan import KeyPlan, ViewPlan, as_detector

log = logging.getLogger(__name__)

INLINE_BELOW = 4096          # rows smaller than this (bytes) are copied into the manifest
INLINE_CHUNK_BYTES = 1 << 20  # chunk size of copied arrays
RECORD_SIZE = 100_000        # Parquet references per record file
_ZLIB = Zlib(level=1)

# HDF5 filter id -> (name, numcodecs config from the filter's client data)
_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "deflate",
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
}


class UnsupportedKeyError(DetstackError, ValueError):
    """A key whose data cannot be referenced exactly by a Zarr manifest."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"key {key!r} cannot be referenced by a zarr manifest: {reason}. "
                         "Copy it into a zarr store with detstack.convert.to_zarr instead, "
                         "or pass on_unsupported='skip' to leave it out of the manifest")


# -- HDF5 storage ---------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """How the rows of one source dataset are stored."""

    chunk: tuple[int, ...]          # chunk extent over the entry axes
    rows_per_chunk: int             # rows per HDF5 chunk (1 for contiguous storage)
    filters: tuple[tuple[str, int], ...]  # (name, parameter): deflate level, shuffle size
    contiguous_offset: int | None   # file offset of contiguous data (-1: unallocated)

    @property
    def signature(self) -> tuple[Any, ...]:
        """What must agree between files: chunk shape and filters (not deflate levels)."""
        return self.chunk, tuple((n, 0 if n == "deflate" else p) for n, p in self.filters)

    def codecs(self) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """Zarr v2 (filters, compressor): the HDF5 pipeline in its encoding order, all as
        filters (kerchunk's own form, and the one VirtualiZarr reads)."""
        conf = []
        for name, param in self.filters:
            if name == "deflate":
                conf.append({"id": "zlib", "level": param})
            elif name == "shuffle":
                conf.append({"id": "shuffle", "elementsize": param})
            else:
                conf.append({"id": "fletcher32"})
        return conf or None, None


def dataset_storage(ds: h5py.Dataset, kp: KeyPlan) -> Storage:
    """The storage of ``ds``, or UnsupportedKeyError saying why it cannot be referenced."""
    where = f"{ds.file.filename}:{ds.name}"
    if ds.is_virtual:
        raise UnsupportedKeyError(kp.key, f"{where} is a virtual dataset; build the manifest "
                                  "from the run's own files")
    if ds.dtype != kp.dtype or tuple(ds.shape[1:]) != kp.entry_shape:
        raise UnsupportedKeyError(kp.key, f"{where} has dtype {ds.dtype} and rows "
                                  f"{ds.shape[1:]}, unlike the other files")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count():
        raise UnsupportedKeyError(kp.key, f"{where} keeps its data in external files")
    layout = dcpl.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        return Storage(kp.entry_shape, 1, (), -1 if offset is None else int(offset))
    if layout != h5py.h5d.CHUNKED:
        raise UnsupportedKeyError(kp.key, f"{where} uses HDF5 compact storage")
    filters = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, name = dcpl.get_filter(i)
        if code not in _FILTERS:
            raise UnsupportedKeyError(kp.key, f"{where} uses the HDF5 filter "
                                      f"{name.decode(errors='replace')!r} (id {code}), which "
                                      "has no Zarr codec here")
        kind = _FILTERS[code]
        param = 0
        if kind == "deflate":
            param = int(values[0]) if values else 6
        elif kind == "shuffle":
            param = int(values[0]) if values else ds.dtype.itemsize
        filters.append((kind, param))
    storage = Storage(tuple(ds.chunks[1:]), int(ds.chunks[0]), tuple(filters), None)
    if filters and storage.rows_per_chunk > 1:
        raise UnsupportedKeyError(
            kp.key, f"{where} stores {storage.rows_per_chunk} rows per compressed chunk; a "
            "compressed chunk cannot be split into the per-frame chunks of the view, and its "
            "rows cross train boundaries")
    return storage


def _same_fill(ds: h5py.Dataset, kp: KeyPlan) -> bool:
    """Does HDF5 read unallocated storage as the view's fill value?"""
    hdf5_fill = np.asarray(ds.fillvalue, dtype=kp.dtype)
    view_fill = np.asarray(kp.fill_value, dtype=kp.dtype)
    return bool(np.array_equal(hdf5_fill, view_fill, equal_nan=kp.dtype.kind in "fc"))


# -- arrays of the manifest -------------------------------------------------------------


@dataclass
class ArraySpec:
    """One Zarr array: metadata plus referenced chunks or chunk bytes to inline."""

    name: str
    dims: list[str]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill: Any
    filters: list[dict[str, Any]] | None = None
    compressor: dict[str, Any] | None = None
    # referenced chunks: batches of references in ascending chunk order (RefBatch)
    refs: Callable[[], Iterator[RefBatch]] | None = None
    data: np.ndarray | None = None   # inlined arrays: the whole array
    copied: bool = False             # values copied from the run (inline or in the sidecar)
    unallocated: list[list[int]] = field(default_factory=list)  # see manifest_holes

    @property
    def referenced(self) -> bool:
        return self.refs is not None

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    def zarray(self) -> dict[str, Any]:
        fill = zarr_fill(self.fill, self.dtype)
        return {"zarr_format": 2, "shape": list(self.shape), "chunks": list(self.chunks),
                "dtype": self.dtype.str, "compressor": self.compressor,
                "filters": self.filters, "fill_value": fill, "order": "C",
                "dimension_separator": "."}

    def inline_chunks(self) -> Iterator[tuple[int, bytes]]:
        """(raveled chunk index, zlib-compressed bytes) of an inlined array."""
        assert self.data is not None
        grid = self.grid
        for i, idx in enumerate(np.ndindex(*grid)):
            sel = tuple(slice(j * c, (j + 1) * c) for j, c in zip(idx, self.chunks, strict=True))
            block = self.data[sel]
            if block.shape != self.chunks:  # zarr v2 stores edge chunks at full size
                full = np.full(self.chunks, self.fill, self.dtype)
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            yield i, bytes(_ZLIB.encode(np.ascontiguousarray(block, self.dtype)))


def zarr_fill(value: Any, dtype: np.dtype) -> Any:
    """A zarr v2 ``fill_value``: explicit where it is not zero (floats NaN, masks all bits
    set); ``null`` for zero-filled integers, so that plain xarray does not CF-mask their
    zeros (cell IDs, ADC values; detstack and zarr-python 3 read ``null`` as 0)."""
    if dtype.kind in "fc":
        return "NaN" if np.isnan(value) else float(value)
    if not value:
        return None
    return bool(value) if dtype.kind == "b" else int(value)


def inline_spec(name: str, dims: list[str], data: np.ndarray, fill: Any = 0) -> ArraySpec:
    """An array copied into the manifest, chunked along its first two axes."""
    data = np.ascontiguousarray(data)
    chunks = list(data.shape) or [1]
    row = data.itemsize * math.prod(data.shape[2:]) if data.ndim > 1 else data.itemsize
    if data.ndim >= 2:
        chunks[0] = 1
        chunks[1] = max(1, min(data.shape[1], INLINE_CHUNK_BYTES // max(row, 1)))
    chunks = [max(c, 1) for c in chunks]
    return ArraySpec(name, dims, data.shape, tuple(chunks), data.dtype, fill, None,
                     {"id": "zlib", "level": 1}, data=data, copied=True)


def referenced_spec(plan: ViewPlan, kp: KeyPlan, url_of: dict[Path, int]) -> ArraySpec:
    """References to every stored chunk of ``kp``, after checking they decode exactly;
    the references themselves are built when a writer asks for them, module by module."""
    fmap = plan.frame_map(kp)
    storages = {(fi, m): dataset_storage(dataset(fmap, fi, m, kp.key), kp)
                for fi, m in source_datasets(plan, kp)}
    signatures = {st.signature for st in storages.values()}
    if len(signatures) > 1:
        raise UnsupportedKeyError(kp.key, "its files differ in chunk shape or HDF5 filters "
                                  f"({sorted(map(str, signatures))[:2]}); one Zarr array has "
                                  "one chunk shape and one codec pipeline")
    first = next(iter(storages.values())) if storages else Storage(kp.entry_shape, 1, (), -1)
    filters, compressor = first.codecs()
    lead = (1,) * len(plan.lead_shape(kp))
    stored_chunk = tuple(first.chunk[i] for i in kp.kept_axes)  # dropped axes: length 1
    holes: list[list[int]] = []
    return ArraySpec(
        kp.key, list(plan.dims(kp)), plan.shape(kp), lead + stored_chunk, kp.dtype,
        kp.fill_value, filters, compressor,
        refs=functools.partial(_reference_batches, plan, kp, storages, first.chunk, url_of,
                               holes), unallocated=holes)


def _reference_batches(plan: ViewPlan, kp: KeyPlan, storages: dict[tuple[int, int], Storage],
                       chunk: tuple[int, ...], url_of: dict[Path, int],
                       holes: list[list[int]]) -> Iterator[RefBatch]:
    """One batch of references per module, in the view's chunk order (slot by slot);
    ``holes`` receives the chunks the counts promise but the files never allocated."""
    holes.clear()
    entry_grid = tuple(-(-e // c) for e, c in zip(kp.entry_shape, chunk, strict=True))
    n_e = math.prod(entry_grid)
    part_bytes = kp.dtype.itemsize * math.prod(chunk)
    fmap = plan.frame_map(kp)
    urls = url_numbers(fmap, url_of)
    for m in np.argsort(plan.slots, kind="stable").tolist():
        rows, _ = key_rows(plan, kp, [m])
        parts = []
        for fi, mi, sel in row_groups(rows):
            ds = dataset(fmap, fi, mi, kp.key)
            st = storages[fi, mi]
            src = rows.src_row[sel]
            k = st.rows_per_chunk
            n_row_chunks = -(-ds.shape[0] // k) if ds.shape[0] else 0
            if len(src) and int(src.max()) >= ds.shape[0]:
                raise UnsupportedKeyError(kp.key, f"INDEX of {ds.file.filename} points past "
                                          f"the end of {ds.name}")
            t_off, t_size, t_mask = chunk_table(ds, k, bool(st.filters), st.contiguous_offset,
                                                entry_grid, n_row_chunks)
            rc, within = src // k, src % k
            off = t_off[rc]                             # (n rows, n_e)
            if st.filters:
                size = t_size[rc]
                if (t_mask[rc][off >= 0] != 0).any():
                    raise UnsupportedKeyError(kp.key, f"some chunks of {ds.file.filename}:"
                                              f"{ds.name} skip HDF5 filters (filter_mask != 0)")
            else:
                off = np.where(off >= 0, off + (within * part_bytes)[:, None], -1)
                size = np.full(off.shape, part_bytes, np.int64)
            have = off >= 0
            if not have.all() and not _same_fill(ds, kp):
                raise UnsupportedKeyError(kp.key, f"rows of {ds.file.filename}:{ds.name} are "
                                          "not allocated and read as "
                                          f"{ds.fillvalue!r}, not the view's fill value "
                                          f"{kp.fill_value!r}")
            cidx = rows.view_row[sel][:, None] * n_e + np.arange(n_e)[None, :]
            holes += index_ranges(cidx[~have])
            parts.append(RefBatch(cidx[have], np.full(int(have.sum()), urls[fi], np.int32),
                                  off[have], size[have]))
        if parts:
            yield concat(parts)


def copied_spec(plan: ViewPlan, kp: KeyPlan) -> ArraySpec:
    """A small key read from the files and stored in the manifest (IDs, headers)."""
    fmap = plan.frame_map(kp)
    shape = plan.shape(kp)
    out = np.full((math.prod(plan.lead_shape(kp)),) + kp.entry_shape, kp.fill_value, kp.dtype)
    for module in range(fmap.n_modules):   # module by module: bounded row tables
        rows, _ = key_rows(plan, kp, [module])
        for fi, m, sel in row_groups(rows):
            dsid = dataset_id(fmap, fi, m, kp.key)   # small: read whole, low level (fast)
            if not dsid.shape or int(rows.src_row[sel].max()) >= dsid.shape[0]:
                raise UnsupportedKeyError(kp.key, f"INDEX of {fmap.files[fi].path} points "
                                          "past the end of its data")
            buf = np.empty(dsid.shape, kp.dtype)
            dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, buf)
            out[rows.view_row[sel]] = buf[rows.src_row[sel]]
    spec = inline_spec(kp.key, list(plan.dims(kp)), out.reshape(shape), kp.fill_value)
    spec.fill = kp.fill_value
    return spec


def coordinate_specs(plan: ViewPlan, groups: list[str]) -> list[ArraySpec]:
    """Train IDs, module numbers per slot and row counts per index group."""
    base = plan.det.kind.modno_base
    specs = [inline_spec("train", ["train"], plan.train_ids.astype(np.uint64)),
             inline_spec("module", ["module"], np.arange(plan.n_slots, dtype=np.int64) + base)]
    for g in groups:
        specs.append(inline_spec(f"count.{g}", ["module", "train"],
                                 plan.counts(g).astype(np.uint64)))
    if plan.frames:
        specs += [inline_spec(name, ["frame"], values)
                  for name, values in plan.frame_coordinates().items()]
    return specs


# -- writing -------------------------------------------------------------------------


def _metadata(specs: list[ArraySpec], root_attrs: dict[str, Any]) -> dict[str, Any]:
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
            if s.data is not None:
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
                  urls: list[str], record_size: int = RECORD_SIZE) -> None:
    """fsspec's lazy Parquet reference layout; holes are null paths (read as fill)."""
    try:
        import fastparquet
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Parquet manifests need fastparquet: pip install "
                          "'detstack[parquet]'") from exc
    path.mkdir(parents=True, exist_ok=True)
    url_arr = np.array(urls + [None], dtype=object)
    for s in specs:
        folder = path / s.name
        folder.mkdir()
        n_total = math.prod(s.grid)
        if s.data is not None:
            raws = [blob for _, blob in s.inline_chunks()]
            for r0 in range(0, n_total, record_size):
                df = pd.DataFrame({"raw": pd.Series(raws[r0:r0 + record_size], dtype=object)})
                fastparquet.write(str(folder / f"refs.{r0 // record_size}.parq"), df,
                                  compression="ZSTD", object_encoding={"raw": "bytes"},
                                  stats=False, write_index=False)
            continue
        assert s.refs is not None
        for r, batch in _records(s.refs(), record_size):
            n = min(record_size, n_total - r * record_size)
            pos = batch.index - r * record_size
            which = np.full(n, len(urls), np.int64)
            which[pos] = batch.url
            offset = np.zeros(n, np.int64)
            size = np.zeros(n, np.int64)
            offset[pos] = batch.offset
            size[pos] = batch.size
            df = pd.DataFrame({"path": pd.Series(url_arr[which], dtype=object),
                               "offset": offset, "size": size})
            fastparquet.write(str(folder / f"refs.{r}.parq"), df, compression="ZSTD",
                              object_encoding={"path": "utf8"}, has_nulls=["path"],
                              stats=False, write_index=False)
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


def _format(path: Path, format: str | None) -> str:
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
    files = [p.resolve() for p in plan.source_files()]
    url_of = {p: i for i, p in enumerate(files)}
    specs: list[ArraySpec] = []
    skipped: dict[str, str] = {}
    for kp in track(plan.keys, "references"):
        try:
            if kp.dtype.kind not in "biuf":
                raise UnsupportedKeyError(kp.key, f"its dtype {kp.dtype} is not a plain number")
            if kp.dtype.itemsize * math.prod(kp.entry_shape) < INLINE_BELOW:
                specs.append(copied_spec(plan, kp))
            else:
                specs.append(referenced_spec(plan, kp, url_of))
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
    specs += coordinate_specs(plan, groups)
    coords += [s.name for s in specs if s.dims == ["frame"]]
    return Layout(specs, record, coords, files, skipped)


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
    det_or_run : detector or DataCollection
        A detector object (e.g. ``detstack.AGIPD1M(run, raw=True)``, with any
        module/train selection), or a run holding a single detector.
    path : str or path-like
        ``.json`` for kerchunk JSON references, ``.parq`` for Parquet references
        (millions of chunks; needs the ``parquet`` extra).
    keys : list of str, optional
        Keys to write (default: every key all modules have).
    format : {'json', 'parquet'}, optional
        Override the format the name implies.
    relative : bool, default True
        The record names the source files relative to the manifest's folder (a run and
        its manifest moved together still open with ``open_view``); ``False`` records
        absolute paths. References always hold absolute paths (or URLs), which
        VirtualiZarr, kerchunk and plain fsspec resolve from any working folder.
    overwrite : bool, default False
        Replace an existing output; otherwise an existing one is refused.
    on_unsupported : {'raise', 'skip'}, default 'raise'
        Keys that cannot be referenced exactly (e.g. compressed with a filter zarr
        cannot decode) raise, or are left out with a warning.
    layout : {'trains', 'frames'}, default 'trains'
        ``"trains"``: (module, train, pulse, ...); ``"frames"``: (module, frame, ...)
        with per-frame ``train_id``, ``pulse_id``, ``cell_id`` coordinates and no
        padding of short trains.
    url_prefix : str, optional
        Where remote readers find the run's files, e.g. ``"s3://bucket/run/"``
        (implies ``compact``).
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
    pathlib.Path
        ``path``.

    Raises
    ------
    UnsupportedKeyError
        A key cannot be referenced exactly and ``on_unsupported='raise'``.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ImportError
        ``.parq`` without fastparquet installed (``pip install 'detstack[parquet]'``).
    OutputWriteError
        The manifest could not be written; nothing is left.
    """
    target = Path(path)
    fmt = _format(target, format)
    check_target(target, overwrite)
    compact = compact or url_prefix is not None   # remote files: the template form
    if not compact and fmt == "json":
        check_sidecar_target(sidecar_path(target, fmt), overwrite)
    det = as_detector(det_or_run, detector_name, **det_kwargs)
    folder = target.parent.resolve()
    lay = build_layout(det, keys, on_unsupported, "manifest", folder, layout)
    names = manifest_paths(lay.files, folder, relative, url_prefix, compact)
    with (atomic_path if fmt == "json" else atomic_dir)(target, overwrite) as tmp:
        if compact:
            _write(tmp, fmt, lay, names, None)
        else:
            with sidecar_written(folder / target.name, fmt, tmp, lay.specs,
                                 len(lay.files)) as (side, entry):
                _write(tmp, fmt, lay, names.add(side, folder), entry)
    return target


def _write(out: Path, fmt: str, lay: Layout, names: ManifestPaths,
           sidecar: dict[str, Any] | None) -> None:
    """The record (how files are named, the sidecar), the metadata, the references."""
    copied = [s.name for s in lay.specs if s.copied]
    attrs = finish_record(lay.record, fmt, names, copied, lay.skipped, sidecar)
    attrs["coordinates"] = " ".join(lay.coordinates)
    meta = _metadata(lay.specs, attrs)
    if fmt == "json":
        write_json(out, lay.specs, meta, names.refs, names.templates)
    else:
        write_parquet(out, lay.specs, meta, names.parquet_refs, RECORD_SIZE)
