"""Parquet record files of a referenced key, written module by module where they are built.

Record ``r`` of a key holds the references of chunks ``r * record_size`` up to the next
record (fsspec's lazy reference layout). A module's references fill one contiguous range
of chunks (``KeyReferences.span``), so the task building a module writes every record
lying inside its range itself and spools the two records it shares with its neighbours
(and the key's last record, which may still get the sidecar's fill chunk) as pieces, one
small ``.npy`` file each in a spool folder of the manifest being written: the parent
joins the pieces of one record at a time and writes it. Nothing per reference travels
between processes, and no process holds more than one window of references and one
record, however long the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DetstackError
from .refs import RefBatch, concat
from .specs import ArraySpec

ROW_GROUP = 10_000   # references per Parquet row group: a reader of one chunk decodes only
                     # its group (detstack's reader: 16 lookups in 13 ms CPU, not 65)


@dataclass
class Shared:
    """What a module task hands back: the spooled pieces of records it shares (record
    number, file), and its holes."""

    pieces: list[tuple[int, Path]] = field(default_factory=list)
    holes: list[list[int]] = field(default_factory=list)


def save_piece(path: Path, batch: RefBatch) -> None:
    """One piece of a record, as one int64 array (index, url, offset, size rows)."""
    np.save(path, np.stack([batch.index, batch.url.astype(np.int64), batch.offset,
                            batch.size]), allow_pickle=False)


def load_piece(path: Path) -> RefBatch:
    a = np.load(path, allow_pickle=False)
    if a.ndim != 2 or a.shape[0] != 4:
        raise DetstackError(f"{path}: a spooled piece of references was damaged while the "
                            f"manifest was written (shape {a.shape}); write it again")
    return RefBatch(a[0], a[1].astype(np.int32), a[2], a[3])


def write_table(file: Path, columns: dict[str, Any]) -> None:
    """One record file: plain columns, no pandas or arrow schema (every reader sees
    string, int64 and binary columns); offsets and sizes required, with statistics (pandas
    reading through fastparquet makes an integer column without them float). Offsets and
    sizes are delta-encoded (standard Parquet, read by fastparquet and pyarrow): chunks of
    one file lie at even steps, so a record of 100,000 references takes ~10 kB, and it is
    written in half the time of zstd on plain values."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    ints = [name for name in ("offset", "size") if name in columns]
    fields = [pa.field(name, col.type if isinstance(col, pa.Array) else pa.int64(),
                       nullable=name not in ints) for name, col in columns.items()]
    pq.write_table(pa.table(columns, schema=pa.schema(fields)), file, compression="zstd",
                   write_statistics=ints or False, store_schema=False,
                   use_dictionary=["path"], row_group_size=ROW_GROUP,
                   column_encoding=dict.fromkeys(ints, "DELTA_BINARY_PACKED") or None)


def write_record(folder: Path, spec: ArraySpec, r: int, batch: RefBatch, record_size: int,
                 url_arr: Any) -> None:
    """Record ``r`` of ``spec`` from its references; chunks without one are null paths
    (read as fill). The path column is dictionary-encoded: each file stores the paths it
    uses once and per reference only their number, so no string is made per reference."""
    import pyarrow as pa
    n = min(record_size, math.prod(spec.grid) - r * record_size)
    pos = batch.index - r * record_size
    used = np.flatnonzero(np.bincount(batch.url))   # url numbers are small: no sort
    number = np.zeros(len(used) and int(used[-1]) + 1, np.int32)
    number[used] = np.arange(len(used), dtype=np.int32)
    which = np.full(n, -1, np.int32)
    which[pos] = number[batch.url]
    offset = np.zeros(n, np.int64)
    size = np.zeros(n, np.int64)
    offset[pos] = batch.offset
    size[pos] = batch.size
    paths = pa.DictionaryArray.from_arrays(pa.array(which, mask=which < 0),
                                           url_arr.take(pa.array(used)))
    write_table(folder / spec.name / f"refs.{r}.parq",
                {"path": paths, "offset": offset, "size": size})


class RecordCutter:
    """Cuts batches in ascending chunk order into records: ``add`` returns the records
    completed so far, ``finish`` the rest; only the current record is held."""

    def __init__(self, record_size: int) -> None:
        self.record_size = record_size
        self.pending: RefBatch | None = None

    def add(self, batch: RefBatch) -> list[tuple[int, RefBatch]]:
        if not len(batch):
            return []
        size = self.record_size
        merged = batch if self.pending is None else concat([self.pending, batch])
        complete = (int(merged.index[-1]) + 1) // size   # records below are final
        cut = int(np.searchsorted(merged.index, complete * size))
        self.pending = _take(merged, slice(cut, None)) if cut < len(merged) else None
        return list(_split(_take(merged, slice(0, cut)), size))

    def finish(self) -> list[tuple[int, RefBatch]]:
        pending, self.pending = self.pending, None
        return [] if pending is None else list(_split(pending, self.record_size))


def records(batches: Iterator[RefBatch], record_size: int) -> Iterator[tuple[int, RefBatch]]:
    """(record number, its references) for every record holding references, from
    batches in ascending chunk order; only the current record stays in memory."""
    cutter = RecordCutter(record_size)
    for batch in batches:
        yield from cutter.add(batch)
    yield from cutter.finish()


def _split(b: RefBatch, record_size: int) -> Iterator[tuple[int, RefBatch]]:
    if not len(b):
        return
    rec = b.index // record_size
    bounds = np.flatnonzero(np.diff(rec)) + 1
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(b)], strict=True):
        yield int(rec[lo]), _take(b, slice(lo, hi))


def _take(b: RefBatch, sel: slice) -> RefBatch:
    return RefBatch(b.index[sel], b.url[sel], b.offset[sel], b.size[sel])


def module_records(folder: Path, spool: Path, specs: list[ArraySpec], m: int,
                   record_size: int, url_arr: Any) -> list[Shared]:
    """Build module ``m``'s references of each of ``specs`` and write the records only it
    fills; spool the others as pieces into ``spool`` (see the module docstring), one
    ``Shared`` per spec. The keys advance together, a window at a time: the keys of a module share
    their source files, which are then opened once (a pool of open files could not keep
    a whole module's files open between one key and the next)."""
    streams = [_ModuleStream(folder, spool, s, m, record_size, url_arr) for s in specs]
    active = streams
    while active:
        active = [st for st in active if st.step()]
    return [st.out for st in streams]


class _ModuleStream:
    """One key of one module, built a batch (window) at a time by ``step``."""

    def __init__(self, folder: Path, spool: Path, spec: ArraySpec, m: int, record_size: int,
                 url_arr: Any) -> None:
        assert spec.source is not None
        self.folder, self.spool, self.spec, self.m, self.url_arr = folder, spool, spec, m, url_arr
        self.lo, self.hi = spec.source.span(m)
        self.last = spec.last_chunk // record_size
        self.record_size = record_size
        self.out = Shared()
        self.cutter = RecordCutter(record_size)
        self.batches = spec.source.batches(m, self.out.holes)

    def step(self) -> bool:
        """Build the next window; False once the module is done (its records cut)."""
        b = next(self.batches, None)
        if b is None:
            self._place(self.cutter.finish())
            return False
        if len(b) and (int(b.index[0]) < self.lo or int(b.index[-1]) >= self.hi):
            raise DetstackError(f"{self.spec.name}: references of module {self.m} fall "
                                "outside its slot of the chunk grid; please report this bug")
        self._place(self.cutter.add(b))
        return True

    def _place(self, done: list[tuple[int, RefBatch]]) -> None:
        size = self.record_size
        for r, batch in done:
            start, stop = r * size, min((r + 1) * size, self.spec.last_chunk + 1)
            if start >= self.lo and stop <= self.hi and r != self.last:
                write_record(self.folder, self.spec, r, batch, size, self.url_arr)
            else:
                piece = self.spool / f"{self.spec.name}.{r}.{self.m}.npy"
                save_piece(piece, batch)
                self.out.pieces.append((r, piece))


def shared_records(folder: Path, spec: ArraySpec, shared: list[Shared], record_size: int,
                   url_arr: Any) -> None:
    """Join the spooled pieces the module tasks handed back, one record at a time, and
    write those records (removing their pieces); the last record gets the fill chunk
    (``fill_ref``) if nothing references the last chunk."""
    by_record: dict[int, list[Path]] = {}
    for s in shared:
        for r, piece in s.pieces:
            by_record.setdefault(r, []).append(piece)
    last = spec.last_chunk // record_size
    fill = spec.source.fill_ref if spec.source is not None else None
    for r in sorted(set(by_record) | ({last} if fill is not None else set())):
        pieces = by_record.get(r, [])
        batch = concat([load_piece(p) for p in pieces])   # sorted by chunk index: a
        if r == last and fill is not None and (          # duplicate sits beside its twin
                not len(batch) or int(batch.index[-1]) < spec.last_chunk):
            batch = concat([batch, fill])
        if len(batch) > 1 and not (np.diff(batch.index) > 0).all():
            raise DetstackError(f"{spec.name}: two references for one chunk in record {r}; "
                                "please report this bug")
        write_record(folder, spec, r, batch, record_size, url_arr)
        for p in pieces:
            p.unlink()
