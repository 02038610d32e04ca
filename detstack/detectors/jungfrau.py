"""JUNGFRAU: one entry per train per module, memory cells along the second axis."""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InconsistentModulesError
from ..run.collection import DataCollection
from . import kinds
from .base import MultimodDetectorBase
from .keydata import as_roi
from .train_iter import iter_trains
from .xtdf_keydata import dims_after_roi


def relabel(arr: xr.DataArray, entry_ndim: int | None = None, roi: Any = ()) -> xr.DataArray:
    """trainId -> train, and cell/pixel names for the per-entry axes.

    ``entry_ndim`` is the number of per-entry axes before ``roi`` was applied: an
    integer in the ROI drops its axis, and the others keep their names.
    """
    if "trainId" in arr.dims:
        arr = arr.rename({"trainId": "train"})
    inner = [d for d in arr.dims if d.startswith("dim_")]
    names = ENTRY_NAMES.get(len(inner) if entry_ndim is None else entry_ndim)
    if names is not None:
        kept = dims_after_roi(names, as_roi(roi))
        if len(kept) == len(inner):
            arr = arr.rename(dict(zip(inner, kept, strict=True)))
    return arr


ENTRY_NAMES = {3: ["cell", "slow_scan", "fast_scan"], 1: ["cell"]}


class JUNGFRAU(MultimodDetectorBase):
    """JUNGFRAU: modules of 512 x 1024 pixels numbered from 1, with memory cells.

    Each train stores one entry per module holding all memory cells, so arrays
    are ``(module, train, cell, slow_scan, fast_scan)``.

    Parameters
    ----------
    data : DataCollection
        A run (``detstack.RunDirectory``, ``detstack.H5File``) or a view.
    detector_name : str, optional
        Detector name, e.g. ``'SPB_IRDA_JF4M'``; needed only when the data holds
        more than one JUNGFRAU.
    modules : set of int, optional
        Module numbers to use, counted from 1 (default: every module found).
    min_modules : int, default 1
        Keep only trains where at least this many modules have data.
    n_modules : int, optional
        Modules of the whole detector (default: the highest module number found,
        or what a view recorded).
    first_modno : int, default 1
        The number in the source name of the first module (e.g. 3 for
        ``FXE_XAD_JF500K/DET/JNGFR03:daqOutput`` as module 1).
    raw : bool or None, default None
        ``True``: raw data; ``False``: corrected; ``None``: corrected if present.

    Raises
    ------
    SourceNameError
        No JUNGFRAU sources (for these ``modules``/``raw``) are found.
    ValueError
        Several JUNGFRAU detectors (pass ``detector_name``), ``min_modules`` not
        positive, or no train with ``min_modules`` modules.
    """

    kind = kinds.JUNGFRAU

    def __init__(self, data: DataCollection, detector_name: str | None = None,
                 modules: Container[int] | None = None, *, min_modules: int = 1,
                 n_modules: int | None = None, first_modno: int = 1,
                 raw: bool | None = None) -> None:
        self._first_modno = first_modno
        self._n_modules_arg = n_modules
        if modules is not None:
            # module numbers given by the user are in the renumbered scheme
            modules = {m + first_modno - 1 for m in modules}
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw)
        entry, _ = self.data.key_info(next(iter(self.source_to_modno)), self.kind.main_key)
        self._frames_per_entry = int(entry[0]) if entry else 1

    def _renumber(self) -> None:
        shift = self._first_modno - 1
        self.source_to_modno = {s: m - shift for s, m in self.source_to_modno.items()}

    def _count_modules(self, data: DataCollection) -> int:
        if self._n_modules_arg is not None:
            return int(self._n_modules_arg)
        hint = getattr(data, "n_modules_hint", None)  # views record it
        if hint is not None:
            return int(hint)
        all_numbers = self._match(data, self.detector_name, "DET") | self._match(
            data, self.detector_name, "CORR")
        return max(all_numbers.values()) - self._first_modno + 1

    def _build_frame_map(self, min_modules: int) -> Any:
        fmap = super()._build_frame_map(min_modules)
        return type(fmap)(fmap.sources, np.asarray(list(self.source_to_modno.values())),
                          fmap.train_ids, fmap.counts, fmap.file, fmap.first, fmap.files)

    def get_array(self, key: str, *, fill_value: Any = None, roi: Any = (),
                  astype: Any = None) -> xr.DataArray:
        """Read one key of every selected module into a labelled array.

        Parameters
        ----------
        key : str
            The key to read, e.g. ``'data.adc'`` (pixels), ``'data.gain'``,
            ``'data.memoryCell'``.
        fill_value : int or float, optional
            Value for absent modules and trains (default NaN for floats, 0 for
            integers).
        roi : tuple of slices/ints, optional
            Selection within each module's entry ``(cell, y, x)``, e.g.
            ``np.s_[:, 10:60, 100:200]``; an integer drops its axis.
        astype : dtype, optional
            Dtype of the result (default: the stored dtype).

        Returns
        -------
        xarray.DataArray
            ``(module, train, cell, slow_scan, fast_scan)`` for pixel keys (fewer
            axes after an integer ``roi``), with module numbers and train IDs.

        Raises
        ------
        PropertyNameError
            A module has no such key.
        FileFormatError
            A source file cannot be read.
        """
        kd = self[key]
        arr = kd.xarray(fill_value=fill_value, roi=as_roi(roi), astype=astype)
        return relabel(arr, len(kd.entry_shape), roi)

    def get_dask_array(self, key: str, fill_value: Any = None,
                       astype: Any = None) -> xr.DataArray:
        """A lazy labelled array of one key (dask, chunked by whole trains).

        Parameters
        ----------
        key : str
            The key to read, e.g. ``'data.adc'``.
        fill_value : int or float, optional
            Value for absent modules and trains (default NaN / 0).
        astype : dtype, optional
            Dtype of the result.

        Returns
        -------
        xarray.DataArray
            ``(module, train, cell, slow_scan, fast_scan)``, nothing read until
            computed.

        Raises
        ------
        PropertyNameError
            A module has no such key.
        """
        return relabel(self[key].dask_array(labelled=True, fill_value=fill_value, astype=astype))

    def trains(self, require_all: bool = True) -> Iterator[tuple[int, dict[str, xr.DataArray]]]:
        """Iterate over the selected trains, reading one train at a time.

        Parameters
        ----------
        require_all : bool, default True
            Skip trains where any selected module has no data.

        Yields
        ------
        train_id : int
            The train ID.
        data : dict of str to xarray.DataArray
            Every key, with a ``module`` axis first (pixel keys ``(module, cell,
            slow_scan, fast_scan)``).

        Raises
        ------
        FileFormatError
            A source file cannot be read.
        """
        for tid, data in iter_trains(self, None, require_all):
            yield tid, {k: relabel(v) for k, v in data.items()}

    def cell_ids(self) -> np.ndarray:
        """The memory cell of each cell slot, from the first train.

        Returns
        -------
        numpy.ndarray
            One memory cell number per position on the ``cell`` axis.

        Raises
        ------
        ValueError
            No module recorded ``data.memoryCell`` for the first train.
        InconsistentModulesError
            Modules disagree on the memory cell of a slot.
        """
        first = self.select_trains(np.s_[:1])
        cells = first["data.memoryCell"].ndarray(fill_value=255)[:, 0]
        missing = cells == 255
        if missing.all(axis=0).any():
            raise ValueError("Failed to find memoryCell")
        lo = np.where(missing, 255, cells).min(axis=0)
        hi = np.where(missing, 0, cells).max(axis=0)
        if (lo != hi).any():
            cell = int(np.argmax(lo != hi))
            column = cells[:, cell][~missing[:, cell]]
            values, n = np.unique(column, return_counts=True)
            usual = values[np.argmax(n)]
            m = int(np.flatnonzero(~missing[:, cell] & (cells[:, cell] != usual))[0])
            fmap = first.frame_map
            t = int(np.argmax(fmap.present[m]))
            where = fmap.files[int(fmap.file[m, t])].path
            raise InconsistentModulesError(
                f"Inconsistent memoryCell for different modules: {where}: module "
                f"{self.modules[m]} ({fmap.sources[m]}) has memoryCell {int(cells[m, cell])} at "
                f"cell position {cell} of train {int(fmap.train_ids[t])}, the other modules "
                f"{int(usual)}. Leave that module out (modules=[...])")
        return lo
