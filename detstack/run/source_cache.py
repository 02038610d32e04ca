"""Per-source index details of run files, read one file at a time and cached outside the run.

A detector's frame maps need, for every file of every module source, the keys (shape,
dtype, HDF5 path) and the checked index of each index group (`files.SourceDetails`).
Reading them group by group opens every file once per group; `prefetch` reads them file
by file instead (one open each), and keeps them in a cache beside the metadata cache
(`meta_cache`): one `.sources.npz` per run folder, keyed by the folder's real path, an
entry used only while its file has the same size and modification time. It is safe to
delete at any time; a damaged cache is ignored and rewritten. Sources whose reading
warned (relabelled trains...) or whose keys have types the cache cannot store exactly
(strings, compound types) are not cached, so they are read, and warn, every time.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DetstackError
from .files import RunFile, SourceDetails, SourceIndex, share_groups
from .meta_cache import Stamp, cache_path, read_cache_file, write_cache_file

log = logging.getLogger(__name__)

VERSION = 2   # 2: regular indexes stored as (first row, rows per train), not as arrays
Entries = dict[tuple[str, str], tuple[Stamp, SourceDetails]]   # (file name, source) ->


def details_path(folder: Path) -> Path:
    return cache_path(folder).with_suffix(".sources.npz")


def _plain(dtype: np.dtype) -> bool:
    """Is a dtype stored exactly by its `.str` (numbers, fixed bytes; no h5py metadata)?"""
    return dtype.kind in "biufcS" and dtype.fields is None and dtype.metadata is None \
        and dtype.subdtype is None


def cacheable(details: SourceDetails) -> bool:
    return all(_plain(np.dtype(dt)) for _, dt in details.keys.values())


def prefetch(files: Iterable[RunFile], sources: Iterable[str], use_cache: bool = True) -> None:
    """Read the details of `sources` in each file that has them, one file at a time.

    Problems are not raised here: a source whose index is damaged raises, as before,
    when its index is used."""
    wanted = set(sources)
    todo = [(f, s) for f in files if isinstance(f, RunFile)   # not views' module files
            for s in sorted((f.instrument_sources - set(f.legacy_sources)) & wanted)
            if not f.has_details(s)]
    by_folder: dict[Path, list[tuple[RunFile, str]]] = {}
    for f, s in todo:
        key = f.path.parent if use_cache and f.stamp is not None else Path()
        by_folder.setdefault(key, []).append((f, s))
    for folder, items in by_folder.items():
        cached = load(folder) if folder != Path() else {}
        fresh: Entries = {}
        for f, s in items:
            hit = cached.get((f.path.name, s))
            if hit is not None and hit[0] == f.stamp:
                f.adopt_details(s, hit[1])
                continue
            details = _read(f, s)
            if details is not None and f.stamp is not None and cacheable(details):
                fresh[f.path.name, s] = (f.stamp, details)
        if fresh and folder != Path():
            save(folder, {**cached, **fresh})


def _read(f: RunFile, source: str) -> SourceDetails | None:
    """The details, or None if reading them failed or warned (warnings passed on)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            details: SourceDetails | None = f.source_details(source)
        except DetstackError:
            details = None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return None if caught else details


def load(folder: Path) -> Entries:
    """The cached details of `folder`: {} if absent, stale or unreadable."""
    return read_cache_file(details_path(folder), folder, VERSION, _decode, "source cache")


def _decode(meta: dict[str, Any], npz: Any) -> Entries | None:
    count, delta = npz["count"], npz["first_delta"]    # of the irregular indexes only
    keysets = [({k: (tuple(v[0]), np.dtype(v[1])) for k, v in ks.items()},
                {k: str(v[2]) for k, v in ks.items()}) for ks in meta["keysets"]]
    out: Entries = {}
    pos = 0
    for e in meta["entries"]:
        n = int(e["n"])
        index = {}
        for g, form in zip(e["groups"], e["regular"], strict=True):
            if form is not None:
                index[str(g)] = SourceIndex.regular(int(form[0]), int(form[1]), n)
                continue
            c, d = count[pos:pos + n], delta[pos:pos + n]
            index[str(g)] = SourceIndex(np.cumsum(d).astype(np.uint64), c.astype(np.uint64))
            pos += n
        keys, paths = keysets[int(e["keyset"])]
        out[str(e["name"]), str(e["source"])] = (
            (int(e["size"]), int(e["mtime_ns"])), SourceDetails(keys, paths, share_groups(index)))
    return out if pos == len(count) == len(delta) else None


def save(folder: Path, entries: Entries) -> None:
    """Replace the cache of `folder` atomically; failures (read-only home...) are logged."""
    keysets: list[dict[str, list[object]]] = []
    keyset_no: dict[str, int] = {}
    metas, counts, deltas = [], [], []
    for (name, source), ((size, mtime), d) in sorted(entries.items()):
        ks = {k: [list(shape), np.dtype(dt).str, d.paths[k]]
              for k, (shape, dt) in sorted(d.keys.items())}
        text = json.dumps(ks, sort_keys=True)
        if text not in keyset_no:
            keyset_no[text] = len(keysets)
            keysets.append(ks)
        groups = sorted(d.index)
        n = len(d.index[groups[0]]) if groups else 0
        if any(len(d.index[g]) != n for g in groups):
            continue
        forms = [d.index[g].form for g in groups]
        for g, form in zip(groups, forms, strict=True):
            if form is None:
                first = d.index[g].first.astype(np.int64)
                deltas.append(np.diff(first, prepend=np.int64(0)))
                counts.append(d.index[g].count.astype(np.int64))
        metas.append({"name": name, "source": source, "size": size, "mtime_ns": mtime,
                      "n": n, "groups": groups, "keyset": keyset_no[text],
                      "regular": [None if f is None else list(f) for f in forms]})
    meta = {"version": VERSION, "folder": os.path.realpath(folder), "keysets": keysets,
            "entries": metas}
    empty = np.zeros(0, np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                        count=np.concatenate(counts) if counts else empty,
                        first_delta=np.concatenate(deltas) if deltas else empty)
    path = details_path(folder)
    write_cache_file(path, buf.getvalue(), "source cache")
