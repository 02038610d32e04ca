"""The realistic value model: what detector frames look like before and after correction.

Raw frames are ADC values: a per-pixel, per-memory-cell pedestal, Gaussian noise, and
photons converted to ADU with the gain stage a pixel switched to (bright pixels switch to
medium/low gain). Corrected frames are float32 energies in keV with noise. Each frame is
`pedestal[cell] + A[j1] + B[j2]` (raw) or `A[j1] + B[j2]` (corrected): A holds photons,
gain switching and half the noise variance, B the other half, from two small pools whose
indexes cycle with co-prime periods. So no two frames of one memory cell within hundreds of
trains share their noise (no compressor can find repeats that real data would not have),
while writing costs two additions per frame. The parameters below are plausible, not
calibrated: they are stated so figures measured on this data can be judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._kinds import KINDS, Kind

DEFAULT_RATE = 0.1    # photons per pixel per frame (mean of the diffuse background)
N_SPOTS = 3           # Bragg-like spots per pool frame
SPOT_PHOTONS = (10.0, 5000.0)  # peak photons of a spot, log-uniform; sigma 0.8 pixel
NOISE_CLIP = 5.0      # noise draws are clipped at this many sigma (keeps sums in range)


@dataclass(frozen=True)
class Response:
    """How one detector kind turns photons into stored numbers (ADU unless said)."""

    pedestal: float             # mean pedestal (high gain)
    pedestal_spread: float      # pixel-to-pixel sigma of the pedestal
    cell_spread: float          # sigma of each memory cell's own pedestal deviation
    pedestal_range: tuple[int, int]
    noise: float                # sigma of the Gaussian noise
    adu_per_photon: tuple[float, ...]   # per gain stage: high, medium, low
    switch_at: tuple[float, ...]        # photons at which the next stage takes over
    stage_offset: tuple[float, ...]     # data offset per stage (relative to high gain)
    adc_max: int                # largest ADC value (2**bits - 1)
    gain_shift: int | None      # gain code stored in the data word's top bits, from this bit
    gain_codes: tuple[int, ...]         # gain code per stage
    memory_cells: int           # cells the pedestal table cycles through
    photon_kev: float           # photon energy of the corrected data
    gain_adc: tuple[float, float, float, tuple[float, ...]] | None = None
    # raw AGIPD's gain plane: (pedestal, pixel spread, noise, offset per stage)


RESPONSES: dict[str, Response] = {
    # AGIPD: 14-bit ADC, pedestals ~4000-6000, ~12 ADU noise, ~60 ADU per 9.3 keV photon in
    # high gain, medium/low gain 33x and 7.5x less; the gain plane ~4000-6000 with its own
    # noise, higher in medium/low gain (what calibration thresholds on).
    "AGIPD": Response(5000, 250, 30, (4000, 6000), 12, (60.0, 1.8, 0.24), (100, 3000),
                      (0, -800, -1600), 16383, None, (0, 1, 2), 352, 9.3,
                      gain_adc=(5000, 200, 8, (0, 1500, 3000))),
    # LPD: 12-bit ADC (gain code in bits 12-13 of the raw word), pedestals ~900-1500,
    # ~6 ADU noise, ~20 ADU per 9.3 keV photon in high gain, gain stages x10 apart.
    "LPD": Response(1200, 100, 20, (900, 1500), 6, (20.0, 2.0, 0.2), (100, 1000),
                    (0, -100, -200), 4095, 12, (0, 1, 2), 512, 9.3),
    # DSSC: 9-bit ADC, pedestals ~20-60, ~1.5 ADU noise, ~6 ADU per 0.9 keV photon, no
    # gain switching (bright pixels saturate at 511).
    "DSSC": Response(40, 8, 2, (20, 60), 1.5, (6.0,), (), (0,), 511, None, (0,), 800, 0.9),
    # JUNGFRAU: 14-bit ADC with the gain code in bits 14-15 (G0=0, G1=1, G2=3), pedestals
    # ~1500-2500, ~12 ADU noise, ~40 ADU/keV in G0, G1 30x and G2 20x less.
    "JNGFR": Response(2000, 200, 20, (1500, 2500), 12, (372.0, 12.4, 0.6), (30, 1000),
                      (0, -500, -1000), 16383, 14, (0, 1, 3), 16, 9.3),
}


def response(kind: Kind) -> Response:
    return RESPONSES[kind.aggregator]


def photon_energy(kind: str) -> float:
    """Photon energy of a kind's synthetic corrected data: the scale lossy modes need.

    Parameters
    ----------
    kind : str
        The detector kind, e.g. ``'AGIPD1M'``.

    Returns
    -------
    float
        Photon energy in keV.
    """
    return response(KINDS[kind]).photon_kev


def _photons(kind: Kind, rng: np.random.Generator, rate: float) -> np.ndarray:
    """(pool, y, x) photon counts: a Poisson background plus a few bright spots per frame."""
    shape = (kind.pool_size, *kind.module_shape)
    counts = rng.poisson(rate, size=shape).astype(np.int64)
    yy, xx = np.mgrid[-3:4, -3:4]
    profile = np.exp(-(yy**2 + xx**2) / (2 * 0.8**2))
    ny, nx = kind.module_shape
    for frame in counts:
        for _ in range(N_SPOTS):
            y, x = int(rng.integers(3, ny - 3)), int(rng.integers(3, nx - 3))
            peak = np.exp(rng.uniform(*np.log(SPOT_PHOTONS)))
            frame[y - 3:y + 4, x - 3:x + 4] += rng.poisson(peak * profile)
    return counts


def gain_stage(resp: Response, counts: np.ndarray) -> np.ndarray:
    """The gain stage (0 high, 1 medium, 2 low) each pixel switches to."""
    stage = np.zeros(counts.shape, np.uint8)
    for threshold in resp.switch_at:
        stage += counts >= threshold
    return stage


def _noise(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """Half the noise variance, clipped at NOISE_CLIP sigma."""
    s = sigma / np.sqrt(2.0)
    return np.clip(rng.normal(0.0, s, size=shape), -NOISE_CLIP * s, NOISE_CLIP * s)


def _as_word(values: np.ndarray) -> np.ndarray:
    """Signed integers as uint16 words: adding words wraps mod 2**16, so a pedestal plus
    these gives the exact signed sum whenever the true result is in 0..65535."""
    return (np.rint(values).astype(np.int64) & 0xFFFF).astype(np.uint16)


def _plane(resp: Response, counts: np.ndarray, stage: np.ndarray, rng: np.random.Generator,
           noise: float, offsets: tuple[float, ...], per_photon: tuple[float, ...] | None,
           ped_hi: int, ped_lo: int) -> tuple[np.ndarray, np.ndarray]:
    """Pools A (signal + noise) and B (noise) of one raw plane, as uint16 words."""
    off = np.asarray(offsets, np.float64)[stage]
    signal = off if per_photon is None else off + counts * np.asarray(per_photon)[stage]
    b = np.rint(_noise(rng, noise, counts.shape))
    a = np.rint(signal + _noise(rng, noise, counts.shape))
    # saturate so that pedestal + A + B always stays inside the ADC range
    np.clip(a, -ped_lo - b.min(), resp.adc_max - ped_hi - b.max(), out=a)
    if resp.gain_shift is not None:
        a += np.asarray(resp.gain_codes, np.int64)[stage] << resp.gain_shift
    return _as_word(a), _as_word(b)


@dataclass(frozen=True)
class RawPools:
    """A and B pools of the main raw key, (pool, *frame) uint16 words, and the gain stage."""

    a: np.ndarray
    b: np.ndarray
    stage: np.ndarray


def raw_pools(kind: Kind, seed: int, rate: float) -> RawPools:
    resp = response(kind)
    rng = np.random.default_rng([seed, 10])
    counts = _photons(kind, rng, rate)
    stage = gain_stage(resp, counts)
    lo, hi = resp.pedestal_range
    a, b = _plane(resp, counts, stage, rng, resp.noise, resp.stage_offset, resp.adu_per_photon,
                  hi, lo)
    if kind.xtdf and kind.raw_planes == 2:
        assert resp.gain_adc is not None
        gped, gspread, gnoise, goff = resp.gain_adc
        ga, gb = _plane(resp, counts, stage, rng, gnoise, goff, None, hi, lo)
        a, b = np.stack([a, ga], axis=1), np.stack([b, gb], axis=1)
    elif kind.xtdf:
        a, b = a[:, None], b[:, None]
    return RawPools(a, b, stage)


def corrected_pools(kind: Kind, seed: int, rate: float) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """A (energy + noise), B (noise), float32 keV; and the gain stage."""
    resp = response(kind)
    rng = np.random.default_rng([seed, 11])
    counts = _photons(kind, rng, rate)
    sigma = resp.noise / resp.adu_per_photon[0] * resp.photon_kev
    a = (counts * resp.photon_kev + _noise(rng, sigma, counts.shape)).astype(np.float32)
    b = _noise(rng, sigma, counts.shape).astype(np.float32)
    return a, b, gain_stage(resp, counts)


@lru_cache(maxsize=4)
def _pixel_pedestal(kind_name: str, seed: int) -> np.ndarray:
    """Per-pixel mean pedestal of every raw plane, (planes, y, x) float64."""
    kind = KINDS[kind_name]
    resp = response(kind)
    rng = np.random.default_rng([seed, 12])
    planes = [(resp.pedestal, resp.pedestal_spread)]
    if kind.xtdf and kind.raw_planes == 2 and resp.gain_adc is not None:
        planes.append(resp.gain_adc[:2])
    return np.stack([rng.normal(m, s, size=kind.module_shape) for m, s in planes])


@lru_cache(maxsize=1024)
def pedestal(kind_name: str, seed: int, cell: int) -> np.ndarray:
    """The pedestal of one memory cell, shaped like one raw frame (uint16, read-only).

    Shared by every module (a compressor never sees two modules in one chunk).
    """
    kind = KINDS[kind_name]
    resp = response(kind)
    base = _pixel_pedestal(kind_name, seed)
    rng = np.random.default_rng([seed, 13, cell % resp.memory_cells])
    ped = base + rng.normal(0.0, resp.cell_spread, size=base.shape)
    lo, hi = resp.pedestal_range
    out = np.clip(np.rint(ped), lo, hi).astype(np.uint16)
    out = out if kind.xtdf else out[0]
    out.setflags(write=False)
    return out
