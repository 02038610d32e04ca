"""The copy plan of every module at once: which source rows go to which output rows.

``FrameMap.runs`` plans one module at a time through per-frame arrays of the whole
selection (about 30 numpy calls per module, twice per read for pulse IDs and data);
for a one-frame read of 16 modules that planning costs more than decoding a module.
Here the same runs come from one vectorised pass over (module, train) blocks (all
frames) or (module, selected frame) pairs (a pulse selection), bounded in memory by
planning groups of modules.
"""

from __future__ import annotations

import numpy as np

from ..frames import FrameMap

RunTuple = tuple[int, int, int, int]    # (file, source start, output start, length)
GROUP_CELLS = 1 << 21                   # (module, frame) pairs planned at once


def _merge(mod: np.ndarray, file: np.ndarray, src: np.ndarray, dst: np.ndarray,
           length: np.ndarray, n_modules: int) -> list[list[RunTuple]]:
    """Blocks (sorted by module, then output row) merged into maximal runs per module:
    a block continues the previous one when it is of the same module and file and
    follows it in the source and in the output."""
    out: list[list[RunTuple]] = [[] for _ in range(n_modules)]
    if not len(mod):
        return out
    end_src, end_dst = src + length, dst + length
    joins = ((mod[1:] == mod[:-1]) & (file[1:] == file[:-1]) & (src[1:] == end_src[:-1])
             & (dst[1:] == end_dst[:-1]))
    starts = np.concatenate([[0], np.flatnonzero(~joins) + 1])
    ends = np.concatenate([starts[1:], [len(mod)]])
    lengths = end_dst[ends - 1] - dst[starts]
    for m, f, s, d, n in zip(mod[starts].tolist(), file[starts].tolist(),
                             src[starts].tolist(), dst[starts].tolist(), lengths.tolist(),
                             strict=True):
        out[m].append((f, s, d, n))
    return out


def _all_frames(fmap: FrameMap, rows: range, per_train: bool) -> list[list[RunTuple]]:
    counts = fmap.counts[rows.start:rows.stop].astype(np.int64)
    if per_train:
        counts = np.minimum(counts, 1)
    file = fmap.file[rows.start:rows.stop]
    mod, t = np.nonzero((counts > 0) & (file >= 0))
    offsets = fmap.offsets(per_train)
    return _merge(mod, file[mod, t], fmap.first[rows.start:rows.stop][mod, t].astype(np.int64),
                  offsets[t], counts[mod, t], len(rows))


def _some_frames(fmap: FrameMap, rows: range, picked: np.ndarray, train: np.ndarray,
                 within: np.ndarray, per_train: bool) -> list[list[RunTuple]]:
    counts = fmap.counts[rows.start:rows.stop][:, train].astype(np.int64)
    if per_train:
        counts = np.minimum(counts, 1)
    file = fmap.file[rows.start:rows.stop][:, train]
    mod, k = np.nonzero((within[None, :] < counts) & (file >= 0))
    src = fmap.first[rows.start:rows.stop][:, train][mod, k].astype(np.int64) + within[k]
    return _merge(mod, file[mod, k], src, k.astype(np.int64), np.ones(len(k), np.int64),
                  len(rows))


def plan_runs(fmap: FrameMap, selected: np.ndarray | None = None,
              per_train: bool = False) -> list[list[RunTuple]]:
    """Per module, the runs ``fmap.runs(m, selected, per_train)`` gives, as tuples.

    ``selected`` is a boolean mask over output rows (all frames of the selected trains,
    or one row per train with ``per_train``); output starts count selected rows only.
    """
    n_mod = fmap.n_modules
    if selected is None:
        per_group = max(1, GROUP_CELLS // max(len(fmap.train_ids), 1))
        out: list[list[RunTuple]] = []
        for m0 in range(0, n_mod, per_group):
            out += _all_frames(fmap, range(m0, min(n_mod, m0 + per_group)), per_train)
        return out
    offsets = fmap.offsets(per_train)
    picked = np.flatnonzero(selected)
    train = np.searchsorted(offsets, picked, side="right") - 1
    within = picked - offsets[train]
    per_group = max(1, GROUP_CELLS // max(len(picked), 1))
    out = []
    for m0 in range(0, n_mod, per_group):
        out += _some_frames(fmap, range(m0, min(n_mod, m0 + per_group)), picked, train,
                            within, per_train)
    return out
