"""Source and key selections (``select``, ``deselect``), with EXtra-data's semantics.

A selection maps each kept source to its keys (``None``: every key). Selecting
narrows what is already selected, never widens it: ``'*'`` and ``{src: set()}``
keep a source's current keys, and a source left with none of the asked-for keys
is dropped.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NoMatchError, PropertyNameError, SourceNameError

if TYPE_CHECKING:
    from .collection import DataCollection

Selection = dict[str, frozenset[str] | None]
_WILDCARD = re.compile(r"[*?\[]")


def _narrow(current: frozenset[str] | None, keys: frozenset[str] | None
            ) -> frozenset[str] | None:
    """Keys asked for within the keys already selected (None: all)."""
    if keys is None:
        return current
    return keys if current is None else current & keys


def _merge(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return None if a is None or b is None else a | b


def merge_selections(*selections: Selection) -> Selection:
    """Union of several selections, source by source."""
    out: Selection = {}
    for sel in selections:
        for src, keys in sel.items():
            out[src] = _merge(out[src], keys) if src in out else keys
    return out


def _glob(dc: DataCollection, src_glob: str, key_glob: str) -> Selection:
    src_re = re.compile(fnmatch.translate(src_glob))
    matched: Selection = {}
    for src in sorted(dc.all_sources):
        if not src_re.match(src):
            continue
        current = dc._selection[src]
        if key_glob == "*":
            matched[src] = current
            continue
        pattern = key_glob
        if dc.is_control(src) and not key_glob.endswith((".value", "*")):
            pattern = key_glob + ".value"      # control keys are named with .value
        available = dc.keys_for_source(src)
        if _WILDCARD.search(pattern) is None:
            keys = {pattern} & available
        else:
            keys = set(fnmatch.filter(available, pattern))
        if keys:
            matched[src] = frozenset(keys)
    if not matched:
        raise NoMatchError(f"No source and key match ({src_glob!r}, {key_glob!r}); "
                           "see .all_sources and .keys_for_source(source)")
    return matched


def expand(dc: DataCollection, seln: Any) -> Selection:
    """Any accepted selection form, as {source: keys or None} within ``dc``."""
    from .collection import DataCollection
    from .keydata import KeyData
    from .sourcedata import SourceData
    if isinstance(seln, str):
        return _glob(dc, seln, "*")
    if isinstance(seln, DataCollection):
        return expand(dc, {s: (None if k is None else set(k))
                           for s, k in seln._selection.items()})
    if isinstance(seln, SourceData):
        return expand(dc, {seln.source: set(seln.keys())})
    if isinstance(seln, KeyData):
        return expand(dc, {seln.source: {seln.key}})
    if isinstance(seln, dict):
        out: Selection = {}
        for src, keys in seln.items():
            if src not in dc.all_sources:
                raise SourceNameError(f"Source {src!r} is not in this data; see .all_sources")
            if keys is not None and not isinstance(keys, (set, frozenset, dict)):
                raise TypeError(f"Keys of {src} in a selection dict must be a set or None, "
                                f"not {type(keys).__name__}")
            asked = frozenset(keys) if keys else None
            if asked is not None:
                missing = asked - dc.keys_for_source(src)
                if missing:
                    raise PropertyNameError(f"Source {src} has no selected key "
                                            f"{', '.join(sorted(missing))}")
            out[src] = _narrow(dc._selection[src], asked)
        return out
    if isinstance(seln, Iterable):
        parts = []
        for item in seln:
            if isinstance(item, str):
                parts.append(_glob(dc, item, "*"))
            else:
                src_glob, key_glob = item
                parts.append(_glob(dc, src_glob, key_glob))
        return merge_selections(*parts)
    raise TypeError(f"Cannot select with {type(seln).__name__}: use glob patterns, a list of "
                    "(source glob, key glob), a {source: keys} dict or a collection")


def without(dc: DataCollection, deselection: Selection) -> Selection:
    """The current selection minus ``deselection`` (None there: the whole source)."""
    out: Selection = {}
    for src, keys in dc._selection.items():
        if src not in deselection:
            out[src] = keys
            continue
        drop = deselection[src]
        if drop is None:
            continue
        remaining = dc.keys_for_source(src) - drop
        if remaining:
            out[src] = frozenset(remaining)
    return out


def trains_with_data(dc: DataCollection, selection: Selection, *, require_all: bool,
                     warn_drop_trains_frac: float = 1.0) -> np.ndarray:
    """Selected trains where all (``require_all``) or any selected source has data.

    Each index group of a source's selected keys counts separately, as in the files.
    """
    tids = dc.train_ids_array
    keep = np.ones(len(tids), bool) if require_all else np.zeros(len(tids), bool)
    for src, keys in sorted(selection.items()):
        groups = {""} if dc.is_control(src) else (
            set(dc.index_groups(src)) if keys is None
            else {dc.files_for_source(src)[0].key_group(src, k) for k in keys})
        before = int(keep.sum())
        for group in sorted(groups):
            has = dc.source_table(src, group).counts_for(tids) > 0
            keep = keep & has if require_all else keep | has
        dropped = before - int(keep.sum())
        if require_all and before and dropped / before >= warn_drop_trains_frac:
            warnings.warn(f"{dropped}/{before} ({dropped / before:.0%}) trains dropped "
                          f"when filtering by {src}", stacklevel=4)
    return tids[keep]
