"""The multi-module detector interface shared by every detector kind."""

from __future__ import annotations

import re
import warnings
from collections.abc import Container, Iterator
from copy import copy
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AmbiguousDetectorError, SourceNameError
from ..frames import FrameMap
from ..run.collection import DataCollection
from ..run.selection import ById
from .consistency import check_counts
from .kinds import DetectorKind
from .param_docs import shared


def _caller_stacklevel() -> int:
    """``stacklevel`` pointing at the first frame outside this package (the user's call),
    however deep the detector class hierarchy is."""
    import inspect
    import os

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 1, inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the function that warns
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level


def find_detector_names(data: DataCollection, kind: DetectorKind) -> set[str]:
    pattern = kind.source_re("(?:DET|CORR)")
    found = set()
    for src in data.instrument_sources:
        m = pattern.match(src)
        if m:
            found.add(m.group("detname"))
    return found


class MultimodDetectorBase:
    """Shared construction, train selection and per-key access."""

    kind: DetectorKind
    _frames_per_entry = 1

    def __init__(self, data: DataCollection, detector_name: str | None = None,
                 modules: Container[int] | None = None, *, min_modules: int = 1,
                 raw: bool | None = None) -> None:
        if detector_name is None:
            detector_name = self._discover_name(data)
        if min_modules <= 0:
            raise ValueError(f"min_modules must be a positive integer, not {min_modules}")
        self.detector_name = detector_name
        sources = self._choose_sources(data, detector_name, modules, raw)
        self.source_to_modno = dict(sorted(sources.items(), key=lambda kv: kv[1]))
        self._renumber()
        self.modno_to_source = {m: s for s, m in self.source_to_modno.items()}
        self.data = data.select([(s, "*") for s in self.source_to_modno])
        self._fmap = self._build_frame_map(min_modules)
        self._group_maps: dict[str, FrameMap] = {self.kind.index_group: self._fmap}
        self.data = self.data.select_trains(ById(self._fmap.train_ids))
        self._n_modules = self._count_modules(data)

    # -- construction steps -----------------------------------------------------

    @classmethod
    def _discover_name(cls, data: DataCollection) -> str:
        names = find_detector_names(data, cls.kind)
        if not names:
            raise SourceNameError(
                f"No {cls.kind.name} detector sources found (looked for sources matching "
                f"{cls.kind.source_re('(DET|CORR)').pattern!r}). Check the run holds this "
                "detector, or pass detector_name=")
        if len(names) > 1:
            listed = ", ".join(repr(n) for n in sorted(names))
            raise AmbiguousDetectorError(f"Multiple detectors found in the data: {listed}. "
                             f"Pass detector_name to {cls.__name__}() to pick one.")
        return names.pop()

    def _is_raw(self, data: DataCollection, source: str) -> bool:
        if "/CORR/" in source:
            return False
        if self.kind.main_key not in data.keys_for_source(source):
            # e.g. a view written without the pixel data: only corrected data has a mask
            return self.kind.mask_key not in data.keys_for_source(source)
        entry, dtype = data.key_info(source, self.kind.main_key)
        if self.kind.name in ("AGIPD1M", "AGIPD500K"):
            return len(entry) == 3
        return np.dtype(dtype).kind in "iu"

    def _match(self, data: DataCollection, name: str, where: str) -> dict[str, int]:
        pattern = re.compile(re.escape(name) + f"/{where}/" + self.kind.module_re)
        out = {}
        for src in data.instrument_sources:
            m = pattern.match(src)
            if m and not (where == "CORR" and src in data.legacy_sources):
                out[src] = int(m.group("modno"))
        return out

    def _choose_sources(self, data: DataCollection, name: str,
                        modules: Container[int] | None, raw: bool | None) -> dict[str, int]:
        det = self._match(data, name, "DET")
        corr = self._match(data, name, "CORR")
        if raw:
            not_raw = [s for s in det if not self._is_raw(data, s)]
            if not_raw or not det:
                raise ValueError(f"Raw data was not found: {name}/DET/... sources are "
                                 "from corrected data" if det else
                                 f"Raw data was not found: no {name}/DET/... sources")
            chosen, label = det, f"{name}/DET/..."
        elif corr:
            chosen, label = corr, f"{name}/CORR/..."
        else:
            det = {s: m for s, m in det.items() if s not in data.legacy_sources}
            if any(self._is_raw(data, s) for s in det):
                if raw is False:
                    raise SourceNameError(f"{name}/CORR/... (only raw data found; pass "
                                          "raw=True or leave raw=None)")
                warnings.warn("Falling back to raw data for backwards compatibility. Pass "
                              "raw=True to select raw data explicitly.",
                              stacklevel=_caller_stacklevel())
            chosen = det
            label = f"{name}/(DET|CORR)/..." if raw is None else f"{name}/CORR/..."
        if modules is not None:
            chosen = {s: m for s, m in chosen.items() if m in modules}
        if not chosen:
            raise SourceNameError(f"No sources matching {label}"
                                  + (f" for modules {sorted(modules)}" if modules is not None
                                     else ""))
        return chosen

    def _renumber(self) -> None:
        """Hook for kinds whose module numbers are offset (JUNGFRAU)."""

    def _count_modules(self, data: DataCollection) -> int:
        return self.kind.n_modules

    def _frame_map(self, group: str) -> FrameMap:
        srcs = list(self.source_to_modno)
        self.data.prefetch_sources(srcs)   # one pass over the files, every index group
        tables = [self.data.source_table(s, group) for s in srcs]
        return FrameMap.from_tables(srcs, list(self.source_to_modno.values()),
                                    self.data.train_ids_array, tables, self.data.files)

    def _build_frame_map(self, min_modules: int) -> FrameMap:
        fmap = self._frame_map(self.kind.index_group)
        check_counts(fmap, self.kind.index_group)
        keep = fmap.present.sum(axis=0) >= min_modules
        if not keep.any():
            raise ValueError(f"No data found with >= {min_modules} modules present")
        return fmap.select_trains(keep)

    def group_map(self, group: str) -> FrameMap:
        """Frame map of another index group (header, detector...), same trains.

        Parameters
        ----------
        group : str
            The INDEX group, e.g. ``'header'``.

        Returns
        -------
        FrameMap
            Where every module keeps each selected train's rows of that group.

        Raises
        ------
        InconsistentModulesError
            The group's index is inconsistent across modules.
        """
        if group not in self._group_maps:
            self._group_maps[group] = self._frame_map(group)
        return self._group_maps[group]

    # -- public attributes --------------------------------------------------------

    @property
    def frame_map(self) -> FrameMap:
        """The frame map: where every (module, train) keeps its rows (see ``detstack.frames``)."""
        return self._fmap

    @property
    def n_modules(self) -> int:
        """Module slots of the whole detector (16 for AGIPD-1M), present or not."""
        return self._n_modules

    @property
    def module_shape(self) -> tuple[int, int]:
        """(slow_scan, fast_scan) pixels of one module."""
        return self.kind.module_shape

    @property
    def modules(self) -> list[int]:
        """Numbers of the modules with data, ascending."""
        return list(self.modno_to_source)

    @property
    def train_ids(self) -> list[int]:
        """Train IDs of the selected trains (those with ``min_modules`` modules), ascending."""
        return [int(t) for t in self._fmap.train_ids]

    @property
    def frame_counts(self) -> pd.Series:
        """Frames per train (rows of the main key), indexed by train ID."""
        return pd.Series(self._fmap.train_counts(), index=pd.Index(self._fmap.train_ids,
                                                                     name="trainId"))

    @property
    def train_ids_perframe(self) -> np.ndarray:
        """The train ID of every frame, in the order ``get_array`` stacks them."""
        return self._fmap.train_ids_perframe()

    @property
    def frames_per_train(self) -> int:
        """The number of frames in every train (0 when there are none).

        Raises
        ------
        ValueError
            Trains hold different numbers of frames (see ``frame_counts``).
        """
        counts = set(np.unique(self._fmap.train_counts()).tolist()) - {0}
        if len(counts) > 1:
            raise ValueError(f"Varying number of frames per train: {counts}")
        return int(counts.pop()) * self._frames_per_entry if counts else 0

    def _is_all_raw(self) -> bool:
        return all(self._is_raw(self.data, s) for s in self.source_to_modno)

    def __repr__(self) -> str:
        kind = "raw" if self._is_all_raw() else "proc"
        return (f"<{type(self).__name__}: Data interface for detector {self.detector_name!r} - "
                f"{kind} data with {len(self.source_to_modno)} modules>")

    def __contains__(self, key: str) -> bool:
        return all(key in self.data.keys_for_source(s) for s in self.source_to_modno)

    def __getitem__(self, key: str) -> Any:
        from .keydata import key_data_for
        return key_data_for(self, key)

    # -- train selection ------------------------------------------------------------

    def select_trains(self, trains: Any) -> MultimodDetectorBase:
        """A new detector object over some of the trains; this one is unchanged.

        Parameters
        ----------
        trains : slice, int, array, bool mask, by_id[...] or by_index[...]
            Trains by position (``np.s_[:5]``, ``by_index[...]``) or by train ID
            (``by_id[10000:10010]``, ``by_id[[10000, 10003]]``).

        Returns
        -------
        MultimodDetectorBase
            The same class, reading only the selected trains. A selection matching
            no train gives an object with no trains (not an error).

        Raises
        ------
        TypeError
            ``trains`` is not a supported selection.
        ValueError
            A negative ``by_id`` value, or a boolean mask of the wrong length.
        IndexError
            An integer position beyond the number of trains.
        """
        new = copy(self)
        new.data = self.data.select_trains(trains)
        keep = np.isin(self._fmap.train_ids, new.data.train_ids_array)
        new._fmap = self._fmap.select_trains(keep)
        new._group_maps = {g: fm.select_trains(keep) for g, fm in self._group_maps.items()}
        return new

    @shared
    def split_trains(self, parts: int | None = None, trains_per_part: int | None = None,
                     frames_per_part: int | None = None) -> Iterator[MultimodDetectorBase]:
        """Split the trains into consecutive parts, e.g. to work in bounded memory.

        Give at least one of the three limits; several may be combined.

        Parameters
        ----------
        $split_limits

        Yields
        ------
        MultimodDetectorBase
            Detector objects over consecutive train ranges, covering every train.

        Raises
        ------
        ValueError
            None of the three limits given.
        """
        from .split import split_train_ranges
        for sl in split_train_ranges(self, parts, trains_per_part, frames_per_part):
            yield self.select_trains(sl)

    def data_availability(self, module_gaps: bool = False) -> np.ndarray:
        """Which module has data for which train.

        Parameters
        ----------
        module_gaps : bool, default False
            ``True``: one row per module slot of the whole detector (absent modules
            all False); ``False``: one row per module with data.

        Returns
        -------
        numpy.ndarray
            Boolean ``(module, frame)`` over the frame axis of ``get_dask_array``
            (``train_ids_perframe`` labels it): True where the module has the main
            key's data for that frame.
        """
        return self[self.kind.main_key].data_availability(module_gaps=module_gaps)

    def write_virtual_cxi(self, filename: str, fillvalues: dict[str, Any] | None = None) -> None:
        """Write a CXI 1.5 file of virtual datasets over this detector's data (no copy).

        The file maps every frame of the run as one ``(frame, module, ...)`` array for
        CrystFEL-style tools (and a module-first copy for fast bulk reads); it needs
        the run files to stay where they are. Same as ``detstack.convert.to_cxi(det,
        filename, fillvalues=fillvalues, overwrite=True)``.

        Parameters
        ----------
        filename : str or path-like
            The file to write; an existing file is replaced.
        fillvalues : dict, optional
            Values for frames a module lacks, by dataset: ``{'data': ..., 'gain':
            ..., 'mask': ...}`` (defaults NaN for floats / 0 for integers, 0,
            0xffffffff).

        Raises
        ------
        ValueError
            A fill value the dataset's dtype cannot hold, or modules disagreeing on
            pulse/cell IDs.
        MultiRunError
            The data combines several runs.
        OutputWriteError
            The file could not be written (e.g. the disk is full); nothing is left.
        """
        from ..convert.cxi import to_cxi
        to_cxi(self, filename, fillvalues=fillvalues, overwrite=True)

    def write_frames(self, filename: str, trains: Any, pulses: Any) -> None:
        """Copy selected frames into a new file in the EuXFEL layout.

        ``trains[i], pulses[i]`` names one frame; the file holds those frames of
        every module, with a valid INDEX, so ``detstack.H5File`` (or EXtra-data)
        reads it like a run. An existing file is replaced.

        Parameters
        ----------
        filename : str or path-like
            The file to write.
        trains : array of int
            Train ID of each frame.
        pulses : array of int
            Pulse ID (as the detector recorded it) of each frame, same length.

        Raises
        ------
        ValueError
            ``trains`` and ``pulses`` differ in length. (Pairs naming no frame of
            the data are left out, as in EXtra-data.)
        """
        from ..convert.frames_file import write_frames
        write_frames(self, filename, trains, pulses, overwrite=True)

    def masked_data(self, key: str | None = None, *, mask_bits: Any = None,
                    masked_value: Any = np.nan) -> Any:
        """Key data like ``det[key]`` whose reads replace bad pixels by ``masked_value``.

        Parameters
        ----------
        key : str, optional
            The key to read (default the pixel data: ``'image.data'``, JUNGFRAU
            ``'data.adc'``).
        mask_bits : int or list of int, optional
            Mask bits that mark a pixel bad (default: any non-zero mask value).
        masked_value : scalar, default NaN
            What bad pixels read as.

        Returns
        -------
        KeyData
            With ``ndarray()``, ``xarray()``, ``dask_array()`` applying the mask.

        Raises
        ------
        RuntimeError
            A module has no mask key (``image.mask``, JUNGFRAU ``data.mask``): raw data
            has none, only corrected data.
        """
        from .masked import masked_key_data
        return masked_key_data(self, key, mask_bits, masked_value)

    def module_slot(self, modno: int) -> int:
        """Position of module number ``modno`` on the full module axis of a view.

        Parameters
        ----------
        modno : int
            A module number (JUNGFRAU counts from 1).

        Returns
        -------
        int
            The slot, 0 to ``n_modules - 1``.
        """
        return modno - self.kind.modno_base
