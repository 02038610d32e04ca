"""Selected detector frames as a new EuXFEL-format HDF5 file (``det.write_frames``).

The file holds the detector's module sources only, for the detector's trains: every
per-train key (header, trailer, detector...) for every train, and of the per-frame keys
(``image.*``) only the frames named by (train ID, pulse ID) pairs, in file order.
Requested frames that do not exist are ignored, as in EXtra-data. Both detstack and
EXtra-data open the result like any run file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..detectors.reading import _train_of, read_rows
from ..frames import FrameMap
from ..run.files import RunFile
from ..store.h5_decode import read_checked
from .atomic import atomic_h5

log = logging.getLogger(__name__)

PIECE_BYTES = 64 << 20   # rows are copied in pieces of at most this size


def _pairs(trains: Any, pulses: Any) -> np.ndarray:
    trains, pulses = np.asarray(trains), np.asarray(pulses)
    if trains.ndim != 1 or pulses.ndim != 1:
        raise ValueError("trains & pulses must be 1D arrays")
    if trains.shape != pulses.shape:
        raise ValueError(f"Train & pulse arrays don't match ({trains.shape} != {pulses.shape})")
    out = np.zeros(trains.shape, dtype=[("trainId", np.uint64), ("pulseId", np.uint64)])
    out["trainId"] = trains
    out["pulseId"] = pulses
    return out


def _format_version(det: Any) -> str:
    version = str(getattr(det.data.files[0], "format_version", "1.0"))
    return "0.5" if version == "0.5" else "1.0"


def _index_datasets(h5: h5py.File, det: Any, fmt: str) -> None:
    """INDEX/trainId, INDEX/timestamp (when the sources have it) and INDEX/flag."""
    tids = np.asarray(det.train_ids, dtype=np.uint64)
    h5.create_dataset("INDEX/trainId", data=tids, dtype=np.uint64)
    stamps = np.zeros(len(tids), np.uint64)
    flag = np.zeros(len(tids), np.int32)
    have_stamps = False
    for f in det.data.files:
        ftids = np.asarray(f.train_ids, dtype=np.uint64)
        pos = np.searchsorted(tids, ftids)
        ok = pos < len(tids)
        ok[ok] = tids[pos[ok]] == ftids[ok]
        flag[pos[ok & np.asarray(f.validity, bool)]] = 1
        if isinstance(f, RunFile) and "INDEX/timestamp" in f.h5:
            raw = np.asarray(f.h5["INDEX/trainId"][:], dtype=np.uint64)
            values = np.asarray(f.h5["INDEX/timestamp"][:], dtype=np.uint64)
            values = values[np.flatnonzero(raw != 0)]  # aligned with f.train_ids
            if len(values) == len(ftids):
                stamps[pos[ok]] = values[ok]
                have_stamps = True
    if have_stamps:
        h5.create_dataset("INDEX/timestamp", data=stamps)
    if fmt != "0.5":
        h5.create_dataset("INDEX/flag", data=flag)


def _metadata(h5: h5py.File, det: Any, fmt: str, data_sources: list[str]) -> None:
    grp = h5.create_group("METADATA")
    str_t = h5py.string_dtype()
    sources = sorted(data_sources)
    lists = {"dataSourceId": sources, "root": [s.split("/", 1)[0] for s in sources],
             "deviceId": [s.split("/", 1)[1] for s in sources]}
    target = grp.create_group("dataSources") if fmt != "0.5" else grp
    for name, values in lists.items():
        target.create_dataset(name, data=np.array(values, dtype=object), dtype=str_t,
                              maxshape=(None,))
    if fmt == "0.5":
        return
    try:
        meta = dict(det.data.run_metadata())
    except ValueError:
        meta = {}
    meta["dataFormatVersion"] = "1.0"
    for name, value in meta.items():
        if isinstance(value, str):
            grp.create_dataset(name, data=np.array([value], dtype=object), dtype=str_t)
        elif isinstance(value, (int, float, np.generic)):
            grp.create_dataset(name, data=np.asarray([value]))


def _create_like(h5: h5py.File, path: str, src: Any, n_rows: int) -> h5py.Dataset:
    """An output dataset with the source's dtype, chunking and compression."""
    kwargs: dict[str, Any] = {}
    if isinstance(src, h5py.Dataset):
        if src.chunks is not None:
            kwargs["chunks"] = src.chunks
        if src.compression is not None:
            kwargs.update(compression=src.compression, compression_opts=src.compression_opts)
        kwargs["shuffle"] = src.shuffle
    if "chunks" not in kwargs:
        kwargs["chunks"] = True
    entry = tuple(src.shape[1:])
    return h5.create_dataset(path, shape=(n_rows,) + entry, maxshape=(None,) + entry,
                             dtype=src.dtype, **kwargs)


def _copy_rows(fmap: FrameMap, m: int, key: str, dst: h5py.Dataset,
               selected: np.ndarray) -> None:
    """The ``selected`` rows (over the map's output rows) of module ``m`` into ``dst``."""
    src_name = fmap.sources[m]
    row_bytes = max(1, dst.dtype.itemsize * int(np.prod(dst.shape[1:], dtype=np.int64)))
    step = max(1, PIECE_BYTES // row_bytes)
    for run in fmap.runs(m, selected):
        f = fmap.files[run.file]
        src = f.h5[f.dataset_path(src_name, key)]
        describe = _train_of(fmap, m, run.file)
        for off in range(0, run.length, step):
            n = min(step, run.length - off)
            rows = read_checked(src, np.s_[run.src_start + off:run.src_start + off + n],
                                lambda p, d=describe: d(p[0]))
            dst[run.dst_start + off:run.dst_start + off + n] = rows


def _selected_frames(det: Any, wanted: np.ndarray) -> np.ndarray:
    """(modules, frames) True where a module has the frame and its (train, pulse) is wanted."""
    fmap = det.frame_map
    key = det.kind.pulse_key
    entry, _ = det.data.key_info(next(iter(det.source_to_modno)), key)
    pids = np.full((fmap.n_modules, fmap.n_frames()), -1, np.int64)
    read_rows(fmap, key, pids, list(range(fmap.n_modules)),
              src_index=(0,) if tuple(entry)[:1] == (1,) else ())
    tids = fmap.train_ids_perframe()
    out = np.zeros(pids.shape, bool)
    for m in range(fmap.n_modules):
        have = pids[m] >= 0
        pairs = np.zeros(int(have.sum()), dtype=wanted.dtype)
        pairs["trainId"] = tids[have]
        pairs["pulseId"] = pids[m][have]
        out[m, have] = np.isin(pairs, wanted)
    return out


def _output_bytes(det: Any, selected: np.ndarray) -> int:
    """What the file will take at most (uncompressed rows plus room for metadata), to be
    reserved on disk before writing."""
    total = 1 << 20
    image = det.kind.index_group
    for m, src in enumerate(det.source_to_modno):
        f0 = det.data.files_for_source(src)[0]
        for key in det.data.keys_for_source(src):
            entry, dtype = det.data.key_info(src, key)
            group = f0.key_group(src, key)
            rows = int(selected[m].sum()) if group == image else \
                int(det.group_map(group).counts[m].sum())
            total += rows * int(np.prod(entry, dtype=np.int64)) * np.dtype(dtype).itemsize
    return total + total // 50


def write_frames(det: Any, filename: str | os.PathLike[str], trains: Any, pulses: Any, *,
                 overwrite: bool = False) -> Path:
    """Write the frames named by (``trains[i]``, ``pulses[i]``) to a new EuXFEL file.

    Parameters
    ----------
    det : detector
        The detector whose frames to copy.
    filename : str or path-like
        The file to write; ``detstack.H5File`` reads it like a run.
    trains : array of int
        Train ID of each frame.
    pulses : array of int
        Pulse ID (as the detector recorded it) of each frame, same length.
    overwrite : bool, default False
        Replace an existing ``filename``; otherwise it is refused.

    Returns
    -------
    pathlib.Path
        ``filename``.

    Raises
    ------
    ValueError
        ``trains`` and ``pulses`` differ in length.
    TypeError
        The detector stores one entry per train (JUNGFRAU), not one row per frame.
    FileExistsError
        ``filename`` exists and ``overwrite`` is False.
    """
    wanted = _pairs(trains, pulses)
    if not det.kind.xtdf:
        raise TypeError(f"write_frames needs a detector storing one row per frame (AGIPD, "
                        f"DSSC, LPD); {type(det).__name__} stores one entry per train")
    fmt = _format_version(det)
    selected = _selected_frames(det, wanted)
    image = det.kind.index_group
    fmap_main = det.frame_map
    frame_train = np.repeat(np.arange(len(fmap_main.train_ids)),
                            fmap_main.train_counts().astype(np.int64))
    data_sources: list[str] = []
    with atomic_h5(filename, overwrite, reserve=_output_bytes(det, selected)) as h5:
        h5.attrs["writer"] = f"detstack {__version__}"
        _index_datasets(h5, det, fmt)
        h5.flush()
        for m, src in enumerate(det.source_to_modno):
            keys = sorted(det.data.keys_for_source(src))
            f0 = det.data.files_for_source(src)[0]
            by_group: dict[str, list[str]] = {}
            for key in keys:
                by_group.setdefault(f0.key_group(src, key), []).append(key)
            for group, gkeys in sorted(by_group.items()):
                fmap = det.group_map(group)
                if group == image:
                    sel = selected[m]
                    counts = np.bincount(frame_train[sel], minlength=len(fmap.train_ids))
                else:  # every row the module has, packed (a module may miss trains)
                    sel = fmap.frame_sources(m)[0] >= 0
                    counts = fmap.counts[m].astype(np.int64)
                for key in gkeys:
                    src_ds = f0.h5[f0.dataset_path(src, key)]
                    path = f"INSTRUMENT/{src}/{key.replace('.', '/')}"
                    dst = _create_like(h5, path, src_ds, int(counts.sum()))
                    _copy_rows(fmap, m, key, dst, sel)
                    dst.flush()     # a full disk raises here, not when h5py frees dst
                first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.uint64)
                h5.create_dataset(f"INDEX/{src}/{group}/first", data=first, dtype=np.uint64)
                h5.create_dataset(f"INDEX/{src}/{group}/count", data=counts, dtype=np.uint64)
                data_sources.append(f"INSTRUMENT/{src}/{group}")
            h5.flush()
        _metadata(h5, det, fmt, data_sources)
    log.info("Wrote %d frames of %d modules to %s", int(selected.sum()), len(det.modules),
             filename)
    return Path(filename)
