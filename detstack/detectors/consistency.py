"""Do the modules of one detector agree? Key layouts, frame counts, pulse IDs.

Every reader copies rows of all modules into one array shaped by the first
module's key; a module (or one sequence file) storing that key with another
entry shape or dtype would be read scrambled, truncated or clipped. Frame
counts and pulse IDs of one train must agree too, or frames are mislabelled.
Each check names the file, source, dataset and train at fault.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..errors import InconsistentModulesError

Layout = tuple[tuple[int, ...], str]   # (entry shape, dtype string)
LEAVE_OUT = ("Leave that module out (modules=[...]) or that key out (keys=[...]); other "
             "keys stay readable")


def _describe(layout: Layout | None) -> str:
    if layout is None:
        return "no such key"
    entry, dtype = layout
    return f"entries {'x'.join(map(str, entry)) or 'scalar'} {dtype}"


def key_layout_problems(data: Any, sources: list[str], key: str) -> list[str]:
    """One message per (file, source) whose ``key`` differs from the majority layout."""
    found: list[tuple[Any, str, Layout | None]] = []
    for src in sources:
        for f in data.files_for_source(src):
            info = f.source_keys(src).get(key)
            layout = None if info is None else (tuple(info[0][1:]), np.dtype(info[1]).str)
            found.append((f, src, layout))
    tally = Counter(lay for _, _, lay in found if lay is not None)
    if len(tally) + any(lay is None for _, _, lay in found) <= 1:
        return []
    usual = tally.most_common(1)[0][0]
    out = []
    for f, src, layout in found:
        if layout != usual:
            try:
                where = f.dataset_path(src, key)
            except (KeyError, AttributeError):
                where = key
            out.append(f"{f.path}: source {src} key {key!r} ({where}) has {_describe(layout)}, "
                       f"but the other modules have {_describe(usual)}")
    return out


def check_key(data: Any, sources: list[str], key: str) -> None:
    """Refuse ``key`` if its modules disagree on entry shape or dtype."""
    problems = key_layout_problems(data, sources, key)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InconsistentModulesError(f"{problems[0]}{more}; reading it would scramble or "
                                       f"clip frames. {LEAVE_OUT}")


def first_odd(values: np.ndarray, have: np.ndarray) -> tuple[int, int, int] | None:
    """The first column (axis 1) where the modules (axis 0) that ``have`` a value
    disagree: (column, the value most of them hold, the first module holding another)."""
    v = np.asarray(values, np.int64)
    lo = np.where(have, v, np.iinfo(np.int64).max).min(axis=0)
    hi = np.where(have, v, -1).max(axis=0)
    bad = np.flatnonzero(have.any(axis=0) & (lo != hi))
    if not len(bad):
        return None
    c = int(bad[0])
    common, n = np.unique(v[have[:, c], c], return_counts=True)
    usual = int(common[np.argmax(n)])
    return c, usual, int(np.flatnonzero(have[:, c] & (v[:, c] != usual))[0])


def count_problem(fmap: Any, group: str) -> str | None:
    """The first train whose modules store different row counts, naming the odd module."""
    odd = first_odd(fmap.counts, fmap.present)
    if odd is None:
        return None
    t, usual, m = odd
    f = fmap.files[int(fmap.file[m, t])]
    src = fmap.sources[m]
    return (f"train {int(fmap.train_ids[t])}: {f.path}: module {int(fmap.modules[m])} "
            f"({src}) stores {int(fmap.counts[m, t])} rows in INDEX/{src}/{group}/count, "
            f"the other modules {usual}")


def check_counts(fmap: Any, group: str) -> None:
    problem = count_problem(fmap, group)
    if problem is not None:
        raise InconsistentModulesError(f"Inconsistent frame counts for {problem}; frames of "
                                       "that train cannot be aligned "
                                       f"across modules. {LEAVE_OUT.split(';')[0]}")


def ids_problem(fmap: Any, key: str, field: str, ids: np.ndarray,
                missing: np.ndarray) -> str | None:
    """The first frame whose modules disagree on ``field`` (ids: modules x frames)."""
    odd = first_odd(ids, ~missing)
    if odd is None:
        return None
    frame, usual, m = odd
    offsets = fmap.offsets()
    t = int(np.searchsorted(offsets, frame, side="right") - 1)
    f = fmap.files[int(fmap.file[m, t])]
    src = fmap.sources[m]
    try:
        dset = f.dataset_path(src, key)
    except (KeyError, AttributeError):
        dset = key
    return (f"Inconsistent {field} for different modules in train {int(fmap.train_ids[t])}: "
            f"{f.path}: module {int(fmap.modules[m])} ({src}) has {int(ids[m, frame])} at "
            f"frame {frame - int(offsets[t])} ({dset}), the other modules {usual}")
