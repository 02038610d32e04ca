"""The realistic value model: raw frames look like ADC data, corrected ones like keV.

Statistics are taken on the model's own frames (`frame_values`, which tests elsewhere
check equal to what write_run stores), far from the thresholds asserted.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from detstack import synth

TRAINS = range(10000, 10012)


def frames(kind: str, modno: int, cell: int, raw: bool = True, key: str | None = None
           ) -> np.ndarray:
    """One cell's frames over TRAINS, with the 3 stamp pixels of row 0 dropped."""
    out = np.stack([synth.frame_values(kind, modno, t, cell, raw=raw, key=key) for t in TRAINS])
    return out[..., 1:, :]


def test_agipd_raw_is_pedestal_noise_photons() -> None:
    f = frames("AGIPD1M", 3, 5).astype(np.int64)        # (train, plane, y, x)
    data, gain = f[:, 0], f[:, 1]
    assert 4000 <= np.median(data) <= 6000 and 4000 <= np.median(gain) <= 6000
    assert 150 < data[0].std() < 600                     # pedestals differ pixel to pixel
    # the same cell in other trains: the same pedestal, new noise
    diff = data[1:] - data[:-1]
    quiet = (np.abs(diff) < 60).mean(axis=0) == 1        # pixels with no photon in 12 trains
    assert 0.15 < quiet.mean() < 0.6       # exp(-0.1 * 12) = 0.3 have no photon
    sigma = diff[:, quiet].std() / np.sqrt(2)
    assert 10 <= sigma <= 15
    # a photon adds ~60 ADU in high gain: a second peak above the pedestal
    above = (data - np.median(data, axis=0)).astype(np.int64).ravel()
    hist = np.bincount(np.clip(above, 0, 200))
    peak = 40 + int(np.argmax(hist[40:90]))
    assert 50 <= peak <= 70 and hist[peak] > 2 * hist[25:45].min()
    # bright (Bragg-like) pixels switch gain: the gain plane jumps by >1000 there
    assert ((gain - np.median(gain, axis=0)) > 1000).any()
    assert f.max() <= 16383                              # 14-bit ADC


def test_other_cells_have_other_pedestals() -> None:
    a = frames("AGIPD1M", 3, 5)[:, 0].astype(np.int64)
    b = frames("AGIPD1M", 3, 6)[:, 0].astype(np.int64)
    per_cell = np.median(a, axis=0) - np.median(b, axis=0)
    assert 20 < per_cell.std() < 100


@pytest.mark.parametrize(("kind", "shift", "adc_max"), [("JUNGFRAU", 14, 16383),
                                                        ("LPD1M", 12, 4095)])
def test_gain_code_in_top_bits(kind: str, shift: int, adc_max: int) -> None:
    modno = 1
    found = []
    for t in TRAINS:
        word = synth.frame_values(kind, modno, t, 2)[..., 1:, :]
        code, adc = word >> shift, word & ((1 << shift) - 1)
        assert adc.max() <= adc_max
        found.append(np.unique(code))
        if kind == "JUNGFRAU":   # data.gain holds the same stage (code 3 is G2)
            gain = synth.frame_values(kind, modno, t, 2, key="data.gain")[1:]
            np.testing.assert_array_equal(np.array([0, 1, 2, 2])[code], gain)
    codes = set(np.concatenate(found).tolist())
    assert codes == ({0, 1, 3} if kind == "JUNGFRAU" else {0, 1, 2})


def test_dssc_is_a_9_bit_adc() -> None:
    f = frames("DSSC1M", 0, 1)
    assert f.max() <= 511 and 20 <= np.median(f) <= 60


def test_corrected_is_kev_with_noise() -> None:
    f = frames("AGIPD1M", 3, 5, raw=False)
    e = synth.photon_energy("AGIPD1M")
    assert f.dtype == np.float32
    assert 0.07 * e < f.clip(-5 * e, 5 * e).mean() < 0.15 * e   # ~0.1 photons/pixel
    assert f.max() > 100 * e                                     # and a few bright spots
    assert 0.1 * e < np.median(np.abs(f - np.round(f / e) * e)) < 0.2 * e   # noise
    assert not np.array_equal(f[0], f[1])
    gain = frames("AGIPD1M", 3, 5, raw=False, key="image.gain")
    assert set(np.unique(gain).tolist()) <= {0, 1, 2} and (gain > 0).any()


def test_values_reach_the_files(tmp_path: Path) -> None:
    paths = synth.write_run(tmp_path, "AGIPD1M", modules=[2], n_trains=3, frames_per_train=4,
                            with_control=False, mean_photons=0.3, seed=4)
    with h5py.File(paths[0]) as f:
        data = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/2CH0:xtdf/image/data"][:12]
    for i in range(12):
        np.testing.assert_array_equal(
            data[i], synth.frame_values("AGIPD1M", 2, 10000 + i // 4, i % 4, seed=4,
                                        mean_photons=0.3))
    assert np.median(data[:, 0]) > 4000


def test_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="values must be one of"):
        synth.write_run(tmp_path / "r", values="poisson")
    assert not (tmp_path / "r").exists()
