"""Chunk references of a local Parquet manifest, read straight from its record files.

fsspec's ``LazyReferenceMapper`` loads a whole record file into pandas for each
chunk key it looks up and builds Python objects per reference; one frame of a
1M detector touches 16 record files (one per module, far apart in chunk
order). Here a record file (only the row group holding the chunk, where the
writer split it) is read once with pyarrow into numpy columns (path number,
offset, size) and kept in a small cache, so a lookup is an array index and a
whole array's references can be compared at once.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FileFormatError
from ..safety import open_regular

CACHED_RECORDS = 64     # record files kept decoded (~2.4 MB each at 100,000 references)
OPEN_RECORDS = 32       # record files kept in memory, footer parsed (a frame of a 1M: 17)
MAX_RECORD_BYTES = 256 << 20   # a record of 100,000 references with long paths: ~10 MB


@dataclass(frozen=True)
class Record:
    """The references of one record file or row group: ``urls[code[i]]``, ``offset[i]``,
    ``size[i]``
    (``code`` -1: no reference, an absent chunk)."""

    urls: list[str]
    code: np.ndarray
    offset: np.ndarray
    size: np.ndarray


@dataclass
class _Open:
    """A record file kept in memory, its footer parsed, and a lock (one read at a time)."""

    parquet: Any
    lock: threading.Lock


def _whole_file(path: str) -> bytes:
    """The bytes of the record file ``path`` (a regular file; FileNotFoundError if
    missing). Read whole: Arrow parses a footer and decodes a row group from memory in a
    third of the time it takes through a Python file object's reads."""
    with os.fdopen(open_regular(path, "manifest reference file"), "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_RECORD_BYTES:
            raise FileFormatError(path, f"is {size:,} bytes, more than a reference record "
                                  f"holds (at most {MAX_RECORD_BYTES:,})",
                                  "It is not a record detstack wrote: write the manifest again")
        return fh.read(size)     # never more than the size checked


def _integers(column: Any, null: int) -> np.ndarray:
    """An integer Arrow array as int64, nulls as ``null``, read from its buffers (Arrow's
    own conversions import pyarrow.compute or pandas: most of a second)."""
    import pyarrow as pa

    if not pa.types.is_integer(column.type):
        raise TypeError(f"{column.type} is not an integer type")
    dtype = np.dtype(str(column.type))
    validity, data = column.buffers()[:2]
    values = np.frombuffer(data, dtype, count=len(column),
                           offset=column.offset * dtype.itemsize).astype(np.int64)
    if column.null_count:
        valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
        values[~valid[column.offset:column.offset + len(column)].astype(bool)] = null
    return values


class ParquetRecords:
    """The reference records of a local Parquet manifest folder ``root``."""

    def __init__(self, root: str, record_size: int, view: str) -> None:
        self.root = root
        self.record_size = record_size
        self.view = view
        self._cache: OrderedDict[tuple[str, int, int], Record] = OrderedDict()
        self._starts: dict[tuple[str, int], np.ndarray | None] = {}
        # open record files, their footer parsed once
        self._files: OrderedDict[tuple[str, int], _Open] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, name: str, number: int) -> str:
        return os.path.join(self.root, name, f"refs.{number}.parq")

    def _parquet(self, path: str, data: bytes) -> Any:
        """The ParquetFile of record ``path`` held in ``data`` (paths as a dictionary)."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        try:   # ParquetFile, not read_table: that imports pyarrow.dataset and pandas
            plain = pq.ParquetFile(pa.BufferReader(data))
            if "path" not in plain.schema_arrow.names:
                return plain                   # inline data only: zarr reads those
            return pq.ParquetFile(pa.BufferReader(data), read_dictionary=["path"],
                                  metadata=plain.metadata)   # the footer parsed once
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise FileFormatError(path, f"is not a reference record of manifest {self.view} "
                                  f"({exc})", "Write the manifest again") from exc

    def row_groups(self, name: str, number: int) -> np.ndarray | None:
        """First row of each row group of record file ``number``, then its length; None
        if it holds inline data (a ``raw`` column: zarr reads those). A missing file
        holds no references."""
        key = (name, number)
        if key not in self._starts:
            path = self._path(name, number)
            try:
                data = _whole_file(path)
            except FileNotFoundError:
                starts: np.ndarray | None = np.array([0, self.record_size], np.int64)
            else:
                parquet = self._parquet(path, data)
                meta = parquet.metadata
                names = parquet.schema_arrow.names
                inline = "raw" in names
                starts = None if inline else np.cumsum(
                    [0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
                if not inline and "path" in names:
                    self._keep(key, parquet)
            with self._lock:
                self._starts[key] = starts
        return self._starts[key]

    def _keep(self, key: tuple[str, int], parquet: Any) -> None:
        """Keep a record file for its row-group reads (the least recently used one let go
        beyond ``OPEN_RECORDS``)."""
        with self._lock:
            self._files.pop(key, None)
            self._files[key] = _Open(parquet, threading.Lock())
            while len(self._files) > OPEN_RECORDS:
                self._files.popitem(last=False)

    def close(self) -> None:
        """Let go of the record files kept (reads load them again)."""
        with self._lock:
            self._files = OrderedDict()

    def record(self, name: str, number: int, group: int) -> Record:
        """Row group ``group`` of record file ``number`` of array ``name`` (kept in a
        small cache: a record file of 100,000 references decodes in ~5 ms)."""
        key = (name, number, group)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rec = self._read(name, number, group)
        with self._lock:
            self._cache[key] = rec
            while len(self._cache) > CACHED_RECORDS:
                self._cache.popitem(last=False)
        return rec

    def _read(self, name: str, number: int, group: int | None) -> Record:
        """Row group ``group`` (None: all) of a record file without inline data."""
        path = self._path(name, number)
        with self._lock:
            kept = self._files.get((name, number))
            if kept is not None:
                self._files.move_to_end((name, number))
        if kept is not None:
            with kept.lock:
                return self._decode(path, kept.parquet, group)
        try:
            data = _whole_file(path)
        except FileNotFoundError:
            return Record([], np.full(self.record_size, -1, np.int32),
                          np.zeros(self.record_size, np.int64),
                          np.zeros(self.record_size, np.int64))
        return self._decode(path, self._parquet(path, data), group)

    def _decode(self, path: str, parquet: Any, group: int | None) -> Record:
        """The references of row group ``group`` (None: all) of an open record file."""
        import pyarrow as pa

        columns = ["path", "offset", "size"]
        try:
            table = parquet.read(columns=columns, use_threads=False) if group is None else \
                parquet.read_row_group(group, columns=columns, use_threads=False)
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise FileFormatError(path, f"is not a reference record of manifest "
                                  f"{self.view} ({exc})", "Write the manifest again") \
                from exc
        paths = table.column("path").unify_dictionaries().combine_chunks()
        if not pa.types.is_dictionary(paths.type):
            raise FileFormatError(path, "has a path column that is not text",
                                  "Write the manifest again")
        code = _integers(paths.indices, -1).astype(np.int32)
        try:
            offset = _integers(table.column("offset").combine_chunks(), 0)
            size = _integers(table.column("size").combine_chunks(), 0)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise FileFormatError(path, f"has offsets or sizes that are not integers ({exc})",
                                  "Write the manifest again") from exc
        urls = paths.dictionary.to_pylist()
        if any(not isinstance(u, str) for u in urls):
            raise FileFormatError(path, "holds a path that is not text",
                                  "Write the manifest again")
        return Record(urls, code, offset, size)

    def refs(self, name: str, flat: Any) -> tuple[list[str], np.ndarray, np.ndarray,
                                                   np.ndarray] | None:
        """(urls, code into urls (-1: absent), offset, size) of chunks ``flat`` (C-order
        chunk numbers) of ``name``, reading only the row groups that hold them, each
        once; None if a record holds inline data."""
        flat = np.asarray(flat, np.int64).reshape(-1)
        code = np.full(len(flat), -1, np.int32)
        offset = np.zeros(len(flat), np.int64)
        size = np.zeros(len(flat), np.int64)
        urls: list[str] = []
        number, row = np.divmod(flat, self.record_size)
        for num in np.unique(number).tolist():
            in_file = np.flatnonzero(number == num)
            starts = self.row_groups(name, num)
            if starts is None:
                return None
            groups = np.searchsorted(starts, row[in_file], side="right") - 1
            for g in np.unique(groups).tolist():
                if g >= len(starts) - 1:
                    continue               # past the rows the file holds: absent
                pick = in_file[groups == g]
                rec = self.record(name, num, g)
                k = row[pick] - int(starts[g])
                inside = k < len(rec.code)
                pick, k = pick[inside], k[inside]
                found = rec.code[k]
                code[pick] = np.where(found >= 0, found + len(urls), -1)
                offset[pick], size[pick] = rec.offset[k], rec.size[k]
                urls += rec.urls
        return urls, code, offset, size

    def lookup(self, name: str, flat: Any) -> list[tuple[str, int, int] | None] | None:
        """``(url, offset, size)`` or None (absent) for chunks ``flat`` of ``name``
        (``refs``); None if a record holds inline data."""
        found = self.refs(name, flat)
        if found is None:
            return None
        urls, code, offset, size = found
        return [None if c < 0 else (urls[c], o, n) for c, o, n in
                zip(code.tolist(), offset.tolist(), size.tolist(), strict=True)]

    def table(self, name: str, n: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray
                                                ] | None:
        """Every reference of the ``n`` chunks of ``name``: (urls, code into urls (-1:
        none), offset, size), each array ``n`` long; None if a record is inline."""
        urls: list[str] = []
        codes, offsets, sizes = [], [], []
        for number in range(math.ceil(n / self.record_size)):
            if self.row_groups(name, number) is None:
                return None
            rec = self._read(name, number, None)   # read once: not worth caching
            want = min(self.record_size, n - number * self.record_size)
            if len(rec.code) < want:
                raise FileFormatError(os.path.join(self.root, name, f"refs.{number}.parq"),
                                      f"holds {len(rec.code)} references, not {want}",
                                      "Write the manifest again")
            code = rec.code[:want].copy()
            code[code >= 0] += len(urls)
            urls += rec.urls
            codes.append(code)
            offsets.append(rec.offset[:want])
            sizes.append(rec.size[:want])
        if not codes:
            return urls, np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64)
        return urls, np.concatenate(codes), np.concatenate(offsets), np.concatenate(sizes)
