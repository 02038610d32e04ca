"""What a view holds: the frame map of a detector laid out as one array per key.

Every writer (HDF5 virtual view, zarr manifest, zarr store) lays out the same
content, described here once:

* one array per key, shaped ``(module slot, train, frame, *entry)`` for keys
  with one row per frame (``image.*``), ``(module slot, train, *entry)`` for keys
  with one row per train (JUNGFRAU ``data.*``, headers); the module axis covers
  every slot of the detector (``n_modules``), so absent modules read as fill;
* frame ``p`` of train ``t`` is the ``p``-th row the module stored for that
  train (pulse/cell IDs are themselves keys, e.g. ``image.pulseId``);
* coordinates: train IDs, module numbers per slot, and row counts per index
  group and (slot, train);
* a metadata record (``schemas/view-record.schema.json``) from which
  ``detstack.store`` rebuilds a collection that every detector class accepts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..detectors.base import MultimodDetectorBase
from ..detectors.consistency import check_key
from ..frames import FrameMap
from ..store.identity import file_identity

SCHEMA_VERSION = 1
FORMAT_NAME = "detstack-view"


@dataclass(frozen=True)
class KeyPlan:
    """One key of the view and where its rows come from."""

    key: str
    group: str
    per_frame: bool              # rows are frames (train, frame axes) or trains (train axis)
    dtype: np.dtype
    entry_shape: tuple[int, ...]
    fill_value: Any

    @property
    def path(self) -> str:
        """Dataset/array name in the view: the key with '.' kept ('image.data')."""
        return self.key


@dataclass(frozen=True)
class Block:
    """Rows ``src_start:src_start+count`` of ``file``/``dataset`` go to
    ``view[slot, train, 0:count]`` (per-frame keys) or ``view[slot, train]``."""

    slot: int
    train: int
    file: Path
    dataset: str
    src_start: int
    count: int


def as_detector(det_or_run: Any, detector_name: str | None = None,
                **det_kwargs: Any) -> MultimodDetectorBase:
    """A detector object from a detector, or the single detector of a run/view."""
    if isinstance(det_or_run, MultimodDetectorBase):
        return det_or_run
    from ..detectors.identify import identify_multimod_detectors
    name, cls = identify_multimod_detectors(det_or_run, detector_name, single=True)
    return cls(det_or_run, name, **det_kwargs)


class ViewPlan:
    """The layout of a view of one detector, shared by every writer."""

    def __init__(self, det: MultimodDetectorBase, keys: list[str] | None = None) -> None:
        self.det = det
        self.train_ids = np.asarray(det.frame_map.train_ids, dtype=np.uint64)
        self.n_slots = det.n_modules
        self.slots = [det.module_slot(m) for m in det.modules]
        self.max_frames = int(det.frame_map.train_counts().max()) if len(self.train_ids) else 0
        self.keys = [self._key_plan(k) for k in (keys or self.default_keys())]

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
        fill = np.nan if dtype.kind in "fc" else 0
        return KeyPlan(key, group, per_frame, dtype, tuple(entry), fill)

    def key(self, key: str) -> KeyPlan:
        for kp in self.keys:
            if kp.key == key:
                return kp
        raise KeyError(key)

    def shape(self, kp: KeyPlan) -> tuple[int, ...]:
        frames = (self.max_frames,) if kp.per_frame else ()
        return (self.n_slots, len(self.train_ids)) + frames + kp.entry_shape

    def frame_map(self, kp: KeyPlan) -> FrameMap:
        return self.det.group_map(kp.group)

    def counts(self, group: str) -> np.ndarray:
        """(n_slots, n_trains) rows per slot and train (0: absent)."""
        fmap = self.det.group_map(group)
        out = np.zeros((self.n_slots, len(self.train_ids)), np.uint64)
        out[self.slots] = fmap.counts
        return out

    def blocks(self, kp: KeyPlan) -> Iterator[Block]:
        """Source rows per (slot, train), in slot then train order."""
        fmap = self.frame_map(kp)
        for m, slot in enumerate(self.slots):
            src = fmap.sources[m]
            for t in np.flatnonzero(fmap.counts[m]):
                f = fmap.files[int(fmap.file[m, t])]
                count = int(fmap.counts[m, t]) if kp.per_frame else 1
                yield Block(slot, int(t), Path(f.path), f.dataset_path(src, kp.key),
                            int(fmap.first[m, t]), count)

    def source_files(self) -> list[Path]:
        return sorted({Path(f.path) for f in self.det.data.files})

    def record(self, form: str, *, base: str | os.PathLike[str] | None = None
               ) -> dict[str, Any]:
        """The metadata record every view stores (JSON-serialisable)."""
        det = self.det
        groups = sorted({kp.group for kp in self.keys})
        files = []
        for p in self.source_files():
            st = p.stat()
            rel = os.path.relpath(p, base) if base is not None else str(p.resolve())
            files.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime,
                          "identity": file_identity(p)})
        try:
            run_meta = {k: (v.item() if isinstance(v, np.generic) else v)
                        for k, v in det.data.run_metadata().items()}
        except ValueError:
            run_meta = {}
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "form": form,
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
            "index_groups": groups,
            "keys": {kp.key: {"group": kp.group, "per_frame": kp.per_frame,
                              "dtype": kp.dtype.str, "entry_shape": list(kp.entry_shape),
                              "fill_value": None if isinstance(kp.fill_value, float)
                              and np.isnan(kp.fill_value) else kp.fill_value}
                     for kp in self.keys},
            "run_metadata": {k: v for k, v in run_meta.items()
                             if isinstance(v, (str, int, float))},
            "source_files": files,
        }
