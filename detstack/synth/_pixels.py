"""Deterministic synthetic pixel values, cheap enough to write at disk speed.

Two value models (`values=`):

- "realistic" (default; see `_values`): raw frames are pedestal[cell] + A + B (ADC values
  with noise, photons, gain switching), corrected frames A + B (keV with noise);
- "photons": Poisson photon counts, as stored by the earliest versions of this generator.

Small seeded pools of frames are made once per (kind, raw, seed, rate, model); every
written frame is built from pool frames picked from (module, train ID, frame index), with
a 3-pixel stamp at the start of row 0 of the main key: (module number, train ID & 0xFFFF,
frame index within the train). So any misplaced frame is visible, and tests can recompute
every value with `frame_values` without storing the run.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._kinds import KINDS, Kind
from ._values import DEFAULT_RATE, corrected_pools, pedestal, raw_pools, response

MASK_FRACTION = 0.001  # share of pixels with a bad-pixel bit set in corrected masks
VALUE_MODELS = ("realistic", "photons")
DEFAULT_PHOTONS = {"realistic": DEFAULT_RATE, "photons": 0.5}  # default mean_photons


class FramePool(dict[str, np.ndarray]):
    """Per pixel key, the pool of frames (pool_size, *frame_shape) written from.

    `noise[key]` (realistic model): a second pool added to the first; `cells`: the kind
    has a pedestal per memory cell added to the main raw key.
    """

    def __init__(self, frames: dict[str, np.ndarray], noise: dict[str, np.ndarray] | None = None,
                 kind_name: str = "", seed: int = 0, pedestals: bool = False) -> None:
        super().__init__(frames)
        self.noise = noise or {}
        self.kind_name, self.seed, self.pedestals = kind_name, seed, pedestals


def main_key(kind: Kind) -> str:
    """The key holding the pixel data.

    Parameters
    ----------
    kind : Kind
        A synthetic detector kind (`KINDS[name]`).

    Returns
    -------
    str
        `image.data` for XTDF detectors, `data.adc` for JUNGFRAU.
    """
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


def _mask(kind: Kind, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    arr = np.zeros(shape, dtype=np.uint32)
    size = int(np.prod(shape))
    n_bad = max(1, int(size * MASK_FRACTION))
    where = rng.integers(0, size, n_bad)
    arr.reshape(-1)[where] = np.left_shift(1, rng.integers(0, 20, n_bad)).astype(np.uint32)
    return arr


def _frozen(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=6)
def pool(kind_name: str, raw: bool, seed: int, mean_photons: float,
         values: str = "realistic") -> FramePool:
    """The pools of frames to write from, per pixel key (see FramePool)."""
    if values == "photons":
        return FramePool(_photon_pool(kind_name, raw, seed, mean_photons))
    if values != "realistic":
        raise ValueError(f"values must be one of {VALUE_MODELS}, got {values!r}")
    kind = KINDS[kind_name]
    shape = (kind.pool_size, *kind.module_shape)
    keys = pixel_keys(kind, raw)
    main = main_key(kind)
    frames: dict[str, np.ndarray] = {}
    noise: dict[str, np.ndarray] = {}
    if raw:
        pools = raw_pools(kind, seed, mean_photons)
        frames[main], noise[main], stage = pools.a, pools.b, pools.stage
    else:
        frames[main], noise[main], stage = corrected_pools(kind, seed, mean_photons)
    for key in keys:
        if key.endswith(".gain"):
            frames[key] = stage
        elif key.endswith(".mask"):
            frames[key] = _mask(kind, seed, shape)
    frames = _frozen({k: frames[k] for k in keys})
    return FramePool(frames, _frozen({k: v[:kind.pool_size - 1] for k, v in noise.items()}),
                     kind_name, seed, pedestals=raw)


def _photon_pool(kind_name: str, raw: bool, seed: int, mean_photons: float
                 ) -> dict[str, np.ndarray]:
    """The "photons" model: Poisson counts; raw AGIPD's gain plane is a gain stage."""
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
            arr = _mask(kind, seed, shape)
        out[key] = arr
    return _frozen(out)


def pool_index(kind: Kind, modno: int, train_ids: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Which pool frame (module, train, frame) uses: a fixed mix of the three numbers."""
    p = kind.pool_size
    t = (np.asarray(train_ids, dtype=np.uint64) % np.uint64(p)).astype(np.int64)
    f = np.asarray(frames, dtype=np.int64) % p
    return (7 * t + 3 * f + 11 * (modno % p)) % p


def noise_index(kind: Kind, modno: int, train_ids: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Which frame of the second (noise) pool, of pool_size - 1 frames: co-prime with the
    first, so the pair of pool frames of one memory cell repeats only after
    pool_size * (pool_size - 1) trains."""
    q = kind.pool_size - 1
    t = (np.asarray(train_ids, dtype=np.uint64) % np.uint64(q)).astype(np.int64)
    f = np.asarray(frames, dtype=np.int64) % q
    return (t + 13 * f + 3 * (modno % q)) % q


def _stamp_index(ndim: int) -> tuple[slice | int, ...]:
    """Index of the 3 stamp pixels in a block (rows, *frame_shape): row 0, columns 0..2."""
    return (slice(None), *([0] * (ndim - 2)), slice(0, 3))


def fill(kind: Kind, frames_pool: FramePool, key: str, modno: int,
         train_ids: np.ndarray, frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill out[:n] with the frames for (train_ids[i], frames[i]); return that view."""
    n = len(frames)
    block = out[:n]
    src = frames_pool[key]
    first = pool_index(kind, modno, train_ids, frames).tolist()
    noise = frames_pool.noise.get(key)
    if noise is None:
        for i, j in enumerate(first):
            block[i] = src[j]  # plain per-frame copies: ~4x faster than np.take on big frames
    else:
        second = noise_index(kind, modno, train_ids, frames).tolist()
        cells = response(kind).memory_cells
        for i, (j, k) in enumerate(zip(first, second, strict=True)):
            if frames_pool.pedestals:  # uint16 words: the sum wraps to the exact value
                ped = pedestal(frames_pool.kind_name, frames_pool.seed, int(frames[i]) % cells)
                np.add(ped, src[j], out=block[i])
                np.add(block[i], noise[k], out=block[i])
            else:
                np.add(src[j], noise[k], out=block[i])
    if key == main_key(kind):
        stamp = np.empty((n, 3), dtype=np.int64)
        stamp[:, 0] = modno
        stamp[:, 1] = np.asarray(train_ids, dtype=np.uint64) & np.uint64(0xFFFF)
        stamp[:, 2] = frames
        block[_stamp_index(block.ndim)] = stamp.astype(block.dtype)
    return block


def frame_values(kind: str, modno: int, train_id: int, frame: int, *, raw: bool = True,
                 key: str | None = None, seed: int = 0, mean_photons: float | None = None,
                 values: str = "realistic") -> np.ndarray:
    """The exact values write_run stores for one frame, so tests can check reads anywhere.

    Parameters
    ----------
    kind : str
        The detector kind, as given to `write_run`.
    modno : int
        Module number.
    train_id : int
        Train ID.
    frame : int
        Position within the train as stored (XTDF: row offset from INDEX first,
        including LPD parallel-gain stages; JUNGFRAU: memory-cell position in the entry).
    raw : bool, default True
        Raw or corrected data.
    key : str, optional
        The pixel key (default the main key; others are `image.gain`/`image.mask` or
        `data.gain`/`data.mask`).
    seed : int, default 0
        As given to `write_run`.
    mean_photons : float, optional
        As given to `write_run` (default: the model's).
    values : str, default 'realistic'
        The value model, as given to `write_run`.

    Returns
    -------
    numpy.ndarray
        One frame: raw AGIPD (2, 512, 128), raw LPD/DSSC (1, y, x), otherwise (y, x).

    Raises
    ------
    KeyError
        The kind's data has no such pixel key.
    """
    k = KINDS[kind]
    key = key or main_key(k)
    rate = DEFAULT_PHOTONS.get(values, 0.5) if mean_photons is None else mean_photons
    frames_pool = pool(kind, bool(raw), int(seed), float(rate), values)
    if key not in frames_pool:
        raise KeyError(f"{kind} {'raw' if raw else 'corrected'} data has no pixel key {key!r}; "
                       f"use one of {sorted(frames_pool)}")
    out = np.empty((1, *frames_pool[key].shape[1:]), dtype=frames_pool[key].dtype)
    return fill(k, frames_pool, key, modno, np.array([train_id], dtype=np.uint64),
                np.array([frame]), out)[0]
