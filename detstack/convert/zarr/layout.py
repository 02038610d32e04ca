"""How each key of a view is laid out in a zarr store: dims, shards, chunks, codecs.

Large keys (pixel data) are sharded FRAME_TRAINS trains per module per shard, with one
inner chunk per pulse (JUNGFRAU: per memory cell) holding that pulse of every train of
the shard, stored with the train axis innermost (the standard ``transpose`` codec). Memory
cells cycle with the pulse, so an inner chunk holds frames of one cell, whose pedestals are
equal: bit shuffling then finds the constant high bits train after train (raw AGIPD: 1.98x
instead of 1.45x for one frame per chunk, at ~0.85x the encode speed; see
``benchmarks/bench_codecs.py``). Small keys (pulse IDs, headers...) would make millions
of tiny objects that way; they are stored as plain chunks of a block of trains.
Every stored object (shard, or chunk when unsharded) lies inside one module slot
and inside one *train block*, so one task can own and write it alone.

In the frame layout (``layout="frames"``) per-frame keys are ``(module, frame, ...)``:
large keys are sharded ``FRAME_SHARD`` frames per shard (one inner chunk per frame),
small keys chunked ``FRAME_BLOCK`` frames per chunk, and their tasks own *frame blocks*
(train boundaries fall anywhere inside a shard).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

from ..checksums import block_checksum
from ..plan import KeyPlan, ViewPlan
from .blosc_encode import blosc_encoder
from .buffers import thread_buffer
from .lossy import QUANTIZE, LossyMode, parse_lossy

SMALL_KEY_BYTES = 1 << 16   # per module-train; below this a key is stored in train blocks
TRAIN_BLOCK = 64            # trains per chunk of a small key
FRAME_TRAINS = 8            # trains per inner chunk (and shard) of a large per-frame key
SHARD_BYTES = 512 << 20     # ...fewer if a shard would exceed this (a task holds one shard)
FRAME_SHARD = 64            # frame layout: frames per shard of a large per-frame key
FRAME_BLOCK = 4096          # frame layout: frames per chunk of a small per-frame key

ChunkSpec = Sequence[int] | Mapping[str, Sequence[int]] | None
ShardSpec = Sequence[int] | Mapping[str, Sequence[int]] | int | bool | None


def default_compressor(dtype: np.dtype) -> BloscCodec:
    """Blosc zstd level 1 with bit shuffling in 1 MiB blocks, for integers and floats alike.

    Chosen by ``benchmarks/bench_codecs.py`` on realistic frames: with the train axis
    innermost, 1 MiB blocks compress raw AGIPD 1.98x (64 KiB: 1.87x) and encode as fast;
    zstd 3 gains 1% for half the speed, lz4 is 1.6x faster but compresses 1.64x.
    Noisy corrected floats gain little whatever the codec; bit shuffling is within a few
    percent of byte shuffling there, and far better on integer-valued floats.
    """
    return BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.bitshuffle, blocksize=1 << 20)


@dataclass(frozen=True)
class ArrayLayout:
    """One key as a zarr array: shape, dims, stored object shape, inner chunks, codecs."""

    key: str
    group: str
    per_frame: bool            # axis 2 is the frame within a train (train layout)
    dtype: np.dtype
    fill_value: Any
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    unit: tuple[int, ...]      # one stored object: a shard, or a chunk if unsharded
    chunk: tuple[int, ...]     # inner chunk (== unit when unsharded)
    codecs: tuple[dict[str, Any], ...] = ()  # zarr v3 JSON of the chunk codecs after bytes
    order: tuple[int, ...] | None = None     # transpose codec order (train axis last)
    lossy: LossyMode | None = None           # values rounded before encoding (lossy.py)
    frame_axis: bool = False   # axis 1 is the frame axis (frame layout): tasks own frame blocks

    @property
    def sharded(self) -> bool:
        return self.chunk != self.unit

    @property
    def unit_trains(self) -> int:
        return self.unit[1]


def _per_key(spec: Any, kp: KeyPlan, ndim: int, large: bool) -> tuple[int, ...] | None:
    """A user chunk/shard spec resolved for one key (None: use the default)."""
    if isinstance(spec, Mapping):
        value = spec.get(kp.key)
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        value = spec if (large and len(spec) == ndim) else None
    else:
        return None
    if value is None:
        return None
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(f"chunk/shard shape {value} for {kp.key!r} has {len(value)} axes; "
                         f"its array has {ndim}")
    return value


def key_layout(plan: ViewPlan, kp: KeyPlan, chunks: ChunkSpec = None,
               shards: ShardSpec = None) -> ArrayLayout:
    """The default layout of one key, adjusted by the user's ``chunks``/``shards``."""
    dtype = kp.dtype.newbyteorder("<") if kp.dtype.byteorder == ">" else kp.dtype
    shape = plan.shape(kp)
    dims = plan.dims(kp)
    frame_axis = plan.frames and kp.per_frame
    full = tuple(max(s, 1) for s in shape[2:])           # frames (if any) and entry
    per_train_bytes = dtype.itemsize * math.prod(full)
    if frame_axis:
        unit, chunk, large = _frame_axis_units(shape, dtype)
    else:
        large = per_train_bytes >= SMALL_KEY_BYTES
    user_chunk = _per_key(chunks, kp, len(shape), large)
    user_unit = None
    if isinstance(shards, int) and not isinstance(shards, bool):
        user_unit = (1, int(shards)) + full if large else None
    elif shards is not None and not isinstance(shards, bool):
        user_unit = _per_key(shards, kp, len(shape), large)
    if not frame_axis:
        n_trains = max(shape[1], 1)
        framed = large and (kp.per_frame or (len(dims) > 2 and dims[2] == "cell"))
        trains = max(1, min(FRAME_TRAINS, n_trains, SHARD_BYTES // max(per_train_bytes, 1)))
        if user_unit is not None and user_chunk is None:   # inner chunks must tile the shard
            trains = math.gcd(trains, user_unit[1])
        if framed:
            unit = (1, trains) + full
            chunk = (1, trains, 1) + full[1:]               # one pulse / memory cell
        elif large:
            unit = chunk = (1, 1) + full
        else:
            unit = chunk = (1, min(TRAIN_BLOCK, n_trains)) + full
    if shards is False:                     # no sharding: chunks are the stored objects
        unit = chunk = user_chunk or chunk
    else:
        if user_chunk is not None:
            unsharded = unit == chunk
            chunk = user_chunk
            # the default shard grows to a whole number of the user's chunks
            unit = chunk if unsharded else tuple(-(-u // c) * c
                                                 for u, c in zip(unit, chunk, strict=True))
        if user_unit is not None:
            unit = user_unit
    _check_layout(kp.key, shape, unit, chunk)
    order = None
    if not frame_axis and large and chunk[1] > 1:   # several trains per chunk: trains innermost
        order = (0, *range(2, len(shape)), 1)
    return ArrayLayout(kp.key, kp.group, kp.per_frame and not frame_axis, np.dtype(dtype),
                       kp.fill_value, shape, dims, unit, chunk, order=order,
                       frame_axis=frame_axis)


def _frame_axis_units(shape: tuple[int, ...], dtype: np.dtype
                      ) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """Default (stored object, inner chunk, large?) of a per-frame key in the frame layout."""
    n_frames = max(shape[1], 1)
    entry = tuple(max(s, 1) for s in shape[2:])
    if dtype.itemsize * math.prod(entry) * FRAME_SHARD < SMALL_KEY_BYTES:
        unit = (1, min(FRAME_BLOCK, n_frames)) + entry
        return unit, unit, False
    return (1, min(FRAME_SHARD, n_frames)) + entry, (1, 1) + entry, True


def _check_layout(key: str, shape: tuple[int, ...], unit: tuple[int, ...],
                  chunk: tuple[int, ...]) -> None:
    if any(c < 1 for c in chunk) or any(u < 1 for u in unit):
        raise ValueError(f"{key}: chunk and shard sizes must be positive ({chunk}, {unit})")
    if unit[0] != 1:
        raise ValueError(f"{key}: shards/chunks must hold one module slot (axis 0 size 1), "
                         f"got {unit}: each module is written by its own tasks")
    if any(u % c for u, c in zip(unit, chunk, strict=True)):
        raise ValueError(f"{key}: shard shape {unit} is not a multiple of chunk shape {chunk}")


def plan_layouts(plan: ViewPlan, chunks: ChunkSpec = None, shards: ShardSpec = None,
                 lossy: Any = None) -> list[ArrayLayout]:
    """Every key's layout; ``lossy`` (see lossy.py) applies to the float pixel keys."""
    from dataclasses import replace
    layouts = [key_layout(plan, kp, chunks, shards) for kp in plan.keys]
    if lossy is None:
        return layouts
    mode = parse_lossy(lossy)
    targets = [lay.key for lay in layouts if lay.dtype.kind == "f" and "slow_scan" in lay.dims]
    if not targets:
        raise ValueError(f"lossy={lossy!r} rounds float pixel data (corrected detector data), "
                         f"but none of the keys converted is one ({[k.key for k in plan.keys]}); "
                         "convert corrected data, or leave lossy out")
    return [replace(lay, lossy=mode) if lay.key in targets else lay for lay in layouts]


MIN_TASKS = 64      # a short run is cut into at least this many tasks, where it can be


def train_block(layouts: Sequence[ArrayLayout], n_trains: int, n_slots: int) -> int:
    """Trains per task: a multiple of every layout's stored-object train extent, and
    about ``TRAIN_BLOCK`` trains (fewer, larger tasks: fewer done markers and dask tasks;
    memory does not grow, as a task streams one shard at a time), fewer when the run
    would make fewer than ``MIN_TASKS`` tasks of ``n_slots`` modules: the last tasks run
    alone while the other cores wait (16 trains of AGIPD-1M in 16 tasks: the last one
    took 8 % of the conversion). It depends on the run only, never on the machine: a
    resumed conversion must cut the same tasks."""
    units = [lay.unit_trains for lay in layouts if not lay.frame_axis]
    unit = math.lcm(*units) if units else 1
    per_slot = -(-MIN_TASKS // max(n_slots, 1))           # tasks wanted per module slot
    want = min(TRAIN_BLOCK, n_trains, max(1, n_trains // per_slot))
    return unit * max(1, want // unit)


def frame_block(layouts: Sequence[ArrayLayout]) -> int:
    """Frames per task of the frame-axis keys: a multiple of each one's stored object."""
    units = [lay.unit[1] for lay in layouts if lay.frame_axis]
    return math.lcm(*units) if units else 1


def resolve_compressor(compressor: Any, dtype: np.dtype) -> list[Any]:
    """The zarr bytes->bytes codecs for ``compressor`` (None: default; False: none, raw
    bytes), compressors followed by a crc32c checksum: blosc and zstd decode damaged bytes
    into plausible wrong values without a word; the checksum makes every reader refuse
    them."""
    return _with_checksum(_compressors(compressor, dtype))


def _compressors(compressor: Any, dtype: np.dtype) -> list[Any]:
    if compressor is None:
        return [default_compressor(dtype)]
    if compressor is False:
        return []
    if isinstance(compressor, Mapping):            # {key or dtype kind: codec}
        raise TypeError("pass one codec (or a list of codecs) as compressor")
    if isinstance(compressor, (list, tuple)):
        return list(compressor)
    return [compressor]


def _with_checksum(codecs: list[Any]) -> list[Any]:
    if not codecs or any(isinstance(c, Crc32cCodec) for c in codecs):
        return codecs
    return [*codecs, Crc32cCodec()]


# -- encoding inner chunks ourselves, byte-compatible with zarr-python --------------------

def _crc32c(data: Any) -> bytes:
    """The little-endian crc32c of ``data`` (bytes, or a read-only numpy array: google_crc32c
    refuses memoryviews, and copying a chunk to bytes costs more than the checksum)."""
    import google_crc32c
    return int(google_crc32c.value(data)).to_bytes(4, "little")


TILE_BYTES = 512 << 10      # output bytes per tile of a transposition (see ``transposed``)


def transposed(chunk: np.ndarray, order: Sequence[int], out: np.ndarray | None = None,
               sums: list[int | None] | None = None) -> np.ndarray:
    """``np.transpose(chunk, order)`` as a C-ordered copy (into ``out`` if given), fast
    when ``order`` moves one short axis to the end: one contiguous-read, strided-write
    pass per position along it (~2x numpy's general copy, which reads with huge strides),
    tile by tile: a ``TILE_BYTES`` tile of the output and its rows stay in the L2 cache
    across the passes (a whole 2 MiB chunk did not: 1.4-1.7x slower, raw AGIPD).

    ``sums``: one crc32 per position along the moved axis (None: not summed), continued
    over that position's values in C order while they are in the cache: a converter's
    checksum of its source rows then costs no pass over memory of its own."""
    order = tuple(order)
    axis = order[-1]
    if out is None:
        out = np.empty(tuple(chunk.shape[a] for a in order), chunk.dtype)
    moved = np.moveaxis(chunk, axis, 0)               # (k, *rest), a view
    k = moved.shape[0]
    if not _moves_one_axis_last(order):
        np.copyto(out, np.transpose(chunk, order))
        for i in range(k) if sums is not None else ():
            if sums[i] is not None:
                sums[i] = block_checksum(moved[i], sums[i])
        return out
    interleave([moved[i].reshape(-1) for i in range(k)],   # views when rows are contiguous
               out.reshape(-1, k), sums)
    return out


def _moves_one_axis_last(order: tuple[int, ...]) -> bool:
    """Whether ``order`` keeps every axis in place but its last, which it moves to the end
    (the transposition ``interleave`` does)."""
    return order[:-1] == tuple(a for a in range(len(order)) if a != order[-1])


def interleave(rows: Sequence[np.ndarray], flat: np.ndarray,
               sums: list[int | None] | None = None) -> None:
    """``flat[:, i] = rows[i]`` for 1-d ``rows`` of one length, a ``TILE_BYTES`` tile of
    ``flat`` at a time (see ``transposed``); ``sums`` as there, per row."""
    k = len(rows)
    summed = [] if sums is None else [i for i in range(k) if sums[i] is not None]
    step = max(1, TILE_BYTES // max(1, k * flat.itemsize))
    for s in range(0, flat.shape[0], step):
        dst = flat[s:s + step]
        for i, row in enumerate(rows):
            dst[:, i] = row[s:s + step]
        for i in summed:
            sums[i] = block_checksum(rows[i][s:s + step], sums[i])  # type: ignore[index]


def chunk_encoder(codecs: Sequence[Mapping[str, Any]], dtype: np.dtype, parts: bool = False
                  ) -> Callable[[np.ndarray], Any]:
    """Encode a chunk exactly as zarr's [transpose?, bytes(little), *codecs] pipeline does
    (after the lossy quantizer, when ``codecs`` starts with one).

    ``parts``: return the encoded chunk as a list of bytes-like pieces to write in order
    (a trailing crc32c is then its own 4-byte piece instead of a copy of the chunk)."""
    steps: list[Callable[[bytes | np.ndarray], bytes]] = []
    order: tuple[int, ...] | None = None
    quantize: LossyMode | None = None
    for spec in codecs:
        name = spec["name"]
        conf = dict(spec.get("configuration", {}))
        if name == QUANTIZE:
            if steps or order is not None or quantize is not None:
                raise ValueError("the lossy quantizer must come before every codec")
            quantize = parse_lossy(conf)
        elif name == "transpose":
            if steps or order is not None:
                raise ValueError("transpose must be the first chunk codec")
            order = tuple(int(a) for a in conf["order"])
        elif name == "blosc":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[conf["shuffle"]]
            steps.append(blosc_encoder(conf["cname"], conf["clevel"], shuffle,
                                       conf.get("blocksize", 0), conf.get("typesize")))
        elif name == "zstd":
            steps.append(numcodecs.Zstd(level=conf.get("level", 0),
                                        checksum=conf.get("checksum", False)).encode)
        elif name == "gzip":
            steps.append(numcodecs.GZip(level=conf.get("level", 5)).encode)
        elif name == "crc32c":
            steps.append(_append_crc32c)
        elif name.startswith("numcodecs."):
            steps.append(numcodecs.get_codec({"id": name.split(".", 1)[1], **conf}).encode)
        else:
            raise ValueError(f"compressor codec {name!r} is not supported by to_zarr; use "
                             "BloscCodec, ZstdCodec, GzipCodec or a numcodecs codec")
    little = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).byteorder == ">" else dtype
    checksum = bool(steps) and steps[-1] is _append_crc32c
    if checksum:                # the last checksum goes on without copying the chunk
        steps.pop()

    def encode(chunk: np.ndarray, sums: list[int | None] | None = None) -> Any:
        """``sums``: see ``transposed`` (along ``encode.summed_axis``, the moved one)."""
        if quantize is not None:
            chunk = quantize.apply(chunk)
        if order is not None:     # into this thread's buffer: cache-hot for the codecs
            shape = tuple(chunk.shape[a] for a in order)
            chunk = transposed(chunk, order, thread_buffer("transpose", shape, chunk.dtype),
                               sums)
        elif sums is not None:
            raise ValueError("checksums along an axis need a transpose codec")
        return finish(chunk)

    def encode_rows(rows: Sequence[np.ndarray], sums: list[int | None] | None = None) -> Any:
        """The chunk whose positions along ``summed_axis`` are ``rows`` (arrays of the rest
        of the chunk, C order; anywhere in memory, e.g. a file's mapped pages)."""
        flat = thread_buffer("transpose", (rows[0].size, len(rows)), rows[0].dtype)
        interleave([r.reshape(-1) for r in rows], flat, sums)
        return finish(flat)

    def finish(chunk: np.ndarray) -> Any:
        data: Any = np.ascontiguousarray(chunk, dtype=little)
        for step in steps:
            data = step(data)
        if not isinstance(data, bytes):
            data = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        if not checksum:
            return [data] if parts else data
        crc = _crc32c(data)
        return [data, crc] if parts else data + crc
    # the axis ``sums`` and ``encode.rows`` run along: the one the transposition moves
    # last, where the values are not changed before it (no quantizer); elsewhere neither
    along = order is not None and quantize is None and _moves_one_axis_last(order)
    encode.summed_axis = order[-1] if along else None  # type: ignore[attr-defined,index]
    encode.rows = encode_rows if along else None  # type: ignore[attr-defined]
    return encode


def _append_crc32c(data: Any) -> bytes:
    data = data if isinstance(data, bytes) else bytes(memoryview(data).cast("B"))
    return data + _crc32c(data)


def shard_index(entries: np.ndarray) -> bytes:
    """The shard index (offset, nbytes per inner chunk; all ones = empty) + its crc32c."""
    raw = np.ascontiguousarray(entries, dtype="<u8").tobytes()
    return raw + _crc32c(raw)


EMPTY = np.iinfo(np.uint64).max


def chunk_codecs_of(doc: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The chunk codecs of an array's zarr.json (inside the sharding codec if any) but the
    ``bytes`` serializer: an optional ``transpose``, then the bytes->bytes codecs."""
    codecs = doc["codecs"]
    if codecs[0]["name"] == "sharding_indexed":
        conf = codecs[0]["configuration"]
        if conf.get("index_location", "end") != "end":
            raise ValueError("shard index must be at the end")
        codecs = conf["codecs"]
    head = [dict(c) for c in codecs[:1] if c["name"] == "transpose"]
    rest = codecs[len(head):]
    if not rest or rest[0]["name"] != "bytes":
        raise ValueError(f"unsupported array codec {rest[0]['name'] if rest else None!r}; "
                         "to_zarr writes [transpose], bytes, compressors")
    return tuple(head + [dict(c) for c in rest[1:]])
