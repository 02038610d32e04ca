"""Shards of a large per-frame key (the default layout) written a group of pulses at a time.

A shard holds 8 trains x every pulse of one module (128 MiB of raw AGIPD); its inner
chunks hold one pulse of those trains. Reading the whole shard into memory first and
then encoding it passes every byte through main memory three more times (the copy from
the page cache, the checksum, the transposition). Here the source rows of a few
pulses of every train (~8 MiB) are read at a time into a buffer that stays in the CPU's
cache for the checksum, the transposition and the compressor, and each train's checksum
is carried on from group to group (crc32 continues over the train's rows in order).
Each encoded inner chunk is written at once (``Target.open_object``), from the cache.
The shard's bytes are the same as those of ``encode.shard_parts``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from ..checksums import block_checksum
from .buffers import thread_buffer
from .layout import EMPTY, ArrayLayout, chunk_encoder, shard_index

GROUP_BYTES = 8 << 20       # source rows read at once: inside the L3 cache of any CPU

class Rows(Protocol):
    """Where a task's source rows come from (``tasks._Sources``)."""

    def read(self, j: int, dset: str, start: int, count: int, out: np.ndarray,
             where: str = "") -> None:
        """Rows ``start:start+count`` of dataset ``dset`` in file ``j`` into ``out``."""

    def mapped(self, j: int, dset: str, start: int, count: int) -> list[np.ndarray] | None:
        """The same rows, each a view of the file's pages (no copy), or None."""


@lru_cache(maxsize=64)
def _encoder(codecs_json: str, dtype: str) -> Any:
    return chunk_encoder(json.loads(codecs_json), np.dtype(dtype), True)


def applies(lay: ArrayLayout) -> bool:
    """Whether ``lay`` is a sharded per-frame key whose shard covers every frame and the
    whole entry of its trains and whose inner chunks span the shard's trains."""
    if not (lay.sharded and lay.per_frame and not lay.frame_axis):
        return False
    natural = tuple(max(s, 1) for s in lay.shape[2:])
    padded = tuple(-(-s // u) * u for s, u in zip(natural, lay.unit[2:], strict=True))
    return tuple(lay.chunk[:2]) == (1, lay.unit_trains) and tuple(lay.unit[2:]) == padded


def write_frame_shards(task: Any, rows: Any, src: Rows, target: Any,
                       sums: list[tuple[int, int]]) -> bool:
    """Write the task's shards of ``rows.layout`` if ``applies`` (else return False):
    ``src`` gives the source rows, ``sums`` gets the (train index, crc32) of every train
    with data.

    Where the encoder's transposition gathers whole source rows (the default layout),
    the train checksums are summed inside it, on rows already in the cache; and a shard
    of one pulse per inner chunk is encoded straight from the files' pages when ``src``
    maps them (forked workers): no copy at all, one pass over the source bytes."""
    lay: ArrayLayout = rows.layout
    if not applies(lay):
        return False
    ut, cp, n_pulses = lay.unit_trains, lay.chunk[2], lay.unit[2]
    entry = tuple(lay.unit[3:])
    natural = tuple(max(s, 1) for s in lay.shape[3:])
    pulse_bytes = ut * cp * lay.dtype.itemsize * math.prod(entry)
    gp = min(n_pulses, cp * max(1, GROUP_BYTES // pulse_bytes))   # pulses per group
    fill = lay.dtype.type(lay.fill_value)
    buf = thread_buffer("pulse-group", (ut, gp) + entry, lay.dtype)
    if entry != natural:
        buf[...] = fill          # the padding beyond the array's edge stays fill
    view = buf[(slice(None), slice(None)) + tuple(slice(0, s) for s in natural)]
    encode = _encoder(json.dumps(lay.codecs), lay.dtype.str)
    grid = tuple(u // c for u, c in zip(lay.unit, lay.chunk, strict=True))
    # the entry's inner chunks, as selections of ``buf`` after the pulse slice; plain
    # Python in the loops below: it runs per inner chunk holding the GIL, and numpy's
    # calls on a handful of numbers cost more than the arithmetic
    entry_sels = [(pos, tuple(slice(p * c, (p + 1) * c)
                              for p, c in zip(pos, lay.chunk[3:], strict=True)))
                  for pos in np.ndindex(*grid[3:])]
    fused = encode.summed_axis == 1 and len(entry_sels) == 1   # rows summed in the encoder
    mappable = fused and cp == 1 and entry == natural              # inner chunk = whole rows
    blank = np.full(entry, fill, lay.dtype) if mappable else None  # a train's missing pulse
    for u0 in range(task.t0, task.t1, ut):
        a = u0 - task.t0
        count = [int(c) for c in rows.count[a:a + ut]]
        count += [0] * (ut - len(count))
        most = max(count)
        if not most:
            continue
        files = [int(f) for f in rows.file[a:a + ut]]
        firsts = [int(f) for f in rows.first[a:a + ut]]
        crcs = [0] * ut
        index = np.full(grid + (2,), EMPTY, np.uint64)
        offset = 0
        key = "/".join([lay.key, "c", str(task.slot), str(u0 // ut)] + ["0"] * (len(lay.unit) - 2))
        pages = _mapped_trains(src, rows, files, firsts, count, lay.dtype) if mappable else None
        with target.open_object(key) as write:
            if pages is not None:           # pulse by pulse from the files' pages
                for q in range(most):
                    live = [q < c for c in count]
                    chunk_sums = [crcs[i] if ok else None for i, ok in enumerate(live)]
                    nbytes = write(encode.rows([pages[i][q] if ok else blank
                                                for i, ok in enumerate(live)], chunk_sums))
                    index[(0, 0, q) + (0,) * len(entry)] = (offset, nbytes)
                    offset += nbytes
                    _carry(crcs, chunk_sums)
            else:                           # a group of pulses at a time
                for g0 in range(0, n_pulses, gp):
                    g1 = min(g0 + gp, n_pulses)
                    _read_group(src, rows, task, a, files, firsts, count, g0, g1, view, fill,
                                None if fused else crcs)
                    for q in range(g0 // cp, g1 // cp):
                        if most <= q * cp:
                            continue            # no train has a frame in this inner chunk
                        p0 = q * cp - g0
                        chunk_sums = _chunk_sums(buf, crcs, count, q * cp, p0, cp) \
                            if fused else None
                        for pos, sel in entry_sels:
                            # written at once: the encoded chunk is still in the CPU's cache
                            chunk = buf[(None, slice(None), slice(p0, p0 + cp)) + sel]
                            nbytes = write(encode(chunk, chunk_sums))
                            index[(0, 0, q) + pos] = (offset, nbytes)
                            offset += nbytes
                        if chunk_sums is not None:
                            _carry(crcs, chunk_sums)
            write([shard_index(index)])
        del pages                   # unmaps
        sums.extend((u0 + i, crcs[i]) for i in range(ut) if count[i] > 0)
    return True


def _read_group(src: Rows, rows: Any, task: Any, a: int, files: list[int], firsts: list[int],
                count: list[int], g0: int, g1: int, view: np.ndarray, fill: Any,
                crcs: list[int] | None) -> None:
    """Pulses ``g0:g1`` of the shard's trains into ``view`` (fill where a train has none);
    ``crcs``: carry each train's checksum on over them."""
    for i in range(len(count)):
        k = min(max(count[i] - g0, 0), g1 - g0)
        if k:
            j = files[i]
            src.read(j, rows.datasets[j], firsts[i] + g0, k, view[i, :k],
                     f"module slot {task.slot}, train {task.train_ids[a + i]}")
            if crcs is not None:
                crcs[i] = block_checksum(view[i, :k], crcs[i])
        if k < g1 - g0:
            view[i, k:g1 - g0] = fill


def _chunk_sums(source: np.ndarray, crcs: list[int], count: list[int], pulse: int, p0: int,
                cp: int) -> list[int | None]:
    """The checksums the encoder carries on over the inner chunk of pulses ``pulse:+cp``
    (``p0:+cp`` in ``source``): each train's whose pulses there are all its own; a train
    with only some of them gets those summed here (the rest are fill, not its data)."""
    sums: list[int | None] = []
    for i, c in enumerate(count):
        valid = min(max(c - pulse, 0), cp)
        if valid == cp:
            sums.append(crcs[i])
            continue
        if valid:
            crcs[i] = block_checksum(source[i, p0:p0 + valid], crcs[i])
        sums.append(None)
    return sums


def _carry(crcs: list[int], chunk_sums: list[int | None]) -> None:
    """Take on the checksums the encoder carried over an inner chunk."""
    for i, value in enumerate(chunk_sums):
        if value is not None:
            crcs[i] = value


def _mapped_trains(src: Rows, rows: Any, files: list[int], firsts: list[int],
                   count: list[int], dtype: np.dtype) -> list[list[np.ndarray]] | None:
    """Each train's rows as views of its file's pages, when ``src`` maps all of them and
    they hold the stored type (else they are read, and converted on the way)."""
    pages = []
    for i, c in enumerate(count):      # (``files`` and ``firsts`` end with the task's trains)
        got = src.mapped(files[i], rows.datasets[files[i]], firsts[i], c) if c else []
        if got is None or (got and got[0].dtype != dtype):
            return None
        pages.append(got)
    return pages
