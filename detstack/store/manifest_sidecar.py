"""A manifest's small arrays (train IDs, counts) read whole from its sidecar.

Through zarr such an array is one chunk per train (~0.6 ms each: over a minute for the
count arrays of a 30,000-train run). Where every chunk reference of the array points
exactly at a chunk of the same-named dataset of the local sidecar the record lists
(checked first, all at once), that dataset's chunks are read in one go and decoded by
us; otherwise the chunks are read as the references say.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
import zarr

from ..convert.chunk_index import chunk_table
from ..errors import CorruptChunkError, DetstackError
from .manifest_direct import DirectReader


def small_array(group: zarr.Group, fs: Any, record: dict[str, Any],
                 name: str) -> np.ndarray:
    """A coordinate array, read whole. Through zarr that is one chunk per train (~0.6 ms
    each: over a minute for the count arrays of a 30,000-train run), so where every chunk
    reference of the array points exactly at a chunk of the same-named dataset of the
    local sidecar the record lists (checked first, all at once), that dataset is read in
    one go; otherwise its chunks are read as the references say."""
    arr = group[name]
    info = record.get("manifest")
    listed = fs.locations.listed
    if isinstance(info, dict) and isinstance(info.get("sidecar"), dict) and listed \
            and "://" not in listed[-1].loc:
        loc = listed[-1].loc
        fs.guard.verify_now(loc)   # the listed sidecar: real path, size, identity
        with h5py.File(loc, "r") as f:
            ds = f.get(name)
            spans = _chunk_spans(ds) if isinstance(ds, h5py.Dataset) and ds.chunks \
                and ds.shape == arr.shape and ds.dtype == arr.dtype else None
            if spans is not None and _references_dataset(fs, name, ds, loc, spans):
                return _read_chunks(fs, ds, loc, *spans)
    direct = DirectReader.make(arr, fs.records, fs, functools.partial(_corrupt, fs, name),
                               lambda coords: (name,), _offset_of(arr))
    whole = direct.read(()) if direct is not None else None
    return np.asarray(arr[:]) if whole is None else whole


def _offset_of(arr: Any) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    """Where chunk ``coords`` of a sidecar array starts in the same-named sidecar
    dataset (same shape and chunks: it was copied there)."""
    chunks = tuple(int(c) for c in arr.chunks)
    return lambda coords: tuple(c * n for c, n in zip(coords, chunks, strict=True))


def _corrupt(fs: Any, name: str, coords: tuple[int, ...], exc: Exception
             ) -> CorruptChunkError:
    """A coordinate array's chunk that cannot be decoded (axes: (train,) or (module,
    train, ...)): named by key and train index."""
    key = f"{name}/{'.'.join(map(str, coords))}"
    train = coords[0] if len(coords) == 1 else coords[1]
    return CorruptChunkError(fs.view, f"chunk {key} of array {name} (train index {train}) "
                             f"cannot be decoded ({type(exc).__name__}: {exc})",
                             "Write the manifest again")


def _chunk_spans(ds: h5py.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """(offset, size) of every chunk of ``ds`` in C order of its chunk grid, or None if
    some chunk is not allocated or skipped a filter (the chunk index read in bulk where
    its format allows: ``chunk_index``)."""
    grid = tuple(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
    table = chunk_table(ds)
    n = math.prod(grid)
    if len(table) != n or table.mask.any():
        return None
    flat = np.ravel_multi_index(table.coords.T, grid)
    order = np.argsort(flat, kind="stable")
    if not np.array_equal(flat[order], np.arange(n)):
        return None
    return table.addr[order], table.size[order]


def _references_dataset(fs: Any, name: str, ds: h5py.Dataset, loc: str,
                        spans: tuple[np.ndarray, np.ndarray]) -> bool:
    """Is every chunk of zarr array ``name`` a reference to exactly the same chunk of
    ``ds`` in the file at ``loc`` (``spans``: its chunks, ``_chunk_spans``), so reading
    ``ds`` reads what zarr would? Compared as arrays against the manifest's reference
    table (one by one for JSON)."""
    offsets, sizes = spans
    table = fs.records.table(name, len(offsets)) if fs.records is not None else None
    if table is None:
        return _references_one_by_one(fs, name, ds, loc, offsets, sizes)
    urls, code, ref_offset, ref_size = table
    if (code < 0).any():
        return False
    same_file = np.array([_resolves_to(fs, url, loc) for url in urls] + [False], bool)
    return bool(same_file[code].all() and np.array_equal(ref_offset, offsets)
                and np.array_equal(ref_size, sizes))


SHUFFLE_DEFLATE = ([h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE], [h5py.h5z.FILTER_DEFLATE],
                   [])
SPAN_LIMIT = 64 << 20   # bytes of chunks read in one go


def _read_chunks(fs: Any, ds: h5py.Dataset, loc: str, offsets: np.ndarray,
                 sizes: np.ndarray) -> np.ndarray:
    """``ds`` read whole from its chunks (``offsets``, ``sizes`` in C order of its grid):
    one read of their span, inflated and unshuffled by us, all chunks at once (HDF5
    takes ~10 us per chunk: 0.3 s for a count array of 30,000 trains). Other filters,
    and anything that does not decode to the chunk's size, are read by HDF5."""
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    start, end = int(offsets.min()), int((offsets + sizes).max())
    if filters not in SHUFFLE_DEFLATE or end - start > SPAN_LIMIT or not ds.dtype.isnative \
            or ds.dtype.hasobject:
        return np.asarray(ds[()])
    buf = np.frombuffer(fs.guard.read_chunks(loc, start, end), np.uint8)
    per_chunk = math.prod(ds.chunks)
    nbytes = per_chunk * ds.dtype.itemsize
    try:
        data = _inflate_each(buf, offsets - start, sizes, nbytes) \
            if h5py.h5z.FILTER_DEFLATE in filters else _pieces(buf, offsets - start, sizes)
    except zlib.error:
        return np.asarray(ds[()])      # HDF5 names what is wrong
    if data is None or data.shape != (len(offsets), nbytes):
        return np.asarray(ds[()])
    if h5py.h5z.FILTER_SHUFFLE in filters:   # byte planes back into elements
        data = data.reshape(len(offsets), ds.dtype.itemsize, per_chunk).transpose(0, 2, 1)
    grid = tuple(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
    blocks = np.ascontiguousarray(data).view(ds.dtype).reshape(grid + tuple(ds.chunks))
    rank = len(grid)
    whole = blocks.transpose([j for i in range(rank) for j in (i, rank + i)]).reshape(
        tuple(g * c for g, c in zip(grid, ds.chunks, strict=True)))
    return np.ascontiguousarray(whole[tuple(slice(0, n) for n in ds.shape)])


GATHER_BYTES = 1 << 20   # compressed bytes gathered at once (an 8x larger index array)


def _pieces(buf: np.ndarray, first: np.ndarray, sizes: np.ndarray) -> np.ndarray | None:
    """(chunks, bytes) of equal-sized pieces ``buf[first[i]:first[i] + sizes[i]]``;
    None if their sizes differ."""
    if not len(sizes) or (sizes != sizes[0]).any():
        return None
    size = int(sizes[0])
    if (np.diff(first) == size).all():     # back to back: the span itself
        return buf[int(first[0]):int(first[0]) + len(sizes) * size].reshape(-1, size)
    return np.stack([buf[a:a + size] for a in first.tolist()])


def _inflate_each(buf: np.ndarray, first: np.ndarray, sizes: np.ndarray, nbytes: int
                  ) -> np.ndarray | None:
    """(chunks, ``nbytes``) of each deflated piece ``buf[first[i]:first[i] + sizes[i]]``
    inflated; None if one does not inflate to ``nbytes``. Per-train arrays repeat
    themselves (64 frames in every module, train after train), so a piece equal to the
    one before it is not inflated again: the count arrays of 30,000 trains are a few
    runs, not 30,000 zlib calls (~2 us each, and Python's per-piece work as much again)."""
    out = np.empty((len(sizes), nbytes), np.uint8)
    for size in np.unique(sizes).tolist():
        same = np.flatnonzero(sizes == size)
        step = max(1, GATHER_BYTES // size)
        for rows in (same[i:i + step] for i in range(0, len(same), step)):
            pieces = buf[first[rows, None] + np.arange(size)]
            # a piece equal to the one before it repeats its inflated bytes
            new = np.ones(len(rows), bool)
            new[1:] = (pieces[1:] != pieces[:-1]).any(axis=1)
            plain = [zlib.decompress(piece.tobytes()) for piece in pieces[new]]
            if any(len(p) != nbytes for p in plain):
                return None
            out[rows] = np.frombuffer(b"".join(plain), np.uint8).reshape(-1, nbytes)[
                np.cumsum(new) - 1]
    return out


def _resolves_to(fs: Any, url: str, loc: str) -> bool:
    try:
        return fs.resolve(url) == loc
    except DetstackError:
        return False


def _references_one_by_one(fs: Any, name: str, ds: h5py.Dataset, loc: str,
                           offsets: np.ndarray, sizes: np.ndarray) -> bool:
    grid = tuple(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
    for i, (start, size) in enumerate(zip(offsets.tolist(), sizes.tolist(), strict=True)):
        key = f"{name}/{'.'.join(str(int(j)) for j in np.unravel_index(i, grid))}"
        try:
            part, s, e = fs._cat_common(key)
        except (FileNotFoundError, DetstackError):
            return False
        if part != loc or (s, e) != (start, start + size):
            return False
    return True
