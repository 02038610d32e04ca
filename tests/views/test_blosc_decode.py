"""The blosc decoder of the store reader: python-blosc2 (C-Blosc2) reads the C-Blosc1
frames zarr writes, exactly as numcodecs does, and refuses frames it cannot trust."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest

from detstack.store import blosc_decode


@pytest.fixture(scope="module")
def frames() -> list[tuple[bytes, np.ndarray]]:
    rng = np.random.default_rng(3)
    pedestal = rng.normal(5000, 300, (2, 64, 128)).astype(np.uint16)
    out = []
    for cname, shuffle, typesize, blocksize in [("zstd", 2, 2, 1 << 20), ("lz4", 1, 2, 0),
                                                ("zstd", 0, 4, 1 << 16), ("blosclz", 2, 1, 0)]:
        data = (pedestal[None] + rng.normal(0, 12, (8, 2, 64, 128))).astype(np.uint16)
        flat = np.frombuffer(data.tobytes(), np.uint8)
        codec = numcodecs.Blosc(cname=cname, clevel=1, shuffle=shuffle, blocksize=blocksize,
                                typesize=typesize)
        out.append((bytes(codec.encode(flat)), flat))
    return out


def test_decoder_is_blosc2() -> None:      # the test extra installs python-blosc2
    assert blosc_decode.decoder_name() == "blosc2"


def test_both_decoders_match_numcodecs(frames: list[tuple[bytes, np.ndarray]]) -> None:
    decoders = [blosc_decode._numcodecs_decoder()]
    fast = blosc_decode._blosc2_decoder()
    assert fast is not None
    decoders.append(fast)
    for blob, want in frames:
        for decode in decoders:
            out = np.zeros(want.nbytes, np.uint8)
            decode(blob, out)
            np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(blosc_decode.decode_blosc(blob), want)


def test_refuses_wrong_size_and_damage(frames: list[tuple[bytes, np.ndarray]]) -> None:
    blob, want = frames[0]
    with pytest.raises(ValueError, match="states"):
        blosc_decode.decode_blosc(blob, np.empty(want.nbytes - 2, np.uint8))
    with pytest.raises(ValueError, match="header"):
        blosc_decode.decode_blosc(blob[:10])
    cut = blob[: len(blob) // 2]
    with pytest.raises(ValueError):
        blosc_decode.decode_blosc(cut, np.empty(want.nbytes, np.uint8))
