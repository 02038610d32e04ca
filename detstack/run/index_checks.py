"""Check one (source, index group) of a file before anything reads through it.

The index says which rows of the group's datasets belong to which train. A damaged index
must never read as plausible data, so every index is checked when it is first read:
values that are negative (stored signed, or wrapped to 2**64-n in unsigned types), ranges
past the end of a dataset, ranges of different trains that overlap, and, where the group
has a per-row `trainId` dataset (e.g. `image.trainId`), rows whose train ID disagrees
with the index. The last check reads that one 1-D dataset (8 bytes per row), never pixels.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IndexFormatError
from .h5read import read_whole

if TYPE_CHECKING:
    from .files import RunFile

FIX = "The index is corrupt; re-transfer the file, or leave it out with include="
SIGNED_LIMIT = 2**63


def _as_int64(rf: RunFile, path: str, name: str, values: np.ndarray) -> np.ndarray:
    """Index values as int64, refusing negative ones however they are stored."""
    values = np.asarray(values)
    if values.dtype.kind == "u":
        bad = values >= np.uint64(SIGNED_LIMIT) if values.dtype.itemsize == 8 else None
        if bad is not None and bad.any():
            i = int(np.argmax(bad))
            raise IndexFormatError(
                rf.path, f"{path}/{name} is negative at train {int(rf.train_ids[i])} (stored "
                f"unsigned as {int(values[i])} = 2**64 - {2**64 - int(values[i])})", FIX)
        return values.astype(np.int64)
    if values.dtype.kind == "i":
        if (values < 0).any():
            i = int(np.argmax(values < 0))
            raise IndexFormatError(rf.path, f"{path}/{name} is negative ({int(values[i])}) at "
                                   f"train {int(rf.train_ids[i])}", FIX)
        return values.astype(np.int64)
    raise IndexFormatError(rf.path, f"{path}/{name} has dtype {values.dtype}, not an integer "
                           "type", FIX)


def checked_index(rf: RunFile, source: str, group: str, first: np.ndarray,
                  count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, count) as uint64 once they passed every check; IndexFormatError otherwise."""
    path = f"INDEX/{source}/{group}".rstrip("/")
    first64 = _as_int64(rf, path, "first", first)
    count64 = _as_int64(rf, path, "count", count)
    has = count64 > 0
    if has.any():
        rows = rf.group_datasets(source, group)
        _check_end(rf, path, first64, count64, has, rows)
        _check_overlap(rf, path, first64, count64, has)
        if f"{group}.trainId" in rows and not rf.is_control(source):
            _check_train_ids(rf, source, group, path, first64, count64, has)
    return first64.astype(np.uint64), count64.astype(np.uint64)


def _check_end(rf: RunFile, path: str, first: np.ndarray, count: np.ndarray, has: np.ndarray,
               rows: dict[str, int]) -> None:
    limit = min(rows.values(), default=None)
    if limit is None:
        return
    # compare each value before adding, so huge values cannot overflow the sum
    end = np.where(has, np.minimum(first, SIGNED_LIMIT // 4) + np.minimum(count, SIGNED_LIMIT // 4), 0)
    max_end = int(end.max())
    for key in sorted(rows, key=lambda k: (rows[k], k)):
        if rows[key] < max_end:
            bad = int(np.argmax(end > rows[key]))
            raise IndexFormatError(
                rf.path,
                f"{path} points past the end of {key} (first+count={max_end} > "
                f"{rows[key]} rows, first at train {int(rf.train_ids[bad])})",
                "The file is truncated or its index is corrupt; re-transfer it or "
                "exclude it with include=")


def _check_overlap(rf: RunFile, path: str, first: np.ndarray, count: np.ndarray,
                   has: np.ndarray) -> None:
    pos = np.flatnonzero(has)
    order = pos[np.argsort(first[pos], kind="stable")]
    ends = first[order] + count[order]
    clash = np.flatnonzero(first[order][1:] < ends[:-1])
    if len(clash):
        a, b = int(order[clash[0]]), int(order[clash[0] + 1])
        ta, tb = int(rf.train_ids[a]), int(rf.train_ids[b])
        raise IndexFormatError(
            rf.path, f"{path}: the rows of trains {ta} ({int(first[a])}+{int(count[a])}) and "
            f"{tb} ({int(first[b])}+{int(count[b])}) overlap, so frames would be read twice",
            FIX)


def _check_train_ids(rf: RunFile, source: str, group: str, path: str, first: np.ndarray,
                     count: np.ndarray, has: np.ndarray) -> None:
    """The rows the index gives one train must all carry one train ID in `<group>.trainId`.

    Rows of one train carrying different IDs mean the index boundaries are wrong (frames
    of two trains under one): an error. Rows that agree among themselves but carry another
    ID than INDEX/trainId (a relabelled train: a damaged train ID, or EXtra-data's mock
    runs, which number per-frame IDs without gaps) get a warning naming the first one.
    """
    key = f"{group}.trainId"
    n = int((first + count)[has].max())
    stored = read_whole(rf.h5.id, f"INSTRUMENT/{source}/{group}/trainId")
    stored = stored.reshape(len(stored), -1)[:n, 0]
    counts = count[has]
    seg = np.cumsum(counts) - counts
    rows = np.repeat(first[has], counts) + np.arange(int(counts.sum())) - np.repeat(seg, counts)
    values = stored[rows]
    mixed = np.minimum.reduceat(values, seg) != np.maximum.reduceat(values, seg)
    tids = rf.train_ids[has]
    if mixed.any():
        i = int(np.argmax(mixed))
        block = values[seg[i]:seg[i] + counts[i]]
        r = int(np.argmax(block != block[0]))
        raise IndexFormatError(
            rf.path, f"{path} gives rows {int(first[has][i])}..{int(first[has][i] + counts[i] - 1)} "
            f"to train {int(tids[i])}, but {source} {key} says row "
            f"{int(first[has][i]) + r} belongs to train {int(block[r])} and row "
            f"{int(first[has][i])} to train {int(block[0])}: frames of different trains "
            "would be read as one",
            "The index or the data is corrupt; re-transfer the file, or leave it out with "
            "include=")
    relabelled = (values[seg] != tids) & rf.validity[has]
    if relabelled.any():
        i = int(np.argmax(relabelled))
        warnings.warn(
            f"{rf.path}: {path} calls train {int(tids[i])} what {source} {key} calls train "
            f"{int(values[seg[i]])} ({int(relabelled.sum())} trains disagree). The data is "
            "read as INDEX/trainId says; if that ID is wrong, open with "
            "inc_suspect_trains=False or leave the file out with include=", stacklevel=6)
