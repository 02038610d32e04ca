"""A collection of run files: the trains and sources they hold, and train-wise access."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..docstrings import complete_docs
from ..errors import (
    DuplicateTrainError,
    MultiRunError,
    NoUsableFilesError,
    PropertyNameError,
    SourceNameError,
    TrainIDError,
    TrainIndexError,
)
from . import meta_cache, source_cache, source_selection
from .collection_docs import DOCS
from .files import RunFile
from .opening import open_files
from .selection import select_train_ids
from .source_table import SourceTable, TableCache, build_table

UNION_FILES = 64   # files whose train IDs are merged at once (bounded memory)

# multi-module detector channels, as EXtra-data lists them in detector_sources
DETECTOR_SOURCE = re.compile(r"(.+/(?:DET|CORR))/(\d+)CH")


@complete_docs(DOCS)
class DataCollection:
    """Trains and sources of one or more EuXFEL files, selectable by train and source.

    Made by :func:`RunDirectory` and :func:`H5File` (and by selecting from another
    collection), not usually constructed directly. Every selection returns a new
    collection over the same open files; this one is unchanged.
    """

    def __init__(self, files: list[RunFile], *, inc_suspect_trains: bool = True,
                 train_ids: np.ndarray | None = None,
                 selection: dict[str, frozenset[str] | None] | None = None,
                 is_single_run: bool | None = None) -> None:
        self.files = files
        self.inc_suspect_trains = inc_suspect_trains
        self._single_run = is_single_run
        self._source_files: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            for src in f.control_sources | f.instrument_sources:
                self._source_files.setdefault(src, []).append(i)
        for src, idxs in self._source_files.items():
            # raw and corrected files together: a real source beats the corrected
            # files' legacy alias of the same name (their data is another source)
            real = [i for i in idxs if src not in files[i].legacy_sources]
            if real and len(real) < len(idxs):
                self._source_files[src] = real
        if selection is None:
            selection = dict.fromkeys(self._source_files)
        self._selection = selection
        if train_ids is None:
            train_ids = self._all_train_ids()
            self._check_duplicates()
        self.train_ids_array = np.asarray(train_ids, dtype=np.uint64)
        self._tables = TableCache()
        self._datasets: dict[tuple[int, str, str], Any] = {}
        self._warned_legacy: set[str] = set()

    # -- construction helpers -------------------------------------------------

    def _usable(self, f: RunFile) -> np.ndarray:
        return np.ones(len(f.train_ids), bool) if self.inc_suspect_trains else f.validity

    def _all_train_ids(self) -> np.ndarray:
        """The sorted union of the files' usable train IDs, gathered ``UNION_FILES`` files
        at a time: one array of every file's IDs (16 modules x 30,000 trains) and its
        sorted copy cost 13 MB at once, the union itself 240 KB."""
        out = np.zeros(0, np.uint64)
        for i in range(0, len(self.files), UNION_FILES):
            part = [f.train_ids[self._usable(f)] for f in self.files[i:i + UNION_FILES]]
            out = np.union1d(out, np.concatenate(part).astype(np.uint64, copy=False))
        return out

    def _check_duplicates(self) -> None:
        for src, idxs in self._source_files.items():
            tids = np.concatenate([self.files[i].train_ids[self._usable(self.files[i])]
                                   for i in idxs])
            uniq, counts = np.unique(tids, return_counts=True)
            if (counts > 1).any():
                dup = int(uniq[np.argmax(counts > 1)])
                where = [self.files[i].path.name for i in idxs
                         if dup in self.files[i].train_ids]
                raise DuplicateTrainError(
                    f"Source {src} has train ID {dup} more than once (in {', '.join(where)}). "
                    "The train IDs are corrupt: open with inc_suspect_trains=False to drop "
                    "suspect train IDs, or exclude the bad file with include=")

    def _derive(self, *, train_ids: np.ndarray | None = None,
                selection: dict[str, frozenset[str] | None] | None = None) -> DataCollection:
        return DataCollection(self.files, inc_suspect_trains=self.inc_suspect_trains,
                              train_ids=self.train_ids_array if train_ids is None else train_ids,
                              selection=self._selection if selection is None else selection,
                              is_single_run=self._single_run)

    # -- what is in here ------------------------------------------------------

    @property
    def train_ids(self) -> list[int]:
        """The selected train IDs, ascending (``train_ids_array`` as a numpy array)."""
        return [int(t) for t in self.train_ids_array]

    @cached_property
    def control_sources(self) -> frozenset[str]:
        """The selected slow-data sources (``CONTROL`` section of the files)."""
        return frozenset(s for s in self._selection
                         if any(s in self.files[i].control_sources for i in self._source_files[s]))

    @cached_property
    def instrument_sources(self) -> frozenset[str]:
        """The selected fast-data sources (``INSTRUMENT`` section: detectors, digitizers)."""
        return frozenset(s for s in self._selection
                         if any(s in self.files[i].instrument_sources
                                for i in self._source_files[s]))

    @property
    def all_sources(self) -> frozenset[str]:
        """Every selected source, control and instrument."""
        return frozenset(self._selection)

    @property
    def legacy_sources(self) -> dict[str, str]:
        """{legacy name: real name} of the selected legacy (soft-linked) sources."""
        return dict(self._legacy)

    @cached_property
    def _legacy(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for src in self._selection:
            for i in self._source_files[src]:
                if src in self.files[i].legacy_sources:
                    out[src] = self.files[i].legacy_sources[src]
        return out

    @property
    def is_single_run(self) -> bool:
        """True when opened as one run (RunDirectory, H5File), else judged by runNumber."""
        if self._single_run is not None:
            return self._single_run
        runs = {f.metadata().get("runNumber") for f in self.files}
        return len(runs) <= 1

    def _check_source(self, source: str) -> None:
        if source not in self._selection:
            near = difflib.get_close_matches(source, list(self._selection), n=5, cutoff=0.6)
            hint = f" Similar: {', '.join(near)}." if near else ""
            raise SourceNameError(f"Source {source!r} is not in this data.{hint} "
                                  "See .all_sources for what there is.")
        if source in self._legacy and source not in self._warned_legacy:
            self._warned_legacy.add(source)     # once per collection, not per train read
            warnings.warn(f"{source} is a legacy name for {self._legacy[source]}; "
                          "use the new name", DeprecationWarning, stacklevel=3)

    def files_for_source(self, source: str) -> list[RunFile]:
        """The files holding data of one source."""
        self._check_source(source)
        return [self.files[i] for i in self._source_files[source]]

    def keys_for_source(self, source: str) -> set[str]:
        """The selected keys of one source."""
        self._check_source(source)
        keys = set(self.files[self._source_files[source][0]].source_keys(source))
        chosen = self._selection[source]
        return keys if chosen is None else keys & chosen

    def _check_key(self, source: str, key: str) -> None:
        if key not in self.keys_for_source(source):
            raise PropertyNameError(f"Source {source} has no key {key!r}. "
                                    f"Its keys: {', '.join(sorted(self.keys_for_source(source)))}")

    def is_control(self, source: str) -> bool:
        """Whether ``source`` is a selected control (slow-data) source."""
        return source in self.control_sources

    def run_metadata(self) -> dict[str, object]:
        """The run's METADATA: proposal, run number, creation date, format version..."""
        if not self.is_single_run:
            raise MultiRunError("run_metadata() needs data from a single run; this data "
                                "combines several runs")
        return self.files[0].metadata()

    # -- per-source index -----------------------------------------------------

    def source_table(self, source: str, group: str = "") -> SourceTable:
        """Index of (source, group) over the selected trains, across files."""
        self._check_source(source)
        return self._tables.get((source, group), lambda: build_table(
            [self.files[i] for i in self._source_files[source]],
            self._source_files[source], source, group, self._usable, self._selected))

    def prefetch_sources(self, sources: Iterable[str]) -> None:
        """Read the keys and every index group of some sources, file by file.

        One open per file, through the source cache (``run.source_cache``); the frame
        maps of these sources then need no file access for their index. Problems are not
        raised here but, as before, when the damaged index is used.

        Parameters
        ----------
        sources : iterable of str
            Source names (instrument sources; others are ignored).
        """
        wanted = set(sources)
        files = sorted({i for s in wanted for i in self._source_files.get(s, [])})
        source_cache.prefetch([self.files[i] for i in files], wanted)

    @cached_property
    def _sorted_ids(self) -> np.ndarray:
        return np.sort(self.train_ids_array)

    def _selected(self, tids: np.ndarray) -> np.ndarray:
        """Which of `tids` are selected trains (np.isin, without sorting 30,000 IDs per
        file)."""
        ids = self._sorted_ids
        pos = np.searchsorted(ids, tids)
        ok = pos < len(ids)
        ok[ok] = ids[pos[ok]] == tids[ok]
        return ok

    def key_table(self, source: str, key: str) -> SourceTable:
        """:meth:`source_table` of the index group a key belongs to."""
        self._check_key(source, key)
        f = self.files_for_source(source)[0]
        return self.source_table(source, f.key_group(source, key))

    def index_groups(self, source: str) -> list[str]:
        """The INDEX groups of one source (``['header', 'image', ...]``; ``['']`` for control)."""
        return self.files_for_source(source)[0].index_groups(source)

    def key_info(self, source: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """(entry shape, dtype) of a key, from its first file."""
        self._check_key(source, key)
        shape, dtype = self.files_for_source(source)[0].source_keys(source)[key]
        return tuple(shape[1:]), dtype

    # -- selections -----------------------------------------------------------

    def select_trains(self, train_range: Any) -> DataCollection:
        """Keep some of the selected trains."""
        return self._derive(train_ids=select_train_ids(self.train_ids_array, train_range))

    def select(self, seln_or_source_glob: Any, key_glob: str = "*", require_all: bool = False,
               require_any: bool = False, *, warn_drop_trains_frac: float = 1.0
               ) -> DataCollection:
        """Keep some sources and keys, within what is already selected."""
        seln = seln_or_source_glob
        if isinstance(seln, str):
            seln = [(seln, key_glob)]
        chosen = source_selection.expand(self, seln)
        train_ids = None
        if require_all or require_any:
            train_ids = source_selection.trains_with_data(
                self, chosen, require_all=require_all,
                warn_drop_trains_frac=warn_drop_trains_frac)
        return self._derive(selection=chosen, train_ids=train_ids)

    def deselect(self, seln_or_source_glob: Any, key_glob: str = "*") -> DataCollection:
        """Everything selected except some sources or keys."""
        seln = seln_or_source_glob
        if isinstance(seln, str):
            seln = [(seln, key_glob)]
        return self._derive(selection=source_selection.without(
            self, source_selection.expand(self, seln)))

    def union(self, *others: DataCollection) -> DataCollection:
        """Sources and trains of this collection and others together (e.g. raw and
        corrected files of one run). Also ``a | b``.
        """
        files: list[RunFile] = []
        seen: dict[str, RunFile] = {}
        for dc in (self, *others):
            for f in dc.files:
                key = os.path.realpath(f.path)
                if key not in seen:
                    seen[key] = f
                    files.append(f)
        selection = source_selection.merge_selections(*(dc._selection for dc in (self, *others)))
        train_ids = np.unique(np.concatenate([dc.train_ids_array for dc in (self, *others)]))
        merged = DataCollection(files, inc_suspect_trains=self.inc_suspect_trains,
                                train_ids=train_ids, selection=selection)
        merged._check_duplicates()
        return merged

    def __or__(self, other: DataCollection) -> DataCollection:
        return self.union(other)

    def __ior__(self, other: DataCollection) -> DataCollection:
        return self.union(other)

    # -- run[...] access, as in EXtra-data ------------------------------------

    def __getitem__(self, item: Any) -> Any:
        """``run[source]``, ``run[source, key]`` or ``run[train selection]``."""
        from .sourcedata import SourceData, is_train_selection
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(e, str) for e in item):
            source = SourceData(self, item[0])
            return source[item[1]]
        if isinstance(item, str):
            return SourceData(self, item)
        if is_train_selection(item):
            return self.select_trains(item)
        raise TypeError("Use data[source], data[source, key] or data[train selection]")

    def __contains__(self, item: object) -> bool:
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(e, str) for e in item):
            return item[0] in self._selection and item[1] in self[item[0]]
        return isinstance(item, str) and item in self._selection

    __iter__ = None  # like EXtra-data: iterate with .trains()

    def _ipython_key_completions_(self) -> list[str]:
        return sorted(self._selection)

    @property
    def detector_sources(self) -> set[str]:
        """Instrument sources named like multi-module detector channels (``.../DET/0CH``),
        legacy aliases left out."""
        return {s for s in self.instrument_sources
                if DETECTOR_SOURCE.match(s) and s not in self._legacy}

    def get_array(self, source: str, key: str, extra_dims: list[str] | None = None,
                  roi: Any = (), name: str | None = None) -> Any:
        """One key as a labelled array: ``self[source, key].xarray(...)``."""
        return self[source, key].xarray(extra_dims=extra_dims, roi=roi, name=name)

    def get_dask_array(self, source: str, key: str, labelled: bool = False) -> Any:
        """One key as a lazy dask array: ``self[source, key].dask_array(...)``."""
        return self[source, key].dask_array(labelled=labelled)

    def get_series(self, source: str, key: str) -> Any:
        """One key with one value per entry as a pandas Series indexed by train ID."""
        return self[source, key].series()

    def train_timestamps(self, labelled: bool = False, *, pydatetime: bool = False,
                         euxfel_local_time: bool = False) -> Any:
        """Approximate time of every selected train, from ``INDEX/timestamp`` (UTC)."""
        from .timestamps import train_timestamps
        return train_timestamps(self, labelled=labelled, pydatetime=pydatetime,
                                euxfel_local_time=euxfel_local_time)

    def info(self, details_for_sources: Iterable[str] = (), *, file: Any = None) -> None:
        """Print a summary: trains, detectors, instrument and control sources."""
        import sys

        from .summary import summary_lines
        print("\n".join(summary_lines(self, details_for_sources)),
              file=file if file is not None else sys.stdout)

    def close(self) -> None:
        """Close the HDF5 files this collection opened."""
        self._datasets.clear()
        for f in self.files:
            f.close()

    def __enter__(self) -> DataCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- train-wise reading ---------------------------------------------------

    def train_from_id(self, train_id: int, devices: Any = None, *, keep_dims: bool = False,
                      flat_keys: bool = False) -> tuple[int, dict[Any, Any]]:
        """All selected data of one train."""
        if devices is not None:
            return self.select(devices).train_from_id(train_id, keep_dims=keep_dims,
                                                      flat_keys=flat_keys)
        tid = int(train_id)
        pos = np.searchsorted(self.train_ids_array, tid)
        if pos >= len(self.train_ids_array) or int(self.train_ids_array[pos]) != tid:
            raise TrainIDError(f"Train ID {tid} is not in this data "
                               f"({len(self.train_ids_array)} trains"
                               + (f", {self.train_ids[0]}-{self.train_ids[-1]})"
                                  if len(self.train_ids_array) else ")"))
        return tid, self._read_train(tid, keep_dims=keep_dims, flat_keys=flat_keys)

    def train_from_index(self, index: int, devices: Any = None,
                         **kwargs: Any) -> tuple[int, dict[Any, Any]]:
        """All selected data of the train at a position, like :meth:`train_from_id`."""
        if devices is not None:
            return self.select(devices).train_from_index(index, **kwargs)
        try:
            tid = self.train_ids_array[index]
        except IndexError:
            raise TrainIndexError(f"Train index {index} is out of range for "
                                  f"{len(self.train_ids_array)} trains") from None
        return self.train_from_id(int(tid), **kwargs)

    def trains(self, devices: Any = None, train_range: Any = None, *,
               require_all: bool = False, keep_dims: bool = False,
               flat_keys: bool = False) -> Iterator[tuple[int, dict[Any, Any]]]:
        """Iterate over the selected trains, reading one train at a time."""
        if devices is not None or train_range is not None:
            dc = self if devices is None else self.select(devices)
            dc = dc if train_range is None else dc.select_trains(train_range)
            yield from dc.trains(require_all=require_all, keep_dims=keep_dims,
                                 flat_keys=flat_keys)
            return
        keep = self._complete_trains() if require_all else None
        for i, tid in enumerate(self.train_ids):
            if keep is not None and not keep[i]:
                continue
            yield tid, self._read_train(tid, keep_dims=keep_dims, flat_keys=flat_keys)

    def _locate(self, source: str, group: str, tid: int) -> tuple[RunFile, int, int] | None:
        table = self.source_table(source, group)
        pos = np.searchsorted(table.train_ids, tid)
        if pos >= len(table.train_ids) or int(table.train_ids[pos]) != tid:
            return None
        return self.files[int(table.file[pos])], int(table.first[pos]), int(table.count[pos])

    def _redundant_legacy(self, source: str) -> bool:
        """A legacy alias whose real source is also selected (its data would come twice)."""
        target = self._legacy.get(source)
        return target is not None and target in self._selection

    @cached_property
    def _read_plan(self) -> list[tuple[str, bool, list[tuple[str, str]]]]:
        """[(source, is control, [(key, index group)])] of what a train dict holds."""
        plan = []
        for src in sorted(self._selection):
            if self._redundant_legacy(src):
                continue
            f0 = self.files_for_source(src)[0]
            keys = [(k, f0.key_group(src, k)) for k in sorted(self.keys_for_source(src))]
            plan.append((src, self.is_control(src), keys))
        return plan

    def _complete_trains(self) -> np.ndarray:
        """For each selected train: does every selected source have data in it?"""
        ok = np.ones(len(self.train_ids_array), dtype=bool)
        for src, _, keys in self._read_plan:
            for group in {g for _, g in keys}:
                ok &= self.source_table(src, group).counts_for(self.train_ids_array) > 0
        return ok

    def _dataset(self, f: RunFile, source: str, key: str) -> Any:
        """The h5py dataset of (source, key) in one file, looked up once per open handle
        (the handle pool may have closed and reopened the file since)."""
        cache_key = (id(f), source, key)
        h5 = f.h5
        hit = self._datasets.get(cache_key)
        if hit is not None and hit[0] is h5:
            return hit[1]
        ds = h5[f.dataset_path(source, key)]
        self._datasets[cache_key] = (h5, ds)
        return ds

    def _read_train(self, tid: int, *, keep_dims: bool, flat_keys: bool) -> dict[Any, Any]:
        """{source: {'metadata': {...}, key: value}}; every selected source gets an entry
        (only metadata where it has no data for this train). A legacy alias is left out
        when its real source is selected too, so no data is read twice."""
        out: dict[Any, Any] = {}
        for src, control, keys in self._read_plan:
            src_data: dict[str, Any] = {"metadata": {"source": src, "timestamp.tid": tid}}
            located: dict[str, tuple[RunFile, int, int] | None] = {}
            for key, group in keys:
                if group not in located:
                    located[group] = self._locate(src, group, tid)
                loc = located[group]
                if loc is None or loc[2] == 0:
                    continue
                f, first, count = loc
                ds = self._dataset(f, src, key)
                if control or (count == 1 and not keep_dims):
                    src_data[key] = ds[first]
                else:
                    src_data[key] = ds[first:first + count]
            if flat_keys:
                out.update({(src, k): v for k, v in src_data.items()})
            else:
                out[src] = src_data
        return out

    def __repr__(self) -> str:
        return (f"<detstack.DataCollection: {len(self.all_sources)} sources, "
                f"{len(self.train_ids_array)} trains, {len(self.files)} files>")


def H5File(path: str | os.PathLike[str], *, inc_suspect_trains: bool = True) -> DataCollection:
    """Open one EuXFEL HDF5 file (one module's sequence file, a control file...).

    Only INDEX and METADATA are read now; data is read when asked for.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file.
    inc_suspect_trains : bool, default True
        Keep train IDs the file flags as suspect (``False`` drops them).

    Returns
    -------
    DataCollection
        Its trains and sources; detector classes accept it.

    Raises
    ------
    FileFormatError
        The file is missing, not HDF5, cut short, or not in the EuXFEL layout
        (the message says which and what to do).
    DuplicateTrainError
        A source holds the same train ID twice.
    """
    return DataCollection([RunFile(path)], inc_suspect_trains=inc_suspect_trains,
                          is_single_run=True)


def RunDirectory(path: str | os.PathLike[str], include: str = "*", *,
                 inc_suspect_trains: bool = True, cache: bool | None = None) -> DataCollection:
    """Open a run folder: every ``*.h5`` file in it, as one collection of trains and sources.

    Only INDEX and METADATA are read now (never pixel data), and nothing is written
    into the folder. Files are opened lazily through a bounded pool of HDF5 handles,
    so runs with more files than ``ulimit -n`` open completely; what opening reads is
    kept in a metadata cache outside the folder (``run.meta_cache``). Files that
    cannot be read are left out with an ``UnusableFileWarning`` naming them; views
    written into the folder (detstack views, virtual CXI files, also EXtra-data's)
    are left out quietly.

    Parameters
    ----------
    path : str or path-like
        The run folder, e.g. ``/gpfs/exfel/exp/SPB/202401/p700000/raw/r0238``.
    include : str, default '*'
        Glob of the file names to open, e.g. ``'*AGIPD0[0-3]*'``.
    inc_suspect_trains : bool, default True
        Keep train IDs the files flag as suspect (``False`` drops them).
    cache : bool or None, default None
        Use the metadata cache (None: yes, unless ``DETSTACK_NO_CACHE=1``).

    Returns
    -------
    DataCollection
        Trains and sources of the run; detector classes accept it.

    Raises
    ------
    NoUsableFilesError
        ``path`` is not a folder, holds no matching ``.h5`` file, or none of them
        can be read (the message lists why).
    DuplicateTrainError
        A source holds the same train ID twice (corrupt train IDs): open with
        ``inc_suspect_trains=False`` or leave the file out with ``include``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise NoUsableFilesError(f"{folder} is not a folder: RunDirectory needs the run "
                                 "folder (use H5File for a single file)")
    names = sorted(n for n in os.listdir(folder)
                   if n.endswith(".h5") and n.lower() != "overview.h5")
    names = fnmatch.filter(names, include)
    if not names:
        raise NoUsableFilesError(f"No .h5 files matching {include!r} in {folder}")
    files, problems = open_files(folder, names, meta_cache.cache_enabled(cache))
    if not files:
        raise NoUsableFilesError(f"None of the {len(names)} files in {folder} is usable:\n  "
                                 + "\n  ".join(problems))
    return DataCollection(files, inc_suspect_trains=inc_suspect_trains, is_single_run=True)
