"""Small keys (pulse and cell IDs, headers) copied out of the run, in bounded memory.

A 30,000-train AGIPD-1M run has ~30 million pulse IDs per module set (245 MB as
uint64), and a corrected run a handful of such keys. The sidecar takes them a window
of trains at a time (``train_blocks``): every source dataset of the window is read
whole (they are small) and scattered into a block of all modules, so memory depends on
the window, not on the run. Arrays without a train axis (the frame layout's
``(module, frame)``) and the compact form's inline chunks are read whole
(``whole_array``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..plan import KeyPlan, ViewPlan
from .refs import Rows, dataset_id, key_rows, row_groups
from .storage import UnsupportedKeyError

WINDOW_TRAINS = 1024  # trains per block: ~4 sequence files per module


def has_train_axis(plan: ViewPlan, kp: KeyPlan) -> bool:
    """(module, train, ...) arrays stream by trains; (module, frame, ...) do not."""
    return not (plan.frames and kp.per_frame)


def _scatter(kp: KeyPlan, out: np.ndarray, rows: Rows, fmap: Any, local: np.ndarray) -> None:
    """Read the source datasets of ``rows`` and put their rows at ``out[local]``."""
    for fi, m, sel in row_groups(rows):
        dsid = dataset_id(fmap, fi, m, kp.key)   # small: read whole, low level (fast)
        src = rows.src_row[sel]
        if not dsid.shape or int(src.max()) >= dsid.shape[0]:
            raise UnsupportedKeyError(kp.key, f"INDEX of {fmap.files[fi].path} points "
                                      "past the end of its data")
        buf = np.empty(dsid.shape, kp.dtype)
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, buf)
        out[local[sel]] = buf[src]


def whole_array(plan: ViewPlan, kp: KeyPlan) -> np.ndarray:
    """The key as one array of the view's shape, read module by module."""
    fmap = plan.frame_map(kp)
    out = np.full((math.prod(plan.lead_shape(kp)),) + kp.entry_shape, kp.fill_value, kp.dtype)
    for module in range(fmap.n_modules):   # module by module: bounded row tables
        rows, _ = key_rows(plan, kp, [module])
        _scatter(kp, out, rows, fmap, rows.view_row)
    return out.reshape(plan.shape(kp))


def _read_small(h5: h5py.File, where: str, kp: KeyPlan) -> np.ndarray:
    dsid = h5py.h5d.open(h5.id, where.encode())   # small: read whole, low level (fast)
    buf = np.empty(dsid.shape, kp.dtype)
    dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, buf)
    return buf


def _window_reads(plan: ViewPlan, kp: KeyPlan, t0: int, t1: int
                  ) -> Iterator[tuple[Any, int, int, np.ndarray, np.ndarray]]:
    """(frame map, file index, module index, destination rows in the window's block,
    source rows) of every source dataset holding rows of ``kp`` in trains t0:t1. Built
    per (module, file) from the frame map's counts: small arrays, nothing per row of the
    whole window at once."""
    fmap = plan.frame_map(kp)
    per_train = math.prod(plan.lead_shape(kp)[2:])
    n = t1 - t0
    for m, slot in enumerate(plan.slots):
        counts = fmap.counts[m, t0:t1].astype(np.int64)
        if not kp.per_frame:
            counts = np.minimum(counts, 1)
        present = np.flatnonzero(counts)
        if not len(present):
            continue
        files = fmap.file[m, t0:t1][present]
        cuts = np.flatnonzero(np.diff(files)) + 1
        for sel in np.split(np.arange(len(present)), cuts):
            tt = present[sel]
            c = counts[tt]
            within = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
            src = np.repeat(fmap.first[m, t0:t1][tt].astype(np.int64), c) + within
            dst = np.repeat((slot * n + tt) * per_train, c) + within
            yield fmap, int(files[sel[0]]), m, dst, src


def _close(f: Any) -> None:
    """Give back a run file's handle (an open HDF5 file holds ~1 MB of metadata cache;
    the handle pool keeps 64): a window's files are done with until the next window."""
    close = getattr(f, "close", None)
    if close is not None:
        close()


def train_blocks(plan: ViewPlan, kps: list[KeyPlan], window: int = WINDOW_TRAINS
                 ) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """(t0, t1, {key: its values for trains t0:t1, shape (module, t1 - t0, ...)}) for
    keys with a train axis, window by window. Within a window each source file is
    opened once, every key read from it (the keys' index groups share the files), and
    closed again. Only the window's blocks are held (drop them before the next)."""
    n_trains = len(plan.train_ids)
    for t0 in range(0, n_trains, window):
        t1 = min(t0 + window, n_trains)
        blocks: dict[str, np.ndarray] = {}
        by_file: dict[str, list[tuple[KeyPlan, Any, int, int, np.ndarray, np.ndarray]]] = {}
        for kp in kps:
            lead = plan.lead_shape(kp)
            blocks[kp.key] = np.full((lead[0] * (t1 - t0) * math.prod(lead[2:]),)
                                     + kp.entry_shape, kp.fill_value, kp.dtype)
            for fmap, fi, m, dst, src in _window_reads(plan, kp, t0, t1):
                by_file.setdefault(str(fmap.files[fi].path), []).append(
                    (kp, fmap, fi, m, dst, src))
        for path in sorted(by_file):
            work = by_file[path]
            h5 = work[0][1].files[work[0][2]].h5
            for kp, fmap, fi, m, dst, src in work:
                f = fmap.files[fi]
                buf = _read_small(h5, f.dataset_path(fmap.sources[m], kp.key), kp)
                if not buf.shape or int(src.max()) >= buf.shape[0]:
                    raise UnsupportedKeyError(kp.key, f"INDEX of {f.path} points past the "
                                              "end of its data")
                blocks[kp.key][dst] = buf[src]
            _close(work[0][1].files[work[0][2]])
        out = {kp.key: blocks.pop(kp.key).reshape(
            (plan.shape(kp)[0], t1 - t0) + plan.shape(kp)[2:]) for kp in kps}
        del by_file
        yield t0, t1, out
        del out
