"""What a view holds: the frame map of a detector laid out as one array per key.

Every writer (HDF5 virtual view, CXI, zarr manifest, zarr store, Icechunk) lays out
the same content, described here once. Two layouts (``layout=``):

* ``"trains"`` (default): per-frame keys (``image.*``) are ``(module, train, pulse,
  *entry)``, every train padded to the longest one; frame ``p`` of train ``t`` is the
  ``p``-th row the module stored for that train;
* ``"frames"``: per-frame keys are ``(module, frame, *entry)``, the frames of all
  trains one after another with no padding, like ``get_array(...,
  unstack_pulses=False)``. The frame axis is the union over modules: train ``t`` owns
  frames ``offsets[t]:offsets[t+1]`` (its frame count, equal for every module that has
  it), with per-frame coordinates ``train_id``, ``pulse_id``, ``cell_id`` shared by all
  modules (taken from the modules that have the train); a module lacking a train reads
  as fill there.

In both, keys with one row per train (JUNGFRAU ``data.*``, headers) are ``(module,
train, *entry)``: nothing to pad. The module axis covers every slot of the detector
(``n_modules``), so absent modules read as fill. Fill values follow one convention
(``FILL_CONVENTION``), recorded per key. Entry axes are named by ``axes.entry_axes``;
zarr forms drop meaningless length-1 axes (``squeeze=True``). A metadata record
(``schemas/view-record.schema.json``) lets ``detstack.store`` rebuild a collection
that every detector class accepts.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..detectors.base import MultimodDetectorBase
from ..detectors.consistency import check_key
from ..frames import FrameMap
from ..store.identity_cache import IdentityCache, recorded_identity
from .axes import EntryAxes, entry_axes
from .frame_ids import frame_coordinates

SCHEMA_VERSION = 2
FORMAT_NAME = "detstack-view"
LAYOUTS = ("trains", "frames")
FILL_CONVENTION = ("absent modules, trains and frames read as: masks (keys named '*.mask') "
                   "all bits set, i.e. bad; floating-point keys NaN; other numbers 0")


def fill_value_for(key: str, dtype: np.dtype) -> Any:
    """The fill value of a key by ``FILL_CONVENTION``: gaps in masks read as bad."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan
    if key.rsplit(".", 1)[-1] == "mask":
        if dtype.kind == "u":
            return int(np.iinfo(dtype).max)
        if dtype.kind == "i":
            return -1
        if dtype.kind == "b":
            return True
    return False if dtype.kind == "b" else 0


def fill_to_json(value: Any) -> Any:
    """A fill value for JSON records: NaN as the string "NaN"."""
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return "NaN"
    return value.item() if isinstance(value, np.generic) else value


def fill_from_json(value: Any) -> Any:
    """Inverse of ``fill_to_json``; ``None`` (schema version 1) also means NaN."""
    return np.nan if value is None or value == "NaN" else value


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, not "
                         f"{layout!r}: 'trains' pads every train to the longest one, "
                         "'frames' lays frames end to end")
    return layout


@dataclass(frozen=True)
class KeyPlan:
    """One key of the view and where its rows come from."""

    key: str
    group: str
    per_frame: bool              # rows are frames (train, frame axes) or trains (train axis)
    dtype: np.dtype
    entry_shape: tuple[int, ...]  # one source row
    fill_value: Any
    axes: EntryAxes | None = None
    squeeze: bool = False         # the view drops the meaningless length-1 entry axes

    @property
    def path(self) -> str:
        """Dataset/array name in the view: the key with '.' kept ('image.data')."""
        return self.key

    @property
    def kept_axes(self) -> tuple[int, ...]:
        if self.axes is None:
            return tuple(range(len(self.entry_shape)))
        return self.axes.kept(self.squeeze)

    @property
    def squeezed_axes(self) -> tuple[int, ...]:
        """Entry axes (positions in ``entry_shape``) the view does not store."""
        kept = set(self.kept_axes)
        return tuple(i for i in range(len(self.entry_shape)) if i not in kept)

    @property
    def stored_entry(self) -> tuple[int, ...]:
        return tuple(self.entry_shape[i] for i in self.kept_axes)

    @property
    def entry_dims(self) -> tuple[str, ...]:
        names = self.axes.names if self.axes is not None else tuple(
            f"{self.key}.axis{i}" for i in range(len(self.entry_shape)))
        return tuple(names[i] for i in self.kept_axes)

    def stored_rows(self, rows: np.ndarray) -> np.ndarray:
        """Source rows ``(n, *entry_shape)`` as the view stores them (a view, no copy)."""
        return rows.reshape((len(rows),) + self.stored_entry)


@dataclass(frozen=True)
class Block:
    """Rows ``src_start:src_start+count`` of ``file``/``dataset`` go to ``view[index]``
    (``index``: the leading axes, e.g. ``(slot, train, slice(0, count))``)."""

    slot: int
    train: int
    file: Path
    dataset: str
    src_start: int
    count: int
    index: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Coordinate:
    """One coordinate array of a view: its dims, shape and dtype are known without
    reading; ``values`` reads it (pulse/cell IDs come from the files) once."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @functools.cached_property
    def values(self) -> np.ndarray:
        out = np.asarray(self.load(), self.dtype)
        assert out.shape == self.shape, (out.shape, self.shape)
        return out


def as_detector(det_or_run: Any, detector_name: str | None = None,
                **det_kwargs: Any) -> MultimodDetectorBase:
    """A detector object from a detector, or the single detector of a run/view."""
    if isinstance(det_or_run, MultimodDetectorBase):
        return det_or_run
    from ..detectors.identify import identify_multimod_detectors
    name, cls = identify_multimod_detectors(det_or_run, detector_name, single=True)
    return cls(det_or_run, name, **det_kwargs)


class ViewPlan:
    """The layout of a view of one detector, shared by every writer.

    ``layout``: ``"trains"`` or ``"frames"`` (module docstring); ``squeeze``: drop
    meaningless length-1 entry axes (zarr forms; HDF5 views keep them).
    """

    def __init__(self, det: MultimodDetectorBase, keys: list[str] | None = None, *,
                 layout: str = "trains", squeeze: bool = False) -> None:
        self.det = det
        self.layout = check_layout(layout)
        self.squeeze = squeeze
        self.train_ids = np.asarray(det.frame_map.train_ids, dtype=np.uint64)
        self.n_slots = det.n_modules
        self.slots = [det.module_slot(m) for m in det.modules]
        self.max_frames = int(det.frame_map.train_counts().max()) if len(self.train_ids) else 0
        self.keys = [self._key_plan(k) for k in (keys or self.default_keys())]

    @property
    def frames(self) -> bool:
        """True for the frame layout."""
        return self.layout == "frames"

    def default_keys(self) -> list[str]:
        """Every key of the detector's module sources present in all modules."""
        det = self.det
        common = set.intersection(*(set(det.data.keys_for_source(s))
                                    for s in det.source_to_modno))
        return sorted(common)

    def _key_plan(self, key: str) -> KeyPlan:
        det = self.det
        src = next(iter(det.source_to_modno))
        check_key(det.data, list(det.source_to_modno), key)
        entry, dtype = det.data.key_info(src, key)
        group = det.data.files_for_source(src)[0].key_group(src, key)
        per_frame = group == det.kind.index_group and det.kind.xtdf
        dtype = np.dtype(dtype)
        axes = entry_axes(key, tuple(entry), xtdf=det.kind.xtdf, per_frame=per_frame,
                          module_shape=tuple(det.kind.module_shape),
                          cells=int(det._frames_per_entry))
        return KeyPlan(key, group, per_frame, dtype, tuple(entry), fill_value_for(key, dtype),
                       axes, self.squeeze)

    def key(self, key: str) -> KeyPlan:
        for kp in self.keys:
            if kp.key == key:
                return kp
        raise KeyError(key)

    # -- the leading axes --------------------------------------------------------------

    def offsets(self, group: str) -> np.ndarray:
        """(n_trains + 1,) first frame of each train on the frame axis of ``group``."""
        counts = self.det.group_map(group).train_counts().astype(np.int64)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def n_frames(self, group: str | None = None) -> int:
        return int(self.offsets(group or self.det.kind.index_group)[-1])

    def lead_dims(self, kp: KeyPlan) -> tuple[str, ...]:
        if not kp.per_frame:
            return ("module", "train")
        return ("module", "frame") if self.frames else ("module", "train", "pulse")

    def lead_shape(self, kp: KeyPlan) -> tuple[int, ...]:
        if not kp.per_frame:
            return (self.n_slots, len(self.train_ids))
        if self.frames:
            return (self.n_slots, self.n_frames(kp.group))
        return (self.n_slots, len(self.train_ids), self.max_frames)

    def shape(self, kp: KeyPlan) -> tuple[int, ...]:
        return self.lead_shape(kp) + kp.stored_entry

    def dims(self, kp: KeyPlan) -> tuple[str, ...]:
        return self.lead_dims(kp) + kp.entry_dims

    def view_rows(self, kp: KeyPlan, slots: np.ndarray, trains: np.ndarray,
                  within: np.ndarray) -> np.ndarray:
        """Flat index over the leading axes of rows ``within`` of (slot, train) pairs."""
        slots, trains = np.asarray(slots, np.int64), np.asarray(trains, np.int64)
        n_trains = len(self.train_ids)
        if not kp.per_frame:
            return slots * n_trains + trains
        if self.frames:
            return slots * self.n_frames(kp.group) + self.offsets(kp.group)[trains] + within
        return (slots * n_trains + trains) * self.max_frames + within

    def lead_index(self, kp: KeyPlan, slot: int, train: int, count: int) -> tuple[Any, ...]:
        """Index of the view rows of one (slot, train)."""
        if not kp.per_frame:
            return (slot, train)
        if self.frames:
            a = int(self.offsets(kp.group)[train])
            return (slot, slice(a, a + count))
        return (slot, train, slice(0, count))

    def frame_coordinates(self) -> dict[str, np.ndarray]:
        """Per-frame ``train_id``, ``pulse_id``, ``cell_id`` (and ``gain`` for LPD parallel
        gain) of the frame axis: what ``get_array(..., unstack_pulses=False)`` labels."""
        det = self.det
        if not det.kind.xtdf:
            return {}
        fast = frame_coordinates(det)   # module by module: bounded memory
        if fast is not None:
            return fast
        pulses = det.frame_labels("pulseId")
        out = {"train_id": np.asarray(pulses.train, np.uint64),
               "pulse_id": np.asarray(pulses.inner, np.uint64),
               "cell_id": np.asarray(det.frame_labels("cellId").inner, np.uint64)}
        if pulses.gain is not None:
            out["gain"] = np.asarray(pulses.gain, np.uint8)
        return out

    def coordinates(self, keys: Iterable[str] | None = None) -> dict[str, Coordinate]:
        """Every coordinate array of a view holding ``keys`` (default: the plan's):
        ``module`` numbers, ``train`` IDs, ``count.<group>`` rows per (module, train);
        in the train layout ``pulse_id``/``cell_id`` per (train, pulse|cell) when the
        key holding them is in the view (taken from the first module that has each
        train; 0 where none has it); in the frame layout the per-frame IDs of
        ``frame_coordinates``. The one definition every view form writes."""
        kps = [self.key(k) for k in keys] if keys is not None else list(self.keys)
        n_trains = len(self.train_ids)
        out = {"module": Coordinate(("module",), (self.n_slots,), np.dtype(np.int64),
                                    lambda: np.arange(self.n_slots) + self.det.kind.modno_base),
               "train": Coordinate(("train",), (n_trains,), np.dtype(np.uint64),
                                   lambda: self.train_ids)}
        for group in sorted({kp.group for kp in kps}):
            out[f"count.{group}"] = Coordinate(("module", "train"), (self.n_slots, n_trains),
                                               np.dtype(np.uint64),
                                               functools.partial(self.counts, group))
        if self.frames and any(kp.per_frame for kp in kps) and self.det.kind.xtdf:
            n = self.n_frames()
            names = ["train_id", "pulse_id", "cell_id"] + (
                ["gain"] if getattr(self.det, "parallel_gain", False) else [])
            for name in names:
                out[name] = Coordinate(("frame",), (n,), np.dtype(
                    np.uint8 if name == "gain" else np.uint64),
                    functools.partial(self._frame_coordinate, name))
            return out
        by_key = {kp.key: kp for kp in kps}
        for name, key in (("cell_id", self.det.kind.cell_key),
                          ("pulse_id", self.det.kind.pulse_key)):
            kp = by_key.get(key)
            if kp is None:
                continue
            inner = [(d, n) for d, n in zip(self.dims(kp)[2:], self.shape(kp)[2:],
                                            strict=True) if n != 1]
            if len(inner) == 1 and inner[0][0] in ("pulse", "cell") and \
                    not (name == "pulse_id" and key == self.det.kind.cell_key):
                out[name] = Coordinate(("train", inner[0][0]), (n_trains, inner[0][1]),
                                       kp.dtype, functools.partial(self._frame_ids, kp))
        return out

    def _frame_coordinate(self, name: str) -> np.ndarray:
        return self.frame_coordinates()[name]

    def _frame_ids(self, kp: KeyPlan) -> np.ndarray:
        """(train, pulse|cell) values of an ID key from the first module having each train."""
        n_trains, n_inner = len(self.train_ids), int(np.prod(self.shape(kp)[2:]))
        out = np.zeros((n_trains, n_inner), kp.dtype)
        if self.det.kind.xtdf and kp.per_frame:
            from ..detectors.pulses import frame_positions
            labels = self.det.frame_labels(
                "pulseId" if kp.key == self.det.kind.pulse_key else "cellId")
            fmap = self.frame_map(kp)
            train_index = np.repeat(np.arange(n_trains), fmap.train_counts().astype(np.int64))
            out[train_index, frame_positions(fmap)] = labels.inner
            return out
        from ..detectors.reading import read_rows
        fmap = self.frame_map(kp)
        rows = np.zeros((fmap.n_modules, n_trains) + kp.entry_shape, kp.dtype)
        if n_trains:
            read_rows(fmap, kp.key, rows, list(range(fmap.n_modules)), per_train=True)
        rows = rows.reshape(fmap.n_modules, n_trains, -1)[:, :, :n_inner]
        have = fmap.counts > 0
        first = np.argmax(have, axis=0)
        values = rows[first, np.arange(n_trains)]
        values[~have.any(axis=0)] = 0
        out[:, :values.shape[1]] = values
        return out

    # -- rows ----------------------------------------------------------------------------

    def counts(self, group: str) -> np.ndarray:
        """(n_slots, n_trains) rows per slot and train (0: absent)."""
        fmap = self.det.group_map(group)
        out = np.zeros((self.n_slots, len(self.train_ids)), np.uint64)
        out[self.slots] = fmap.counts
        return out

    def frame_map(self, kp: KeyPlan) -> FrameMap:
        return self.det.group_map(kp.group)

    def blocks(self, kp: KeyPlan) -> Iterator[Block]:
        """Source rows per (slot, train), in slot then train order."""
        fmap = self.frame_map(kp)
        for m, slot in enumerate(self.slots):
            src = fmap.sources[m]
            for t in np.flatnonzero(fmap.counts[m]):
                f = fmap.files[int(fmap.file[m, t])]
                count = int(fmap.counts[m, t]) if kp.per_frame else 1
                yield Block(slot, int(t), Path(f.path), f.dataset_path(src, kp.key),
                            int(fmap.first[m, t]), count,
                            self.lead_index(kp, slot, int(t), count))

    def source_files(self) -> list[Path]:
        return sorted({Path(f.path) for f in self.det.data.files})

    # -- the record ------------------------------------------------------------------------

    def key_record(self, kp: KeyPlan) -> dict[str, Any]:
        return {"group": kp.group, "per_frame": kp.per_frame, "dtype": kp.dtype.str,
                "entry_shape": list(kp.entry_shape), "fill_value": fill_to_json(kp.fill_value),
                "shape": list(self.shape(kp)), "dims": list(self.dims(kp)),
                "squeezed_axes": list(kp.squeezed_axes)}

    def record(self, form: str, *, base: str | os.PathLike[str] | None = None
               ) -> dict[str, Any]:
        """The metadata record every view stores (JSON-serialisable)."""
        det = self.det
        groups = sorted({kp.group for kp in self.keys})
        files = []
        identities = IdentityCache()   # the view's first open then finds them
        for p in self.source_files():
            st = p.stat()
            rel = os.path.relpath(p, base) if base is not None else str(p.resolve())
            files.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime,
                          "identity": recorded_identity(p, identities)})
        identities.save()
        try:
            run_meta = {k: (v.item() if isinstance(v, np.generic) else v)
                        for k, v in det.data.run_metadata().items()}
        except ValueError:
            run_meta = {}
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "form": form,
            "layout": self.layout,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "detstack_version": __version__,
            "detector": {
                "class": type(det).__name__,
                "name": det.detector_name,
                "n_modules": det.n_modules,
                "modules": {str(slot): {"number": int(m), "source": src}
                            for slot, (src, m) in zip(self.slots, det.source_to_modno.items(),
                                                      strict=True)},
                "frames_per_entry": int(det._frames_per_entry),
            },
            "n_trains": len(self.train_ids),
            "max_frames": self.max_frames,
            "n_frames": self.n_frames(),
            "index_groups": groups,
            "fill_convention": FILL_CONVENTION,
            "keys": {kp.key: self.key_record(kp) for kp in self.keys},
            "run_metadata": {k: v for k, v in run_meta.items()
                             if isinstance(v, (str, int, float))},
            "source_files": files,
        }
