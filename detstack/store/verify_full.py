"""``verify --full``: read every (module, train) block of a view and check it.

Against the sources: the record names the detector and its source files, so the
frame map is rebuilt from those files and every block's rows are read with
plain h5py and compared with what the view returns (NaN equals NaN). Against
checksums (zarr stores): every block read back is summed and compared with the
crc32 recorded while converting.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..errors import DetstackError
from .verify import Mismatch, VerifyReport, source_path

log = logging.getLogger(__name__)

Blocks = dict[tuple[int, int], tuple[str, str, int, int]]   # (slot, view train) -> rows


def _train_index(view: Any) -> dict[int, int]:
    return {int(t): i for i, t in enumerate(view.train_ids_array)}


def _view_files(view: Any) -> Iterator[tuple[int, Any]]:
    for vf in view.files:
        yield vf.slot, vf


def _view_counts(vf: Any, info: dict[str, Any]) -> np.ndarray:
    count = np.asarray(vf.index(vf.source, info["group"]).count, np.int64)
    return count if info["per_frame"] else np.minimum(count, 1)


class Unreadable(Exception):
    """A block the view cannot return (its error is the mismatch's detail)."""


def _view_first(vf: Any, info: dict[str, Any]) -> np.ndarray:
    """(n_trains,) first row of each train in the view's rows of a key (both layouts)."""
    return np.asarray(vf.index(vf.source, info["group"]).first, np.int64)


def _view_rows(vf: Any, key: str, start: int, count: int) -> np.ndarray:
    rv = vf.h5[key]
    try:
        return np.asarray(rv.read(slice(start, start + count)))
    except (DetstackError, OSError, ValueError) as exc:
        raise Unreadable(f"cannot be read: {exc}") from exc


def _source_detector(path: str | os.PathLike[str], record: dict[str, Any]) -> Any | None:
    """The detector the view was made of, over those of its source files at hand."""
    import detstack

    from ..run.collection import DataCollection
    from ..run.files import RunFile
    paths = [source_path(path, e) for e in record.get("source_files", [])]
    files = []
    for p in paths:
        if p is not None and p.is_file():
            try:
                files.append(RunFile(p))
            except (DetstackError, OSError) as exc:
                log.warning("verify: cannot open source %s: %s", p, exc)
    if not files:
        return None
    data = DataCollection(files)
    info = record["detector"]
    cls = getattr(detstack, info["class"])
    wanted = {m["source"] for m in info["modules"].values()}
    for raw in (None, True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                det = cls(data, info["name"], raw=raw)
        except (DetstackError, ValueError, KeyError):
            continue
        if set(det.source_to_modno) <= wanted:
            return det
    return None


def source_blocks(path: str | os.PathLike[str], view: Any) -> dict[str, Blocks] | None:
    """{key: {(slot, view train index): (file, dataset, first row, count)}} from the sources,
    or None when none of them is at hand."""
    from ..convert.plan import ViewPlan
    record = view.record
    det = _source_detector(path, record)
    if det is None:
        return None
    plan = ViewPlan(det, list(record["keys"]))
    where = _train_index(view)
    out: dict[str, Blocks] = {}
    for kp in plan.keys:
        blocks: Blocks = {}
        for b in plan.blocks(kp):
            t = where.get(int(plan.train_ids[b.train]))
            if t is not None:
                blocks[(b.slot, t)] = (str(b.file), b.dataset, b.src_start, b.count)
        out[kp.key] = blocks
    return out


class _SourceReader:
    def __init__(self) -> None:
        self.files: dict[str, h5py.File] = {}

    def rows(self, file: str, dataset: str, first: int, count: int) -> np.ndarray:
        if file not in self.files:
            self.files[file] = h5py.File(file, "r")
        return np.asarray(self.files[file][dataset][first:first + count])

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def differing_frames(got: np.ndarray, want: np.ndarray,
                     bound: tuple[str, float] | None = None) -> list[int]:
    """Frames of ``got`` that differ from ``want`` (beyond ``bound`` for lossy keys)."""
    if got.shape != want.shape:
        return list(range(max(len(got), len(want))))
    if bound is not None:
        from ..convert.zarr.lossy import within_bound
        same = within_bound(want, got, *bound)
    elif got.dtype.kind in "fc":
        same = (got == want) | (np.isnan(got) & np.isnan(want))
    else:
        same = got == want
    same = same.reshape(len(same), -1).all(axis=1) if same.ndim > 1 else same
    return [int(i) for i in np.flatnonzero(~np.atleast_1d(same))]


def _module_number(record: dict[str, Any], slot: int) -> int:
    return int(record["detector"]["modules"][str(slot)]["number"])


def compare_with_sources(path: str | os.PathLike[str], view: Any, report: VerifyReport,
                         only: set[str] | None = None) -> bool:
    """Every block of the view (of the keys ``only``) against the source rows, within the
    stated error bound for lossy keys; False if no source is at hand."""
    from ..convert.zarr.lossy import error_bound
    blocks = source_blocks(path, view)
    if blocks is None:
        return False
    record, tids = view.record, view.train_ids_array
    reader = _SourceReader()
    try:
        for key, info in record["keys"].items():
            if only is not None and key not in only:
                continue
            bound = error_bound(record, key)
            expected = blocks.get(key, {})
            for slot, vf in _view_files(view):
                counts, first = _view_counts(vf, info), _view_first(vf, info)
                trains = set(np.flatnonzero(counts).tolist())
                trains |= {t for (s, t) in expected if s == slot}
                for t in sorted(trains):
                    mod, tid = _module_number(record, slot), int(tids[t])
                    src = expected.get((slot, t))
                    try:
                        got = _view_rows(vf, key, int(first[t]), int(counts[t]))
                    except Unreadable as exc:
                        report.blocks_checked += 1
                        report.add_mismatch(Mismatch(key, mod, tid, None, str(exc)))
                        continue
                    report.blocks_checked += 1
                    report.frames_checked += len(got) if info["per_frame"] else 1
                    if src is None:
                        report.add_mismatch(Mismatch(key, mod, tid, list(range(len(got))),
                                                     "the view holds rows the sources do not"))
                        continue
                    want = reader.rows(*src)
                    if len(got) != len(want):
                        report.add_mismatch(Mismatch(
                            key, mod, tid, None, f"the view holds {len(got)} rows, the "
                            f"sources {len(want)} ({src[0]})"))
                        continue
                    bad = differing_frames(got, want, bound)
                    if bad:
                        how = f"beyond the {bound[0]} error bound {bound[1]:g} of" if bound \
                            else "values differ from"
                        report.add_mismatch(Mismatch(key, mod, tid, bad, f"{how} {src[0]}"))
    finally:
        reader.close()
    return True


def store_object(url: str, key: str, storage_options: dict[str, Any] | None) -> bytes | None:
    """One object of a zarr store (folder, zip or URL), or None."""
    import fsspec

    from .zarr_store import is_zip, local_path
    local = local_path(url)
    if is_zip(url) and local is not None:
        with zipfile.ZipFile(local) as zf:
            try:
                return zf.read(key)
            except KeyError:
                return None
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    try:
        return bytes(fs.cat_file(f"{root.rstrip('/')}/{key}"))
    except FileNotFoundError:
        return None


def compare_with_checksums(path: str | os.PathLike[str], view: Any, report: VerifyReport,
                           storage_options: dict[str, Any] | None) -> bool:
    """Every block of a zarr store against its recorded checksums; False if it has none."""
    from ..convert.checksums import block_checksum, frames_per_block, read_document
    from ..convert.zarr.target import CHECKSUMS
    raw = store_object(os.fspath(path), CHECKSUMS, storage_options)
    if raw is None:
        return False
    from ..convert.zarr.lossy import error_bound
    sums = read_document(raw)
    record = view.record
    bad: list[tuple[str, int, int]] = []
    lossy = {k for k in record["keys"] if error_bound(record, k) is not None}
    if lossy:       # their checksums are of the source values: check the bound instead
        if not compare_with_sources(path, view, report, only=lossy):
            report.notes.append(f"{', '.join(sorted(lossy))}: stored lossy; their error "
                                "bound can only be checked with the source files at hand")
    per_block = frames_per_block(raw)
    for key, info in record["keys"].items():
        if key in lossy:
            continue
        if key not in sums:
            report.notes.append(f"{key}: no checksums recorded")
            continue
        if key in per_block:
            bad += _check_frame_blocks(view, key, info, sums[key], per_block[key], report)
            continue
        for slot, vf in _view_files(view):
            counts, first = _view_counts(vf, info), _view_first(vf, info)
            for t in np.flatnonzero(counts):
                report.blocks_checked += 1
                try:
                    got = _view_rows(vf, key, int(first[t]), int(counts[t]))
                except Unreadable as exc:
                    report.add_mismatch(Mismatch(key, _module_number(record, slot),
                                                 int(view.train_ids_array[t]), None, str(exc)))
                    continue
                report.frames_checked += len(got) if info["per_frame"] else 1
                rows = got if info["per_frame"] else got[0]
                if block_checksum(rows) != int(sums[key][slot, t]):
                    bad.append((key, slot, int(t)))
    if bad:
        _name_bad_frames(path, view, report, bad)
    return True


def _check_frame_blocks(view: Any, key: str, info: dict[str, Any], sums: np.ndarray,
                        size: int, report: VerifyReport) -> list[tuple[str, int, int]]:
    """A frame-layout key against its per-(slot, block of ``size`` frames) checksums;
    returns (key, slot, train) of every train the module has in a differing block."""
    from ..convert.checksums import block_checksum
    from ..convert.plan import fill_from_json
    bad: list[tuple[str, int, int]] = []
    record = view.record
    fill = fill_from_json(info["fill_value"])
    for slot, vf in _view_files(view):
        counts, first = _view_counts(vf, info), _view_first(vf, info)
        n_frames = int(vf.h5[key].shape[0])
        owner = np.full(n_frames, -1, np.int64)     # the train of each frame the module has
        for t in np.flatnonzero(counts):
            owner[first[t]:first[t] + counts[t]] = t
        for b in range(-(-n_frames // size)):
            trains = np.unique(owner[b * size:(b + 1) * size])
            trains = trains[trains >= 0]
            if not len(trains):
                continue
            report.blocks_checked += 1
            try:
                got = _block_rows(vf, key, owner, b * size, min(size, n_frames - b * size),
                                  fill)
            except Unreadable as exc:
                t = int(owner[getattr(exc, "frame", b * size)])
                report.add_mismatch(Mismatch(key, _module_number(record, slot),
                                             int(view.train_ids_array[t]), None, str(exc)))
                continue
            report.frames_checked += int((owner[b * size:(b + 1) * size] >= 0).sum())
            if b >= sums.shape[1] or block_checksum(got) != int(sums[slot, b]):
                bad += [(key, slot, int(t)) for t in trains]
    return bad


def _block_rows(vf: Any, key: str, owner: np.ndarray, start: int, n: int, fill: Any
                ) -> np.ndarray:
    """Frames ``start:start+n`` as a read returns them: the module's frames (``owner`` >= 0)
    read from the view, the others its fill value (they have no stored chunk to read)."""
    rv = vf.h5[key]
    out = np.full((n,) + tuple(rv.shape[1:]), fill, rv.dtype)
    have = np.flatnonzero(owner[start:start + n] >= 0)
    if len(have):
        cuts = np.flatnonzero(np.diff(have) != 1) + 1
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(have)].tolist(),
                          strict=True):
            a, b = int(have[lo]), int(have[hi - 1]) + 1
            try:
                out[a:b] = _view_rows(vf, key, start + a, b - a)
            except Unreadable as exc:
                exc.frame = start + a      # type: ignore[attr-defined]
                raise
    return out


def _name_bad_frames(path: str | os.PathLike[str], view: Any, report: VerifyReport,
                     bad: list[tuple[str, int, int]]) -> None:
    """Report checksum failures, naming the frames when the sources are at hand."""
    record, tids = view.record, view.train_ids_array
    blocks = source_blocks(path, view) or {}
    reader = _SourceReader()
    files = dict(_view_files(view))
    try:
        for key, slot, t in bad:
            info = record["keys"][key]
            mod, tid = _module_number(record, slot), int(tids[t])
            src = blocks.get(key, {}).get((slot, t))
            frames = None
            detail = "checksum differs from the one recorded at conversion"
            if src is not None:
                vf = files[slot]
                got = _view_rows(vf, key, int(_view_first(vf, info)[t]),
                                 int(_view_counts(vf, info)[t]))
                want = reader.rows(*src)
                frames = differing_frames(got, want) if info["per_frame"] else [0]
                detail += f"; compared with {src[0]}"
            report.add_mismatch(Mismatch(key, mod, tid, frames, detail))
    finally:
        reader.close()


def verify_frames(path: str | os.PathLike[str], view: Any, report: VerifyReport,
                  storage_options: dict[str, Any] | None = None) -> None:
    """Fill ``report`` with every block that differs from what it must be."""
    if report.form == "zarr" and compare_with_checksums(path, view, report, storage_options):
        return
    if not compare_with_sources(path, view, report):
        report.notes.append("no source file at hand and no checksums recorded: the frames "
                            "could not be compared")
