"""One key of one source of a run: ``run[source, key]``, as EXtra-data scripts use it.

Rows are read through the collection's per-source index (the same table every
detector reader uses), in train order, one ``read_direct`` per block of rows that
is contiguous in one file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import TrainIDError

if TYPE_CHECKING:
    from .collection import DataCollection, SourceTable

# dask parts of at most this many bytes (whole rows), like the detector readers
DASK_PART_BYTES = 1 << 30


def roi_shape(entry_shape: tuple[int, ...], roi: tuple[Any, ...]) -> tuple[int, ...]:
    """Shape of one entry after applying ``roi`` (numpy indexing, without reading)."""
    return np.empty(entry_shape, dtype=np.uint8)[roi].shape if roi else entry_shape


class SourceSection:
    """CONTROL or INSTRUMENT: what ``run[src]`` and ``run[src, key]`` both report."""

    _data: DataCollection
    source: str

    @property
    def section(self) -> str:
        """``'CONTROL'`` (slow data) or ``'INSTRUMENT'`` (fast data)."""
        return "CONTROL" if self._data.is_control(self.source) else "INSTRUMENT"

    @property
    def is_control(self) -> bool:
        """Whether the source is a control (slow-data) source."""
        return self.section == "CONTROL"

    @property
    def is_instrument(self) -> bool:
        """Whether the source is an instrument (fast-data) source."""
        return not self.is_control

    def split_trains(self, parts: int | None = None,
                     trains_per_part: int | None = None) -> Iterator[Any]:
        """Split the selected trains into consecutive parts of about equal size.

        Parameters
        ----------
        parts : int, optional
            Number of parts (at most one per train).
        trains_per_part : int, optional
            Largest number of trains per part (with both, at least ``parts`` parts).

        Yields
        ------
        KeyData or SourceData
            This key (``run[src, key]``) or source (``run[src]``) over each part of the
            trains, in order.

        Raises
        ------
        ValueError
            Neither ``parts`` nor ``trains_per_part`` is given.
        """
        from ..detectors.split import even_parts
        for sl in even_parts(len(self.train_ids), parts, trains_per_part):  # type: ignore[attr-defined]
            yield self.select_trains(sl)  # type: ignore[attr-defined]


class KeyData(SourceSection):
    """Data of one (source, key) over the selected trains.

    Parameters
    ----------
    data : DataCollection
        The collection the key belongs to (its train selection applies).
    source, key : str
        Source name and key name (``'image.data'``, ``'beamEnergy.value'``).

    Raises
    ------
    SourceNameError, PropertyNameError
        The source or key is not selected in ``data``.
    """

    def __init__(self, data: DataCollection, source: str, key: str) -> None:
        data._check_key(source, key)
        self._data = data
        self.source = source
        self.key = key
        self.entry_shape, self.dtype = data.key_info(source, key)
        self.dtype = np.dtype(self.dtype)

    # -- what it is ---------------------------------------------------------------

    @property
    def index_group(self) -> str:
        """The INDEX group of the key ('' for control data)."""
        return self._data.files_for_source(self.source)[0].key_group(self.source, self.key)

    @property
    def train_ids(self) -> list[int]:
        """The selected train IDs, ascending (including trains without data here)."""
        return self._data.train_ids

    @property
    def _table(self) -> SourceTable:
        return self._data.key_table(self.source, self.key)

    @property
    def ndim(self) -> int:
        """Dimensions of ``ndarray()``: the entries axis plus those of one entry."""
        return len(self.entry_shape) + 1

    @property
    def shape(self) -> tuple[int, ...]:
        """(entries over the selected trains, *entry shape)."""
        return (int(self._table.count.sum()),) + tuple(self.entry_shape)

    @property
    def nbytes(self) -> int:
        """Bytes ``ndarray()`` would take."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def size_mb(self) -> float:
        """``nbytes`` in megabytes (10**6 bytes)."""
        return self.nbytes / 1e6

    @property
    def size_gb(self) -> float:
        """``nbytes`` in gigabytes (10**9 bytes)."""
        return self.nbytes / 1e9

    @property
    def source_file_paths(self) -> list[Any]:
        """The files holding data of this key for the selected trains."""
        table = self._table
        used = np.unique(table.file[table.count > 0])
        return [self._data.files[int(i)].path for i in used]

    def __repr__(self) -> str:
        return (f"<detstack.KeyData source={self.source!r} key={self.key!r} "
                f"for {len(self.train_ids)} trains>")

    __iter__ = None  # like EXtra-data: iterate with .trains()

    # -- train selections -----------------------------------------------------------

    def select_trains(self, trains: Any) -> KeyData:
        """The same key over some of the selected trains (also ``key_data[trains]``).

        Parameters
        ----------
        trains : slice, int, list, numpy.ndarray, by_index[...] or by_id[...]
            Any train selection :meth:`DataCollection.select_trains` accepts.

        Returns
        -------
        KeyData
            This key over those trains.

        Raises
        ------
        TrainIndexError
            A position is out of range.
        """
        return KeyData(self._data.select_trains(trains), self.source, self.key)

    def __getitem__(self, trains: Any) -> KeyData:
        return self.select_trains(trains)

    def drop_empty_trains(self) -> KeyData:
        """The same key over only the trains where it has data.

        Returns
        -------
        KeyData
            This key over the trains with at least one entry.
        """
        return self.select_trains(self.data_counts(labelled=False) > 0)

    # -- counts and coordinates -------------------------------------------------------

    def data_counts(self, labelled: bool = True) -> Any:
        """Entries per selected train.

        Parameters
        ----------
        labelled : bool, default True
            A pandas Series indexed by train ID; False: a numpy array aligned with
            ``train_ids``.

        Returns
        -------
        pandas.Series or numpy.ndarray
            Entry count per train (0 where there is none).
        """
        counts = self._table.counts_for(self._data.train_ids_array)
        if not labelled:
            return counts
        import pandas as pd
        return pd.Series(counts, index=pd.Index(self._data.train_ids_array, name="trainId"))

    def train_id_coordinates(self) -> np.ndarray:
        """The train ID of every entry of ``ndarray()``.

        Returns
        -------
        numpy.ndarray
            uint64 train IDs, each repeated by its entry count.
        """
        table = self._table
        return np.repeat(table.train_ids, table.count.astype(np.intp))

    # -- reading ----------------------------------------------------------------------

    def _blocks(self) -> list[tuple[int, int, int, int]]:
        """(file index, first source row, output row, rows) of every contiguous block."""
        table = self._table
        have = np.flatnonzero(table.count > 0)
        if not len(have):
            return []
        file, first = table.file[have], table.first[have].astype(np.int64)
        count = table.count[have].astype(np.int64)
        out = np.concatenate([[0], np.cumsum(count)[:-1]])
        joins = (file[1:] == file[:-1]) & (first[1:] == first[:-1] + count[:-1])
        starts = np.concatenate([[0], np.flatnonzero(~joins) + 1])
        ends = np.concatenate([starts[1:], [len(have)]])
        return [(int(file[s]), int(first[s]), int(out[s]), int(count[s:e].sum()))
                for s, e in zip(starts, ends, strict=True)]

    def _read_rows(self, file_no: int, first: int, n: int, roi: tuple[Any, ...],
                   out: np.ndarray) -> None:
        ds = self._data._dataset(self._data.files[file_no], self.source, self.key)
        sel = (slice(first, first + n),) + roi
        if self.dtype.hasobject or not out.flags.c_contiguous:
            out[...] = ds[sel]
        else:
            ds.read_direct(out, source_sel=sel)

    def ndarray(self, roi: Any = (), out: np.ndarray | None = None) -> np.ndarray:
        """Load the data as a numpy array ``(entries, *entry after roi)``.

        Parameters
        ----------
        roi : numpy index expression, optional
            Applied to every entry (``np.s_[:8]``), never to the entries axis.
        out : numpy.ndarray, optional
            Array of the right shape to fill instead of allocating one.

        Returns
        -------
        numpy.ndarray
            Every entry over the selected trains, in train order (``out`` when given);
            variable-length strings as Python ``str`` objects.

        Raises
        ------
        ValueError
            ``out`` has the wrong shape.
        """
        roi = roi if isinstance(roi, tuple) else (roi,)
        shape = self.shape[:1] + roi_shape(tuple(self.entry_shape), roi)
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif out.shape != shape:
            raise ValueError(f"ndarray(out=...) requires an array of shape {shape}, "
                             f"not {out.shape}")
        for file_no, first, dst, n in self._blocks():
            self._read_rows(file_no, first, n, roi, out[dst:dst + n])
        if out.dtype.hasobject:      # variable-length strings come back as bytes
            out = np.array([x.decode("utf-8", "surrogateescape") if isinstance(x, bytes) else x
                            for x in out.flat], dtype=object).reshape(out.shape)
        return out

    def _name(self, sep: str) -> str:
        name = f"{self.source}{sep}{self.key}"
        return name.removesuffix(".value") if self.is_control else name

    def xarray(self, extra_dims: list[str] | None = None, roi: Any = (),
               name: str | None = None) -> Any:
        """Load the data as an xarray.DataArray with a ``trainId`` dimension.

        Parameters
        ----------
        extra_dims : list of str, optional
            Names of the dimensions after ``trainId`` (default ``dim_0``, ``dim_1``...).
        roi : numpy index expression, optional
            As for :meth:`ndarray`.
        name : str, optional
            Name of the array; default ``'<source>.<key>'`` (control keys without
            ``.value``).

        Returns
        -------
        xarray.DataArray
            ``ndarray(roi)`` with dimensions ``trainId, *extra_dims`` and a ``trainId``
            coordinate per entry.

        Raises
        ------
        ValueError
            ``extra_dims`` names the wrong number of dimensions.
        """
        import xarray as xr
        arr = self.ndarray(roi=roi)
        extra = list(extra_dims) if extra_dims is not None else [
            f"dim_{i}" for i in range(arr.ndim - 1)]
        if len(extra) != arr.ndim - 1:
            raise ValueError(f"extra_dims names {len(extra)} dimensions; the data has "
                             f"{arr.ndim - 1} after trainId")
        return xr.DataArray(arr, dims=["trainId", *extra],
                            coords={"trainId": self.train_id_coordinates()},
                            name=name or self._name("."))

    def series(self) -> Any:
        """Load 1-D data (one value per entry) as a pandas Series.

        Returns
        -------
        pandas.Series
            Values indexed by ``trainId``, named ``'<source>/<key>'``.

        Raises
        ------
        TypeError
            The key holds more than one value per entry.
        """
        import pandas as pd
        if self.ndim > 1:
            raise TypeError(f"series() needs one value per entry; {self.source} "
                            f"{self.key} has entries of shape {tuple(self.entry_shape)}")
        index = pd.Index(self.train_id_coordinates(), name="trainId")
        return pd.Series(self.ndarray(), name=self._name("/"), index=index)

    def dask_array(self, labelled: bool = False) -> Any:
        """A lazy dask array of ``ndarray()``.

        Each part is a block of rows contiguous in one file, split to at most 1 GiB.

        Parameters
        ----------
        labelled : bool, default False
            Wrap it in an xarray.DataArray with a ``trainId`` coordinate.

        Returns
        -------
        dask.array.Array or xarray.DataArray
            Entries over the selected trains; nothing is read until computed.
        """
        import dask
        import dask.array as da
        row_bytes = max(1, int(np.prod(self.entry_shape, dtype=np.int64)) * self.dtype.itemsize)
        per_part = max(1, DASK_PART_BYTES // row_bytes)
        parts = []
        for file_no, first, _, n in self._blocks():
            for start in range(0, n, per_part):
                rows = min(per_part, n - start)
                part = dask.delayed(self._read_part)(file_no, first + start, rows)
                parts.append(da.from_delayed(part, (rows, *self.entry_shape), self.dtype))
        if parts:
            arr = da.concatenate(parts, axis=0)
        else:
            arr = da.zeros((0, *self.entry_shape), dtype=self.dtype)
        if not labelled:
            return arr
        import xarray as xr
        return xr.DataArray(arr, dims=["trainId"] + [f"dim_{i}" for i in range(arr.ndim - 1)],
                            coords={"trainId": self.train_id_coordinates()})

    def _read_part(self, file_no: int, first: int, n: int) -> np.ndarray:
        out = np.empty((n, *self.entry_shape), dtype=self.dtype)
        self._read_rows(file_no, first, n, (), out)
        return out

    # -- by train ---------------------------------------------------------------------

    def train_from_id(self, tid: int, keep_dims: bool = False) -> tuple[int, Any]:
        """The data of one train.

        Parameters
        ----------
        tid : int
            A selected train ID.
        keep_dims : bool, default False
            Keep the entry axis when the train has one entry.

        Returns
        -------
        tuple
            ``(train ID, numpy array)``; an empty ``(0, *entry_shape)`` array for a
            selected train without data.

        Raises
        ------
        TrainIDError
            The train is not selected.
        """
        tid = int(tid)
        pos = np.searchsorted(self._data.train_ids_array, tid)
        if pos >= len(self._data.train_ids_array) or int(self._data.train_ids_array[pos]) != tid:
            raise TrainIDError(f"Train ID {tid} is not in the selection of "
                               f"{self.source} {self.key} ({len(self.train_ids)} trains)")
        loc = self._data._locate(self.source, self.index_group, tid)
        if loc is None or loc[2] == 0:
            return tid, np.empty((0, *self.entry_shape), dtype=self.dtype)
        f, first, count = loc
        ds = self._data._dataset(f, self.source, self.key)
        return tid, (ds[first] if count == 1 and not keep_dims else ds[first:first + count])

    def train_from_index(self, i: int, keep_dims: bool = False) -> tuple[int, Any]:
        """The data of the train at a position, like :meth:`train_from_id`.

        Parameters
        ----------
        i : int
            Position among the selected trains (negative counts from the end).
        keep_dims : bool, default False
            Keep the entry axis when the train has one entry.

        Returns
        -------
        tuple
            ``(train ID, numpy array)``.

        Raises
        ------
        IndexError
            ``i`` is out of range.
        """
        return self.train_from_id(self.train_ids[i], keep_dims=keep_dims)

    def trains(self, keep_dims: bool = False,
               include_empty: bool = False) -> Iterator[tuple[int, Any]]:
        """Iterate over the selected trains, reading one train at a time.

        Parameters
        ----------
        keep_dims : bool, default False
            Keep the entry axis when a train has one entry.
        include_empty : bool, default False
            Also yield trains without data: ``None``, or an empty array with
            ``keep_dims``.

        Yields
        ------
        tuple
            ``(train ID, numpy array)`` in train order.
        """
        counts = self.data_counts(labelled=False)
        for tid, n in zip(self.train_ids, counts, strict=True):
            if n:
                yield self.train_from_id(tid, keep_dims=keep_dims)
            elif include_empty:
                yield tid, (np.zeros((0, *self.entry_shape), dtype=self.dtype)
                            if keep_dims else None)
