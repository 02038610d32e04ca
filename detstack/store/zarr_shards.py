"""Read Zarr v3 arrays of a local store by decoding their shards (or chunks) ourselves.

zarr-python decodes one selection at a time through its asyncio pipeline and
reaches about a third of what the machine can decode. The stores ``to_zarr``
writes are simple: regular shards, the shard index at the end, inner chunks of
[transpose], bytes, then blosc/zstd/gzip/crc32c. For those, a read becomes one job
per shard: open it once, read its index, then each inner chunk the request touches
(only those) with one ``preadv`` into a reused buffer, and decode it with numcodecs
(which releases the GIL) straight into the output when it is contiguous there, else
into a second reused buffer and copy (un-transpose) the requested part. Anything else
(remote or zip stores, other codecs) is read by zarr-python.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np

from ..detectors.reading import DECODE_THREADS, run_jobs
from ..errors import CorruptChunkError, FileFormatError, MissingDataError
from ..safety import open_regular
from .blosc_decode import decode_blosc

EMPTY = int(np.iinfo(np.uint64).max)
Job = Callable[[], None]


def _crc32c(data: Any) -> int:
    """crc32c of a bytes-like object, without copying it: google_crc32c takes bytes and
    read-only numpy arrays, not memoryviews."""
    import google_crc32c
    if not isinstance(data, bytes):
        data = np.frombuffer(data, np.uint8)
        if data.flags.writeable:
            data = data.view()
            data.flags.writeable = False
    return int(google_crc32c.value(data))


_local = threading.local()


def _scratch(name: str, nbytes: int) -> np.ndarray:
    """A uint8 buffer of ``nbytes`` reused by this thread: a fresh megabyte-sized buffer
    per inner chunk costs page faults (the kernel zeroes every page) as dear as the
    decode, and a reused one stays in the CPU cache between read and decode."""
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    buf = cache.get(name)
    if buf is None or buf.nbytes < nbytes:
        cache[name] = buf = np.empty(max(nbytes, 1 << 20), np.uint8)
    return buf[:nbytes]


@dataclass(frozen=True)
class _Codecs:
    """The inner chunk pipeline, decoded back to front."""

    steps: tuple[Callable[[Any, np.ndarray | None], Any], ...]   # bytes->bytes, reversed
    order: tuple[int, ...] | None     # transpose codec order
    dtype: np.dtype                   # stored (bytes codec) dtype


def _bytes_step(spec: dict[str, Any]) -> Callable[[Any, np.ndarray | None], Any] | None:
    name, conf = spec["name"], spec.get("configuration", {})
    if name == "blosc":
        return decode_blosc
    if name == "zstd":
        codec = numcodecs.Zstd()
    elif name == "gzip":
        codec = numcodecs.GZip(level=conf.get("level", 5))
    elif name == "crc32c":
        def check(buf: Any, out: np.ndarray | None) -> Any:
            view = memoryview(buf).cast("B")
            stored = int(np.frombuffer(view[-4:], "<u4")[0])
            if _crc32c(view[:-4]) != stored:
                raise ValueError("crc32c checksum mismatch")
            return view[:-4]
        return check
    else:
        return None
    return lambda buf, out: codec.decode(buf, out=out)


def _chunk_codecs(inner: list[dict[str, Any]], data_type: str) -> _Codecs | None:
    """The codecs of one (inner) chunk: [transpose], bytes, then codecs we can decode."""
    inner = list(inner)
    order = None
    if inner and inner[0]["name"] == "transpose":
        order = tuple(inner.pop(0)["configuration"]["order"])
    if not inner or inner[0]["name"] != "bytes":
        return None
    endian = inner[0].get("configuration", {}).get("endian", "little")
    dtype = np.dtype(data_type).newbyteorder("<" if endian == "little" else ">")
    steps = [_bytes_step(c) for c in inner[1:]]
    if any(s is None for s in steps):
        return None
    return _Codecs(tuple(reversed(steps)), order, dtype)  # type: ignore[arg-type]


def parse_codecs(meta: dict[str, Any]) -> tuple[tuple[int, ...], _Codecs, int | None] | None:
    """(inner chunk shape, its codecs, shard index checksum bytes) of an array we can
    decode; the last is None for an unsharded array (each chunk is its own file)."""
    codecs = meta.get("codecs", [])
    if (not codecs or meta.get("chunk_grid", {}).get("name") != "regular"
            or meta.get("chunk_key_encoding", {}).get("name") != "default"):
        return None
    if codecs[0]["name"] != "sharding_indexed":
        parsed = _chunk_codecs(codecs, meta["data_type"])
        if parsed is None:
            return None
        return tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]), parsed, None
    if len(codecs) != 1:
        return None
    conf = codecs[0]["configuration"]
    index = [c["name"] for c in conf.get("index_codecs", [])]
    if conf.get("index_location", "end") != "end" or index not in (["bytes"], ["bytes", "crc32c"]):
        return None
    parsed = _chunk_codecs(conf["codecs"], meta["data_type"])
    if parsed is None:
        return None
    return tuple(conf["chunk_shape"]), parsed, 4 if index[-1] == "crc32c" else 0


class ShardedArray:
    """A zarr array of a local store, read shard by shard in parallel jobs (an unsharded
    array's chunk files count as shards of one inner chunk without an index: reading
    small keys such as pulse IDs through zarr-python's event loop costs milliseconds
    per call)."""

    def __init__(self, array: Any, folder: str, inner: tuple[int, ...], codecs: _Codecs,
                 index_extra: int | None, fill: Any) -> None:
        self.array = array
        self.folder = folder
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.shard = tuple(array.shards or array.chunks)
        self.inner = inner
        self.codecs = codecs
        self.index_extra = index_extra
        self.fill = fill
        self.grid = tuple(s // c for s, c in zip(self.shard, inner, strict=True))
        self.strides = tuple(math.prod(self.grid[i + 1:]) for i in range(len(self.grid)))

    @classmethod
    def wrap(cls, array: Any, folder: str | None) -> Any:
        """``array`` itself unless its shards (or chunks) are files we can decode."""
        if folder is None or not hasattr(array, "metadata"):
            return array
        meta = array.metadata.to_dict()
        parsed = parse_codecs(meta)
        if parsed is None or meta["chunk_key_encoding"].get("configuration", {}).get(
                "separator", "/") != "/":
            return array
        inner, codecs, extra = parsed
        return cls(array, os.path.join(folder, array.path), inner, codecs, extra,
                   array.fill_value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        sels = self._selection(index)
        if sels is None:
            return np.asarray(self.array[index])
        shape = tuple(len(range(a, b, s)) for a, b, s, d in sels if not d)
        out = np.empty(shape, self.dtype)
        run_jobs(self.read_jobs(index, out) or [], DECODE_THREADS)
        return out

    def _selection(self, index: tuple[Any, ...]) -> list[tuple[int, int, int, bool]] | None:
        """(start, stop, step, dropped) per axis of an index of ints and positive-step
        slices; None for anything else (one plain loop: it runs per module per read)."""
        if len(index) > len(self.shape):
            return None
        sels = []
        for item, size in zip(index, self.shape, strict=False):
            if isinstance(item, slice):
                if not (item.step or 1) > 0:
                    return None
                start, stop, step = item.indices(size)
                sels.append((start, max(stop, start), step, False))
            elif isinstance(item, (int, np.integer)):
                i = int(item) + (size if item < 0 else 0)
                sels.append((i, i + 1, 1, True))
            else:
                return None
        sels.extend((0, size, 1, False) for size in self.shape[len(index):])
        return sels

    def read_jobs(self, index: tuple[Any, ...], dest: np.ndarray,
                  batch: dict[Any, Any] | None = None) -> list[Job] | None:
        """Jobs that fill ``dest`` with ``self[index]``, one per shard; None: not here.

        Requests made with the same ``batch`` (one dict per read, passed by the reader)
        share their shard's job, so an inner chunk holding several trains is fetched and
        decoded once however many blocks of rows need it.
        """
        sels = self._selection(index)
        if sels is None:
            return None
        if any(a >= b for a, b, _, _ in sels):
            return []
        batch = {} if batch is None else batch
        dest_full = dest[tuple(np.newaxis if d else slice(None) for *_, d in sels)]
        ranges = [range(a // n, (b - 1) // n + 1) for (a, b, _, _), n in zip(sels, self.shard,
                                                                            strict=True)]
        jobs: list[Job] = []
        for shard in itertools.product(*ranges):
            key = (id(self), shard)
            requests = batch.get(key)
            if requests is None:
                batch[key] = requests = []
                jobs.append(lambda shard=shard, requests=requests:
                            self._read_shard(shard, requests))
            requests.append((sels, dest_full))
        return jobs

    def _shard_path(self, shard: Sequence[int]) -> str:
        return os.path.join(self.folder, "c", *map(str, shard))

    def _pieces(self, shard: tuple[int, ...], sels: list[tuple[int, int, int, bool]]
                ) -> list[tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]]:
        """(inner chunk position, slices inside the chunk, slices of the request's output)
        of the inner chunks of ``shard`` the request touches (only those: a shard of 64
        inner chunks read for one frame must not cost 64 trips through Python)."""
        per_axis = []
        for (a, b, st, _), s, n, c in zip(sels, shard, self.shard, self.inner, strict=True):
            base = s * n
            lo, hi = max(a, base), min(b, base + n)
            items = []
            for p in range((lo - base) // c, (hi - 1 - base) // c + 1) if lo < hi else ():
                l0 = base + p * c
                first = a + -(-(max(a, l0) - a) // st) * st
                stop = min(b, l0 + c)
                if first >= stop:
                    continue
                k = len(range(first, stop, st))
                t0 = (first - a) // st
                items.append((p, slice(first - l0, first - l0 + (k - 1) * st + 1, st),
                              slice(t0, t0 + k)))
            if not items:
                return []
            per_axis.append(items)
        return [tuple(zip(*combo, strict=True)) for combo in itertools.product(*per_axis)]

    def _read_shard(self, shard: tuple[int, ...],
                    requests: list[tuple[list[tuple[int, int, int, bool]], np.ndarray]]) -> None:
        path = self._shard_path(shard)
        uses: dict[tuple[int, ...], list[tuple[tuple[slice, ...], np.ndarray]]] = {}
        for sels, dest in requests:
            for pos, local, target in self._pieces(shard, sels):
                uses.setdefault(pos, []).append((local, dest[target]))
        if not uses:
            return
        fd = self._open(path, shard)      # one descriptor for the index and the chunks
        try:
            index = self._index(path, shard, fd)
            positions = sorted(uses)      # (plain Python: numpy costs more on 2 numbers)
            entries = [index[sum(p * s for p, s in zip(pos, self.strides, strict=True))].tolist()
                       for pos in positions]
            for pos, (off, nbytes) in zip(positions, entries, strict=True):
                if off == nbytes == EMPTY:
                    raise MissingDataError(path, f"shard {shard} of {self.array.path} lacks "
                                           f"inner chunk {pos} that the store's counts say "
                                           "holds frames", "The store is damaged; convert "
                                           "the run again")
                # one chunk at a time into a reused buffer: still in cache for the decoder
                raw = _scratch("raw", nbytes)
                if os.preadv(fd, [raw], off) != nbytes:
                    raise FileFormatError(path, "the shard file is truncated",
                                          "Convert the run again")
                self._decode_into(raw, uses[pos], path, lambda pos=pos: self._where(shard, pos))
        finally:
            os.close(fd)

    def _open(self, path: str, shard: tuple[int, ...]) -> int:
        """A descriptor of the shard (or chunk) file; a missing one is a MissingDataError."""
        try:
            return open_regular(path, f"shard of {self.array.path}")  # a FIFO would block
        except FileNotFoundError:
            t0 = shard[1] * self.shard[1]
            kind = "chunk" if self.index_extra is None else "shard"
            raise MissingDataError(path, f"{kind} {shard} of {self.array.path} (module slot "
                                   f"{shard[0] * self.shard[0]}, train indexes {t0}-"
                                   f"{min(t0 + self.shard[1], self.shape[1]) - 1}) is missing, "
                                   "but the store's counts say it holds frames",
                                   "The store is damaged; convert the run again") from None

    def _index(self, path: str, shard: tuple[int, ...], fd: int | None = None) -> np.ndarray:
        """The shard's (offset, nbytes) per inner chunk, read from ``fd`` if given."""
        if fd is None:
            fd = self._open(path, shard)
            try:
                return self._index(path, shard, fd)
            finally:
                os.close(fd)
        n = math.prod(self.grid)
        size = os.fstat(fd).st_size
        if self.index_extra is None:      # unsharded: the file is the one chunk
            return np.array([[0, size]], np.uint64)
        nbytes = 16 * n + self.index_extra
        raw = os.pread(fd, nbytes, size - nbytes) if size >= nbytes else b""
        if len(raw) != nbytes:
            raise FileFormatError(path, "the shard is shorter than its index", "Convert the "
                                  "run again")
        if self.index_extra and _crc32c(raw[:-4]) != int(np.frombuffer(raw[-4:], "<u4")[0]):
            raise FileFormatError(path, "the shard index checksum does not match",
                                  "The store is damaged; convert the run again")
        return np.frombuffer(raw[:16 * n], "<u8").reshape(n, 2)

    def _where(self, shard: tuple[int, ...], pos: tuple[int, ...]) -> str:
        """The inner chunk, module slot and trains, for error messages."""
        at = [s * n + p * c for s, n, p, c in zip(shard, self.shard, pos, self.inner,
                                                   strict=True)]
        last = min(at[1] + self.inner[1], self.shape[1]) - 1
        return (f"inner chunk {pos} of shard {shard}: module slot {at[0]}, train "
                f"index {at[1]}" + (f"-{last}" if last > at[1] else ""))

    def _decode_into(self, raw: np.ndarray,
                     uses: list[tuple[tuple[slice, ...], np.ndarray]], path: str,
                     where: Callable[[], str] = lambda: "") -> None:
        """Decode one inner chunk and copy it where each use wants it (straight into the
        output when one use takes the whole, untransposed chunk)."""
        codecs = self.codecs
        shape = self.inner if codecs.order is None else tuple(self.inner[i] for i in codecs.order)
        local, out = uses[0]
        direct = (len(uses) == 1 and codecs.order is None and out.flags.c_contiguous
                  and codecs.dtype == self.dtype == out.dtype
                  and all(s == slice(0, n, 1) for s, n in zip(local, self.inner, strict=True)))
        nbytes = math.prod(shape) * codecs.dtype.itemsize
        data: Any = raw
        try:
            for i, step in enumerate(codecs.steps):
                last = i == len(codecs.steps) - 1
                into = None
                if last:     # the decoded chunk: into the output, or a reused buffer
                    into = out.reshape(-1).view(np.uint8) if direct else _scratch("decoded",
                                                                                 nbytes)
                data = step(data, into)
        except Exception as exc:       # numcodecs raises RuntimeError/ValueError on bad data
            raise CorruptChunkError(path, f"an inner chunk of {self.array.path} ({where()}) "
                                    f"cannot be decoded ({exc})", "The store is damaged; "
                                    "convert the run again") from None
        if direct and isinstance(data, np.ndarray) and np.shares_memory(data, out):
            return          # decoded straight into the output
        flat = np.frombuffer(data, np.uint8)
        if flat.size != nbytes:
            raise FileFormatError(path, f"an inner chunk of {self.array.path} decodes to "
                                  f"{flat.size} bytes instead of {nbytes}",
                                  "The store is damaged; convert the run again")
        stored = flat.view(codecs.dtype).reshape(shape)
        for local, out in uses:
            if codecs.order is None:
                out[...] = stored[local]
            else:
                _untranspose_into(out, stored, codecs.order, local)


def _untranspose_into(out: np.ndarray, stored: np.ndarray, order: tuple[int, ...],
                      local: tuple[slice, ...]) -> None:
    """``out[...] = stored.transpose(inverse of order)[local]``; when ``order`` moved one
    short axis to the end (our layout: trains innermost), one pass per position along it
    (contiguous writes; ~2x numpy's general strided copy)."""
    n = stored.ndim
    axis = order[-1]
    if order[:-1] != tuple(a for a in range(n) if a != axis):
        out[...] = stored.transpose(np.argsort(order))[local]
        return
    rest = local[:axis] + local[axis + 1:]
    positions = range(stored.shape[-1])[local[axis]]
    for k, j in enumerate(positions):
        out[(slice(None),) * axis + (k,)] = stored[(Ellipsis, j)][rest]
