"""The small arrays of a manifest, in an HDF5 file beside it that every tool can reference.

Coordinates (train IDs, module numbers, row counts) and small keys (pulse/cell IDs,
headers) are copied out of the run rather than referenced. Inline chunk data in the
references would keep the manifest in one file, but VirtualiZarr and tools built on it
refuse inline data. So they go into a sidecar HDF5 file, one dataset per array, chunked
exactly like the zarr array and compressed with shuffle + deflate, which zarr reads as
the ``shuffle`` + ``zlib`` codecs; the manifest references its chunks by byte range like
any source file. The record lists the sidecar with its size and content identity, so the
reader's trust model (``detstack.store.manifest_guard``) covers it like the run's files.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numcodecs
import numpy as np

from ...errors import OutputWriteError
from ...run.derived import SIDECAR_ATTR
from ...store.identity import file_identity
from ..atomic import atomic_h5, scratch_h5, write_failure
from ..chunk_index import chunk_table
from ..heap import release_free_memory
from .copied import WINDOW_TRAINS, has_train_axis, train_blocks
from .refs import RefBatch

if TYPE_CHECKING:
    from .specs import ArraySpec

DEFLATE_LEVEL = 1
FILL_GROUP = "fill_chunks"    # one encoded chunk of fill values per referenced array
MAX_FILL_CHUNK = 1 << 20      # larger fill chunks (uncompressed) only where needed


def sidecar_path(target: Path, fmt: str) -> Path:
    """Where the sidecar of manifest ``target`` lives: beside a JSON file
    (``view.json`` -> ``view.arrays.h5``), inside a Parquet folder (``view.parq/arrays.h5``)."""
    if fmt == "parquet":
        return target / "arrays.h5"
    return target.with_name(target.stem + ".arrays.h5")


def sidecar_chunks(dims: list[str], shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """One train per chunk (all modules together), so that manifests of different trains
    concatenate along ``train`` chunk for chunk (kerchunk's ``MultiZarrToZarr``, xarray
    on VirtualiZarr datasets), like the referenced arrays; other arrays whole."""
    chunks = [max(n, 1) for n in shape]
    if len(dims) >= 2 and dims[0] == "train":      # (train, pulse|cell) frame IDs
        chunks[0] = 1
    if len(dims) >= 2 and dims[1] == "train":
        chunks[1] = 1
        per_module = itemsize * math.prod(chunks[2:])
        chunks[0] = max(1, min(chunks[0], MAX_FILL_CHUNK // max(per_module, 1)))
    return tuple(chunks)


def check_sidecar_target(path: Path, overwrite: bool) -> None:
    """Refuse to replace a file at the sidecar's name that is not a sidecar (unless
    ``overwrite``): a leftover sidecar is replaced, someone's data is not."""
    if overwrite or not path.exists():
        return
    try:
        with h5py.File(path, "r") as f:
            if SIDECAR_ATTR in f.attrs:
                return
    except (OSError, ValueError):
        pass
    raise FileExistsError(f"{path} exists and is not the sidecar of a manifest; the manifest "
                          "keeps its small arrays under this name. Move it, or pass "
                          "overwrite=True (CLI: --overwrite)")


@dataclass
class SidecarWritten:
    """What the parent needs of a sidecar written elsewhere (a worker process): its record
    entry and, per referenced array, where its fill chunk lies (offset, size)."""

    entry: dict[str, Any]
    fills: dict[str, tuple[int, int]] = field(default_factory=dict)


@contextlib.contextmanager
def sidecar_written(target: Path, specs: list[ArraySpec], url: int
                    ) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Write the sidecar of JSON manifest ``target``; yield its path and record entry. It
    is in place first (atomically), and removed again if the manifest fails."""
    final = sidecar_path(target, "json")
    written = write_sidecar(final, specs, url, target)
    try:
        yield final, written.entry
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def write_sidecar(path: Path, specs: list[ArraySpec], url: int, target: Path
                  ) -> SidecarWritten:
    """Write the copied arrays of ``specs`` into ``path`` (atomically: a temporary name
    beside it, renamed when complete) and turn each into a referenced array (references
    number ``url``), plus the fill chunk of each referenced array. A failed write raises
    ``OutputWriteError`` naming the manifest ``target``, and leaves nothing."""
    copied = [s for s in specs if s.copied]
    referenced = [s for s in specs if s.source is not None]
    place_copied(specs)
    # on disk, a window of trains at a time: memory does not grow with the run. The
    # earliest format: version-1 B-tree chunk indexes, which chunk_index reads in bulk.
    # No chunk cache: every chunk is written whole, once, and a cache of the default
    # size held ~9 MB per dataset after each window (140 MB for a corrected run's keys).
    # The windows interleave the datasets' chunks, so they are written to a scratch
    # file and copied into place one dataset after the other: a reader then finds each
    # array in one short span (a count array of 30,000 trains: 0.4 MB, not 54 MB)
    try:
        with scratch_h5(path, libver="earliest", rdcc_nbytes=0) as stage:
            _fill(stage, copied, referenced)
            with atomic_h5(path, True, libver="earliest", rdcc_nbytes=0) as f:
                _one_after_another(stage, f)
    except OutputWriteError as exc:   # name the manifest the caller asked for
        raise write_failure(target, exc.__cause__ or exc) from exc
    written = SidecarWritten({})
    with h5py.File(path, "r") as f:
        for s in referenced:
            if f"{FILL_GROUP}/{s.name}" in f:
                ds = f[f"{FILL_GROUP}/{s.name}"]
                written.fills[s.name] = (int(ds.id.get_offset()), int(ds.shape[0]))
    for s in copied:
        s.refs = _batches(path, s.name, s.grid, url)
    adopt(specs, written, url)
    ident = file_identity(path)
    written.entry.update(size=ident["size"], identity=ident)
    return written


def place_copied(specs: list[ArraySpec]) -> None:
    """Give the copied arrays of ``specs`` the chunks they have in the sidecar (the same
    in every process: it depends on their shapes only)."""
    for s in specs:
        if s.copied:
            s.chunks = sidecar_chunks(s.dims, s.shape, s.dtype.itemsize)


def adopt(specs: list[ArraySpec], written: SidecarWritten, url: int) -> None:
    """Make ``specs`` describe the sidecar ``written`` (also where another process wrote
    it): copied arrays become arrays stored in it with shuffle + zlib, referenced arrays
    get their fill chunk's reference."""
    place_copied(specs)
    for s in specs:
        if s.copied:
            s.data = s.copy_from = s.lazy = s.window = None
            shuffle = [{"id": "shuffle", "elementsize": s.dtype.itemsize}] \
                if s.dtype.itemsize > 1 else []
            s.filters = [*shuffle, {"id": "zlib", "level": DEFLATE_LEVEL}]   # kerchunk's form
            s.compressor = None
        elif s.source is not None and s.name in written.fills:
            offset, size = written.fills[s.name]
            s.source.fill_ref = RefBatch(np.array([s.last_chunk], np.int64),
                                         np.array([url], np.int32),
                                         np.array([offset], np.int64), np.array([size], np.int64))


def _fill(f: h5py.File, copied: list[ArraySpec], referenced: list[ArraySpec]) -> None:
    """The sidecar's datasets: fill chunks, then the copied arrays; keys and coordinates
    with a train axis a window of trains at a time (``train_blocks``, ``coords``)."""
    f.attrs[SIDECAR_ATTR] = "small arrays of a detstack zarr manifest"
    for s in referenced:
        blob = _fill_chunk(s)
        if blob is not None:
            f.create_dataset(f"{FILL_GROUP}/{s.name}", data=np.frombuffer(blob, np.uint8))
    keys: dict[str, tuple[h5py.Dataset, Any]] = {}
    coords: list[tuple[h5py.Dataset, ArraySpec]] = []
    for s in copied:
        key = s.data is None and s.copy_from is not None and has_train_axis(*s.copy_from)
        stream = key or (s.data is None and s.window is not None)
        ds = f.create_dataset(
            s.name, shape=s.shape, dtype=s.dtype, data=None if stream else s.load(),
            chunks=s.chunks, shuffle=s.dtype.itemsize > 1, compression="gzip",
            compression_opts=DEFLATE_LEVEL, fillvalue=np.asarray(s.fill, s.dtype))
        ds.attrs["dims"] = s.dims
        s.data = None
        if key:
            keys[s.name] = (ds, s.copy_from)
        elif stream:
            coords.append((ds, s))
    if not keys and not coords:
        return
    if keys:
        plan = next(iter(keys.values()))[1][0]
        windows = train_blocks(plan, [kp for _, (_, kp) in keys.values()])
    else:
        n = coords[0][1].shape[coords[0][1].dims.index("train")]
        windows = ((t0, min(t0 + WINDOW_TRAINS, n), {}) for t0 in range(0, n, WINDOW_TRAINS))
    for t0, t1, blocks in windows:
        for name, block in blocks.items():
            keys[name][0][:, t0:t1] = block
        for ds, s in coords:   # the pulse/cell IDs from their keys' blocks
            assert s.window is not None
            axis = s.dims.index("train")
            ds[(slice(None),) * axis + (slice(t0, t1),)] = s.window(t0, t1, blocks)
        del blocks   # only one window in memory: the next one is built without it
        release_free_memory()


def _one_after_another(src: h5py.File, dst: h5py.File) -> None:
    """Copy every object of ``src`` into ``dst`` (HDF5 copies the stored chunks as they
    are, in chunk order), each dataset's chunks after the previous dataset's."""
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name in src:
        src.copy(src[name], dst, name)


def _batches(path: Path, name: str, grid: tuple[int, ...], url: int
             ) -> Callable[[], Iterator[RefBatch]]:
    """A reference source for the chunks of dataset ``name`` of the sidecar ``path``,
    read when asked for (in bulk: ``chunk_index``), so that only the array being written
    holds its references (a 30,000-train run has 30,000 chunks per array)."""
    def refs() -> Iterator[RefBatch]:
        with h5py.File(path, "r") as f:
            ds = f[name]
            if not math.prod(ds.shape):
                z = np.zeros(0, np.int64)
                yield RefBatch(z, np.zeros(0, np.int32), z, z)
                return
            table = chunk_table(ds)
        index = (np.ravel_multi_index(tuple(table.coords.T), grid) if grid
                 else np.zeros(len(table), np.int64))
        order = np.argsort(index, kind="stable")
        yield RefBatch(index[order].astype(np.int64), np.full(len(table), url, np.int32),
                       table.addr[order], table.size[order])
    return refs


def _fill_chunk(spec: ArraySpec) -> bytes | None:
    """One chunk of the array's fill value, encoded with its codecs.

    VirtualiZarr (2.5) sizes a chunk grid by the highest chunk each axis references, so
    an array whose last chunk is absent (the last module slot missing, say) would read
    as a smaller grid and fail. The manifest then references this chunk there (fill
    values, exactly what an absent chunk reads as)."""
    if not math.prod(spec.grid):
        return None
    n = math.prod(spec.chunks) * spec.dtype.itemsize
    codecs = [*(spec.filters or []), *([spec.compressor] if spec.compressor else [])]
    if not codecs and n > MAX_FILL_CHUNK:
        return None
    buf: Any = np.full(spec.chunks, spec.fill, spec.dtype).tobytes()
    for conf in codecs:
        buf = numcodecs.get_codec(dict(conf)).encode(buf)
    return bytes(buf)
