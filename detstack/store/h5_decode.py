"""HDF5 read failures as typed errors naming the stored chunk at fault.

h5py reports a chunk it cannot decode (a damaged deflate stream, a failed
checksum) as a bare ``OSError: Can't read data (filter returned failure)``,
naming neither file, dataset nor frame; through a virtual dataset it does not
even say which source file. Readers that go through h5py (HDF5 views,
``write_frames``) read with ``read_checked``: on failure the request is narrowed
to the failing element of its leading axes, followed through the virtual
mappings (nested ones too) to the stored dataset, and raised as
``CorruptChunkError`` naming source file, dataset, chunk and the caller's
module and train. The narrowing costs reads only on that error path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import h5py
import numpy as np

from ..errors import CorruptChunkError, DetstackError, FileFormatError

Where = Callable[[tuple[int, ...]], str]   # a position in the dataset -> "module 3, train 7"

HINT = ("The file is damaged: copy it again from the archive, or leave this module out "
        "(modules=[...])")


def read_checked(ds: h5py.Dataset, item: Any, where: Where | None = None) -> np.ndarray:
    """``ds[item]``; a read HDF5 cannot decode is a ``CorruptChunkError``."""
    if not isinstance(ds, h5py.Dataset):
        return ds[item]
    try:
        return ds[item]
    except OSError as exc:
        if isinstance(exc, DetstackError):
            raise
        raise explain(ds, item, where, exc) from None


class CheckedDataset:
    """An h5py dataset whose reads go through ``read_checked``."""

    def __init__(self, ds: h5py.Dataset, where: Where | None = None) -> None:
        self.ds = ds
        self.where = where
        self.shape = tuple(ds.shape)
        self.dtype = ds.dtype
        self.ndim = ds.ndim

    def __getitem__(self, item: Any) -> np.ndarray:
        return read_checked(self.ds, item, self.where)


def view_where(record: dict[str, Any], train_ids: np.ndarray, per_frame: bool = True,
               offsets: np.ndarray | None = None) -> Where:
    """Name a position of a view array: ``(slot, train[, frame])``, or ``(slot, frame)``
    with ``offsets`` (frames of train ``t`` are ``offsets[t]:offsets[t+1]``)."""
    modules = record["detector"]["modules"]

    def where(pos: tuple[int, ...]) -> str:
        info = modules.get(str(pos[0]), {})
        text = f"module {info.get('number', pos[0])} (source {info.get('source', '?')})"
        if offsets is not None and len(pos) > 1:
            t = int(np.searchsorted(offsets, pos[1], side="right")) - 1
            frame = pos[1] - int(offsets[t]) if 0 <= t < len(train_ids) else None
            pos = (pos[0], t) + ((frame,) if frame is not None else ())
        if len(pos) > 1 and 0 <= pos[1] < len(train_ids):
            text += f", train {int(train_ids[pos[1]])}"
        if per_frame and len(pos) > 2 and pos[2] is not None:
            text += f", frame {pos[2]}"
        return text
    return where


def explain(ds: h5py.Dataset, item: Any, where: Where | None, exc: OSError
            ) -> FileFormatError:
    """The typed error for a failed ``ds[item]``: ``CorruptChunkError`` naming the chunk,
    or, if no element fails when read again, a ``FileFormatError`` saying so."""
    box = index_box(ds.shape, item)
    point = _failing_point(ds, box, max(1, ds.ndim - 2))
    if point is None:
        return FileFormatError(ds.file.filename, f"HDF5 failed to read {ds.name} ({exc}), "
                               "but every part of it reads when asked again",
                               "The failure was not in the data (memory, a file system "
                               "error?): read again")
    place = where(point) if where is not None else f"position {point}"
    opened: list[h5py.File] = []
    try:
        path, dset, at = _stored(ds, point, opened)
        chunk = _chunk_text(path, dset, at, opened)
    except (OSError, RuntimeError, ValueError, KeyError):   # a source HDF5 cannot open
        path, dset, chunk = ds.file.filename, ds.name, ""
    finally:
        for f in opened:
            f.close()
    via = "" if os.path.realpath(path) == os.path.realpath(ds.file.filename) \
        else f", read through {ds.file.filename}:{ds.name}"
    return CorruptChunkError(path, f"dataset {dset}{chunk} ({place}{via}) cannot be "
                             f"decoded: HDF5 failed to read it ({exc})", HINT)


def index_box(shape: tuple[int, ...], item: Any) -> list[range]:
    """The index ranges ``item`` touches, per axis (an array index: the whole axis)."""
    item = item if isinstance(item, tuple) else (item,)
    if any(i is Ellipsis for i in item):
        k = next(n for n, i in enumerate(item) if i is Ellipsis)
        item = item[:k] + (slice(None),) * (len(shape) - len(item) + 1) + item[k + 1:]
    out = []
    for axis, n in enumerate(shape):
        idx = item[axis] if axis < len(item) else slice(None)
        if isinstance(idx, (int, np.integer)):
            i = range(n)[int(idx)]
            out.append(range(i, i + 1))
        elif isinstance(idx, slice):
            r = range(n)[idx]
            out.append(range(min(r), max(r) + 1) if len(r) else r)
        else:
            out.append(range(n))
    return out


def _fails(ds: h5py.Dataset, box: list[range]) -> bool:
    try:
        ds[tuple(slice(r.start, r.stop) for r in box)]
    except OSError:
        return True
    return False


def failing_box(fails: Callable[[list[range]], bool], box: list[range], axes: int,
                steps: Sequence[int] | None = None) -> list[range] | None:
    """``box`` narrowed, axis by axis over the leading ``axes``, to the first piece
    (``steps[axis]`` long and aligned, e.g. a chunk; default 1) whose read ``fails``;
    None if the whole box reads."""
    if not fails(box):
        return None
    for axis in range(min(axes, len(box))):
        r, step = box[axis], (steps[axis] if steps is not None else 1)
        for s in range(r.start - r.start % step, r.stop, step):
            trial = box[:axis] + [range(max(s, r.start), min(s + step, r.stop))] + box[axis + 1:]
            if fails(trial):
                box = trial
                break
        else:
            return None
    return box


def _failing_point(ds: h5py.Dataset, box: list[range], axes: int) -> tuple[int, ...] | None:
    """The first position along the leading ``axes`` whose read fails (the rest of the
    box at its start), or None if the box reads."""
    found = failing_box(lambda b: _fails(ds, b), box, axes)
    return None if found is None else tuple(r.start if len(r) else 0 for r in found)


def _selection(space: h5py.h5s.SpaceID) -> list[tuple[int, int, int, int]] | None:
    """(start, stride, count, block) per axis of a regular selection, else None."""
    kind = space.get_select_type()
    if kind == h5py.h5s.SEL_ALL:
        return [(0, 1, 1, int(n)) for n in space.shape]
    if kind != h5py.h5s.SEL_HYPERSLABS or not space.is_regular_hyperslab():
        return None
    return list(zip(*space.get_regular_hyperslab(), strict=True))


def _map_point(vspace: h5py.h5s.SpaceID, srcspace: h5py.h5s.SpaceID,
               point: tuple[int, ...]) -> tuple[int, ...] | None:
    """Where a virtual-space point lands in the source space (None: not in this mapping)."""
    vsel, ssel = _selection(vspace), _selection(srcspace)
    if vsel is None or ssel is None or len(vsel) != len(point):
        return None
    pos, sizes = [], []
    for x, (start, stride, count, block) in zip(point, vsel, strict=True):
        c, b = divmod(x - start, stride) if count > 1 else (0, x - start)
        if x < start or c >= count or not 0 <= b < block:
            return None
        pos.append(c * block + b)
        sizes.append(count * block)
    linear = 0
    for p, n in zip(pos, sizes, strict=True):
        linear = linear * n + p
    out = []
    for start, stride, count, block in reversed(ssel):
        n = count * block
        linear, p = divmod(linear, n) if n < (1 << 62) else (0, linear)
        c, b = divmod(p, block)
        out.append(start + c * stride + b)
    return tuple(reversed(out))


def _stored(ds: h5py.Dataset, point: tuple[int, ...], opened: list[h5py.File]
            ) -> tuple[str, str, tuple[int, ...] | None]:
    """(file, dataset, position) holding ``ds[point]``, through virtual mappings."""
    seen = 0
    while ds.is_virtual and seen < 8:
        seen += 1
        dcpl = ds.id.get_create_plist()
        for i in range(dcpl.get_virtual_count()):
            at = _map_point(dcpl.get_virtual_vspace(i), dcpl.get_virtual_srcspace(i), point)
            if at is None:
                continue
            name, dset = dcpl.get_virtual_filename(i), dcpl.get_virtual_dsetname(i)
            if name == ".":
                ds = ds.file[dset]
            else:
                path = os.path.normpath(os.path.join(os.path.dirname(ds.file.filename), name))
                f = h5py.File(path, "r")
                opened.append(f)
                ds = f[dset]
            point = at
            break
        else:
            return ds.file.filename, ds.name, None
    return ds.file.filename, ds.name, point


def _chunk_text(path: str, dset: str, at: tuple[int, ...] | None,
                opened: list[h5py.File]) -> str:
    """", chunk (i, j, k) at byte N" of a stored position, when HDF5 can say."""
    if at is None:
        return ""
    f = next((f for f in opened if f.filename == path), None)
    if f is None:
        f = h5py.File(path, "r")
        opened.append(f)
    ds = f[dset]
    if ds.chunks is None:
        return f", element {at}"
    chunk = tuple(int(p) // int(c) for p, c in zip(at, ds.chunks, strict=True))
    text = f", chunk {chunk} (rows {chunk[0] * ds.chunks[0]}-" \
        f"{min(ds.shape[0], (chunk[0] + 1) * ds.chunks[0]) - 1})"
    try:
        info = ds.id.get_chunk_info_by_coord(tuple(c * n for c, n in zip(chunk, ds.chunks,
                                                                         strict=True)))
        if info.byte_offset is not None:
            text += f" at byte {info.byte_offset}"
    except (OSError, RuntimeError, AttributeError):
        pass
    return text
