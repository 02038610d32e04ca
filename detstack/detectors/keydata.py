"""One key of a multi-module detector, with the modules on the first axis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from copy import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..errors import PropertyNameError
from ..frames import FrameMap
from .consistency import check_key
from .param_docs import shared
from .reading import RowReader, checked_fill, roi_shape

if TYPE_CHECKING:
    from .base import MultimodDetectorBase

PART_BYTES = 1 << 30


def key_data_for(det: MultimodDetectorBase, key: str) -> MultimodKeyData:
    if key not in det:
        missing = [s for s in det.source_to_modno if key not in det.data.keys_for_source(s)]
        raise PropertyNameError(f"Key {key!r} is not in every module of {det.detector_name} "
                                f"(missing from {missing[0]}{' and others' if len(missing) > 1 else ''})")
    if det.kind.xtdf and key.startswith(det.kind.per_frame_prefix):
        from .xtdf_keydata import XtdfImageKeyData
        return XtdfImageKeyData(det, key)
    return MultimodKeyData(det, key)


def empty_dask(shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """A dask array without trains (da.zeros cannot chunk a zero-length axis)."""
    import dask.array as da  # here: most reads need no dask (0.2 s to import)
    return da.from_array(np.zeros(shape, dtype=dtype), chunks=-1)


def as_roi(roi: Any) -> tuple[Any, ...]:
    return roi if isinstance(roi, tuple) else (roi,)


class MultimodKeyData:
    """A key with one entry per train in each module (JUNGFRAU, headers...): ``det[key]``.

    Parameters
    ----------
    det : detector
        The detector object the key belongs to (its module and train selection apply).
    key : str
        The key, e.g. ``'data.adc'`` or ``'header.pulseCount'``.

    Raises
    ------
    PropertyNameError
        A module has no such key.
    InconsistentModulesError
        Modules store the key with different shapes or dtypes.
    """

    def __init__(self, det: MultimodDetectorBase, key: str) -> None:
        self.det = det
        self.key = key
        first_source = next(iter(det.source_to_modno))
        check_key(det.data, list(det.source_to_modno), key)
        self.entry_shape, self.dtype = det.data.key_info(first_source, key)
        self.dtype = np.dtype(self.dtype)
        self.group = det.data.files_for_source(first_source)[0].key_group(first_source, key)

    # -- shape and labels ----------------------------------------------------

    @property
    def fmap(self) -> FrameMap:
        """The frame map of the key's index group (where each module keeps each train)."""
        return self.det.group_map(self.group)

    @property
    def modules(self) -> list[int]:
        """Numbers of the modules with data, ascending."""
        return self.det.modules

    @property
    def train_ids(self) -> list[int]:
        """Train IDs of the detector's selected trains."""
        return self.det.train_ids

    @property
    def ndim(self) -> int:
        """Dimensions of ``ndarray()``: module, train (or frame), then one entry's."""
        return len(self.entry_shape) + 2

    @property
    def dimensions(self) -> list[str]:
        """Dimension names of ``xarray()``."""
        return ["module", "trainId"] + [f"dim_{i}" for i in range(len(self.entry_shape))]

    def _n_rows(self) -> int:
        return len(self.det.train_ids)

    @shared
    def buffer_shape(self, module_gaps: bool = False, roi: Any = ()) -> tuple[int, ...]:
        """The shape ``ndarray()`` returns, e.g. to allocate an ``out`` array.

        Parameters
        ----------
        $module_gaps
        $roi

        Returns
        -------
        tuple of int
            ``(modules, trains, *entry after roi)``.
        """
        n_mod = self.det.n_modules if module_gaps else len(self.modules)
        return (n_mod, self._n_rows()) + roi_shape(self.entry_shape, as_roi(roi))

    @property
    def shape(self) -> tuple[int, ...]:
        """``buffer_shape()``: (modules with data, trains, *entry)."""
        return self.buffer_shape()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.key!r} for {len(self.modules)} modules of "
                f"{self.det.detector_name}, shape {self.shape}>")

    # -- reading ---------------------------------------------------------------

    def _slots(self, module_gaps: bool) -> list[int]:
        if module_gaps:
            return [self.det.module_slot(m) for m in self.modules]
        return list(range(len(self.modules)))

    def _selected(self) -> np.ndarray | None:
        return None

    def _src_index(self, roi: tuple[Any, ...]) -> tuple[Any, ...]:
        return roi

    @shared
    def ndarray(self, *, fill_value: Any = None, out: np.ndarray | None = None, roi: Any = (),
                astype: Any = None, module_gaps: bool = False) -> np.ndarray:
        """Read the key of every selected module and train into one numpy array.

        Parameters
        ----------
        $fill_value
        $out
        $roi
        $astype
        $module_gaps

        Returns
        -------
        numpy.ndarray
            ``(module, train, *entry)``; ``out`` when given.

        Raises
        ------
        ValueError
            ``out`` has the wrong shape, or ``fill_value`` does not fit the dtype.
        FileFormatError
            A source file cannot be read.
        """
        return self._read(fill_value, out, roi, astype, module_gaps)

    def _read(self, fill_value: Any, out: np.ndarray | None, roi: Any, astype: Any,
              module_gaps: bool, threads: int | None = None,
              also: Callable[[RowReader], Callable[[], None]] | None = None) -> np.ndarray:
        """Read into ``out`` (or a new array); ``also`` plans more reads into the same
        round of jobs (frame labels) and returns what to call once they have run."""
        roi = as_roi(roi)
        shape = self.buffer_shape(module_gaps, roi)
        if out is not None:
            if out.shape != shape:
                raise ValueError(f"requires output array of shape {shape}, got {out.shape}")
            dtype = out.dtype  # the fill value is that of the buffer we write into
        else:
            dtype = np.dtype(astype) if astype is not None else self.dtype
        fill = checked_fill(fill_value, dtype)
        if out is None:
            out = np.empty(shape, dtype=dtype)
        slots = self._slots(module_gaps)
        if not self._fully_covered(module_gaps):
            out.fill(fill)
        reader = RowReader()
        reader.add(self.fmap, self.key, out, slots, self._selected(), self._src_index(roi),
                   per_train=not self._per_frame)
        finish = also(reader) if also is not None else None
        reader.run(threads)
        if finish is not None:
            finish()
        return out

    _per_frame = False

    def _fully_covered(self, module_gaps: bool) -> bool:
        if module_gaps and len(self.modules) < self.det.n_modules:
            return False
        present = self.fmap.present
        return bool(present.all())

    def _train_coord(self) -> np.ndarray:
        return np.asarray(self.det.frame_map.train_ids, dtype=np.uint64)

    def train_id_coordinates(self) -> np.ndarray:
        """The train ID of every entry along the second axis.

        Returns
        -------
        numpy.ndarray
            uint64 train IDs (a copy).
        """
        return self._train_coord().copy()

    @shared
    def xarray(self, *, fill_value: Any = None, roi: Any = (), astype: Any = None) -> xr.DataArray:
        """Read the key into a labelled array.

        Parameters
        ----------
        $fill_value
        $roi
        $astype

        Returns
        -------
        xarray.DataArray
            ``(module, trainId, dim_0, ...)`` with module numbers and train IDs.

        Raises
        ------
        ValueError
            ``fill_value`` does not fit the dtype.
        """
        arr = self.ndarray(fill_value=fill_value, roi=roi, astype=astype)
        dims = self.dimensions[:2] + [f"dim_{i}" for i in range(arr.ndim - 2)]
        return xr.DataArray(arr, dims=dims, coords={"module": self.modules,
                                                    "trainId": self._train_coord()})

    @shared
    def data_availability(self, module_gaps: bool = False) -> np.ndarray:
        """Which module has data for which train.

        Parameters
        ----------
        $module_gaps

        Returns
        -------
        numpy.ndarray
            Boolean ``(module, train)``.
        """
        present = self.fmap.present
        if not module_gaps:
            return present.copy()
        out = np.zeros((self.det.n_modules, present.shape[1]), bool)
        out[self._slots(True)] = present
        return out

    # -- dask ----------------------------------------------------------------------

    def _part_rows(self) -> int:
        """Rows per dask chunk: at most ~1 GiB and 256 trains."""
        per_row = self.dtype.itemsize * len(self.modules) * int(np.prod(self.entry_shape))
        return max(1, min(PART_BYTES // max(per_row, 1), 256))

    @shared
    def dask_array(self, *, labelled: bool = False, fill_value: Any = None,
                   astype: Any = None) -> Any:
        """A lazy dask array of ``ndarray()``, chunked by whole trains (~1 GiB at most).

        Parameters
        ----------
        labelled : bool, default False
            Wrap it in an xarray.DataArray with module and train coordinates.
        $fill_value
        $astype

        Returns
        -------
        dask.array.Array or xarray.DataArray
            ``(module, train, *entry)``; nothing is read until computed.
        """
        arr = self._lazy(self._part_rows(), fill_value, astype)
        if not labelled:
            return arr
        return xr.DataArray(arr, dims=self.dimensions,
                            coords={"module": self.modules, "trainId": self._train_coord()})

    def _lazy(self, rows_per_part: int, fill_value: Any, astype: Any) -> Any:
        """A dask array of one delayed ``ndarray()`` per part of whole trains."""
        import dask
        import dask.array as da
        dtype = np.dtype(astype) if astype is not None else self.dtype
        parts = []
        for sub in self.det.split_trains(frames_per_part=rows_per_part):
            kd = copy(self)
            kd.det = sub
            read = dask.delayed(kd.ndarray, pure=True)(fill_value=fill_value, astype=astype)
            parts.append(da.from_delayed(read, shape=kd.buffer_shape(), dtype=dtype))
        return da.concatenate(parts, axis=1) if parts else empty_dask(self.buffer_shape(), dtype)

    # -- train selection ---------------------------------------------------------

    def select_trains(self, trains: Any) -> MultimodKeyData:
        """The same key over some of the selected trains (also ``key_data[trains]``).

        Parameters
        ----------
        trains : slice, int, list, numpy.ndarray, by_index[...] or by_id[...]
            Any train selection the detector's ``select_trains`` accepts.

        Returns
        -------
        MultimodKeyData
            This key over those trains (none, if the selection matches none).

        Raises
        ------
        TypeError
            ``trains`` is not a supported selection.
        ValueError
            A negative ``by_id`` value, or a boolean mask of the wrong length.
        """
        new = copy(self)
        new.det = self.det.select_trains(trains)
        return new

    def __getitem__(self, item: Any) -> MultimodKeyData:
        return self.select_trains(item)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"Iteration over {type(self).__name__} is not supported: use "
                        "det.trains() or split_trains()")

    @shared
    def split_trains(self, parts: int | None = None, trains_per_part: int | None = None,
                     frames_per_part: int | None = None) -> Iterator[MultimodKeyData]:
        """Split the trains into consecutive parts, e.g. to work in bounded memory.

        Parameters
        ----------
        $split_limits

        Yields
        ------
        MultimodKeyData
            This key over each part of the trains, in order.

        Raises
        ------
        ValueError
            No limit is given.
        """
        for sub in self.det.split_trains(parts, trains_per_part, frames_per_part):
            new = copy(self)
            new.det = sub
            yield new
