"""Deterministic synthetic pixel values, cheap enough to write at disk speed.

A small seeded pool of Poisson photon-count frames is made once per (kind, raw, seed,
mean_photons); every written frame is a copy of one pool frame, picked from
(module, train ID, frame index), with a 3-pixel stamp at the start of row 0 of the main key:
(module number, train ID & 0xFFFF, frame index within the train). So any misplaced frame is
visible, and tests can recompute every value with `frame_values` without storing the run.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._kinds import KINDS, Kind

MASK_FRACTION = 0.001  # share of pixels with a bad-pixel bit set in corrected masks


def main_key(kind: Kind) -> str:
    """The key holding the pixel data (`image.data` for XTDF, `data.adc` for JUNGFRAU)."""
    return "image.data" if kind.xtdf else "data.adc"


def pixel_keys(kind: Kind, raw: bool) -> dict[str, np.dtype]:
    """Every per-pixel key written for this kind, with its dtype."""
    grp = "image" if kind.xtdf else "data"
    keys = {main_key(kind): np.dtype(np.uint16 if raw else np.float32)}
    if not raw or not kind.xtdf:  # raw AGIPD/LPD/DSSC carry gain inside image.data
        keys[f"{grp}.gain"] = np.dtype(np.uint8)
    if not raw:
        keys[f"{grp}.mask"] = np.dtype(np.uint32)
    return keys


def _stage(counts: np.ndarray) -> np.ndarray:
    """A plausible gain stage: high gain (0) for small signals, medium/low for bright pixels."""
    return (counts >= 3).astype(np.uint8) + (counts >= 6).astype(np.uint8)


@lru_cache(maxsize=6)
def pool(kind_name: str, raw: bool, seed: int, mean_photons: float) -> dict[str, np.ndarray]:
    """The pool of ready-to-write frames, per pixel key: arrays (pool_size, *frame_shape)."""
    kind = KINDS[kind_name]
    shape = (kind.pool_size, *kind.module_shape)
    counts = np.random.default_rng([seed, 0]).poisson(mean_photons, size=shape)
    np.minimum(counts, 65535, out=counts)
    stage = _stage(counts)
    out: dict[str, np.ndarray] = {}
    for key, dtype in pixel_keys(kind, raw).items():
        if key == main_key(kind):
            if kind.xtdf and raw:
                planes = [counts, stage] if kind.raw_planes == 2 else [counts]
                arr = np.stack(planes, axis=1).astype(np.uint16)
            else:
                arr = counts.astype(dtype)
        elif key.endswith(".gain"):
            arr = stage
        else:
            rng = np.random.default_rng([seed, 1])
            arr = np.zeros(shape, dtype=np.uint32)
            n_bad = max(1, int(counts.size * MASK_FRACTION))
            where = rng.integers(0, counts.size, n_bad)
            arr.reshape(-1)[where] = np.left_shift(1, rng.integers(0, 20, n_bad)).astype(np.uint32)
        arr.setflags(write=False)
        out[key] = arr
    return out


def pool_index(kind: Kind, modno: int, train_ids: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Which pool frame (module, train, frame) uses: a fixed mix of the three numbers."""
    p = kind.pool_size
    t = (np.asarray(train_ids, dtype=np.uint64) % np.uint64(p)).astype(np.int64)
    f = np.asarray(frames, dtype=np.int64) % p
    return (7 * t + 3 * f + 11 * (modno % p)) % p


def _stamp_index(ndim: int) -> tuple[slice | int, ...]:
    """Index of the 3 stamp pixels in a block (rows, *frame_shape): row 0, columns 0..2."""
    return (slice(None), *([0] * (ndim - 2)), slice(0, 3))


def fill(kind: Kind, frames_pool: dict[str, np.ndarray], key: str, modno: int,
         train_ids: np.ndarray, frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill out[:n] with the frames for (train_ids[i], frames[i]); return that view."""
    n = len(frames)
    block = out[:n]
    src = frames_pool[key]
    for i, j in enumerate(pool_index(kind, modno, train_ids, frames).tolist()):
        block[i] = src[j]  # plain per-frame copies: ~4x faster than np.take on big frames
    if key == main_key(kind):
        stamp = np.empty((n, 3), dtype=np.int64)
        stamp[:, 0] = modno
        stamp[:, 1] = np.asarray(train_ids, dtype=np.uint64) & np.uint64(0xFFFF)
        stamp[:, 2] = frames
        block[_stamp_index(block.ndim)] = stamp.astype(block.dtype)
    return block


def frame_values(kind: str, modno: int, train_id: int, frame: int, *, raw: bool = True,
                 key: str | None = None, seed: int = 0, mean_photons: float = 0.5) -> np.ndarray:
    """The exact values write_run stores for one frame, so tests can check reads anywhere.

    `frame` is the position within the train as stored (XTDF: row offset from INDEX first,
    including LPD parallel-gain stages; JUNGFRAU: memory-cell position in the entry). `key`
    defaults to the main key; others are `image.gain`/`image.mask` or `data.gain`/`data.mask`.
    Returns one frame: raw AGIPD (2, 512, 128), raw LPD/DSSC (1, y, x), otherwise (y, x).
    """
    k = KINDS[kind]
    key = key or main_key(k)
    frames_pool = pool(kind, bool(raw), int(seed), float(mean_photons))
    if key not in frames_pool:
        raise KeyError(f"{kind} {'raw' if raw else 'corrected'} data has no pixel key {key!r}; "
                       f"use one of {sorted(frames_pool)}")
    out = np.empty((1, *frames_pool[key].shape[1:]), dtype=frames_pool[key].dtype)
    return fill(k, frames_pool, key, modno, np.array([train_id], dtype=np.uint64),
                np.array([frame]), out)[0]
