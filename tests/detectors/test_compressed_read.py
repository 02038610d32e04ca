"""Compressed sources (deflate, shuffle+deflate) read by detstack's own chunk decoder.

The oracle is plain h5py (HDF5's own filters) on the same files; damaged chunks must
give a ``CorruptChunkError`` naming module, file, dataset and train, on our decoder
and on the HDF5 fallback alike.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

import detstack
from detstack import by_index, synth
from detstack.convert import to_zarr
from detstack.detectors import deflate
from detstack.errors import CorruptChunkError

FRAMES = 5


def h5py_frames(run: Path, key: str, modules: list[int]) -> np.ndarray:
    """(module, frame, ...) of every indexed frame of ``key``, read with plain h5py."""
    group, name = key.split(".")
    per_module = []
    for m in modules:
        parts = []
        for path in sorted(run.glob(f"CORR-*-AGIPD{m:02d}-S*.h5")):
            with h5py.File(path, "r") as f:
                src = f"SPB_DET_AGIPD1M-1/CORR/{m}CH0:output"
                first = f[f"INDEX/{src}/{group}/first"][:]
                count = f[f"INDEX/{src}/{group}/count"][:]
                ds = f[f"INSTRUMENT/{src}/{group}/{name}"]
                parts += [ds[int(a):int(a) + int(c)] for a, c in zip(first, count, strict=True)
                          if c]
        per_module.append(np.concatenate(parts))
    return np.stack(per_module)


@pytest.fixture(scope="module", params=[("deflate", 1), ("shuffle-deflate", 1),
                                        ("shuffle-deflate", 3), ("deflate", 7)])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Corrected AGIPD, 2 modules, 6 trains x 5 frames; chunks of 1, 3 or 7 frames (not
    aligned with trains; the last chunk of each file is partial), files of 4 trains."""
    layout, per_chunk = request.param
    path = tmp_path_factory.mktemp(f"{layout}{per_chunk}")
    synth.write_run(path, "AGIPD1M", raw=False, n_trains=6, frames_per_train=FRAMES,
                    modules=[0, 3], layout=layout, frames_per_chunk=per_chunk,
                    trains_per_file=4, with_control=False)
    return path


@pytest.mark.parametrize("key", ["image.data", "image.gain", "image.mask"])
def test_whole_key_equals_h5py(run: Path, key: str) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    got = det[key].ndarray()
    assert np.array_equal(got, h5py_frames(run, key, [0, 3]))
    assert got.any()


def test_selections_equal_h5py(run: Path) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    full = h5py_frames(run, "image.data", [0, 3]).reshape(2, 6, FRAMES, 512, 128)
    sel = det.select_trains(by_index[1:5])
    assert np.array_equal(sel["image.data"].ndarray(), full[:, 1:5].reshape(2, -1, 512, 128))
    pulses = det["image.data"].select_pulses(by_index[[0, 2, 3]]).ndarray()
    assert np.array_equal(pulses, full[:, :, [0, 2, 3]].reshape(2, -1, 512, 128))
    one = detstack.AGIPD1M(detstack.RunDirectory(run), modules=[3])
    assert np.array_equal(one["image.data"].ndarray(), full[1:].reshape(1, -1, 512, 128))
    roi = det["image.data"].ndarray(roi=np.s_[10:20, ::3])
    assert np.array_equal(roi, full.reshape(2, -1, 512, 128)[:, :, 10:20, ::3])
    as64 = det["image.data"].ndarray(astype=np.float64)
    assert as64.dtype == np.float64 and np.array_equal(as64, full.reshape(2, -1, 512, 128))
    with h5py.File(next(run.glob("CORR-*-AGIPD03-S00000.h5"))) as f:   # HDF5's conversion
        ds = f["INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/3CH0:output/image/data"]
        as_int = np.empty((FRAMES, 512, 128), np.int8)      # this file starts at train 0
        ds.read_direct(as_int, np.s_[:FRAMES])
    assert np.array_equal(det["image.data"].ndarray(astype=np.int8)[1, :FRAMES], as_int)
    arr = det.get_array("image.data", pulses=by_index[1:3])
    assert np.array_equal(arr.values, full[:, :, 1:3])


def test_every_inflate_library_agrees(run: Path) -> None:
    with h5py.File(next(run.glob("CORR-*-AGIPD00-S00000.h5"))) as f:
        ds = f["INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/0CH0:output/image/data"]
        filters = tuple(ds.id.get_create_plist().get_filter(i)[0]
                        for i in range(ds.id.get_create_plist().get_nfilters()))
        mask, raw = ds.id.read_direct_chunk((0, 0, 0))
        expected = ds[:ds.chunks[0]]
    names = []
    for name, inflate, _ in deflate.INFLATERS:
        out = np.empty_like(expected)
        deflate.ChunkDecoder(filters, expected.nbytes, 4, inflate).decode(raw, mask, out)
        assert np.array_equal(out, expected), name
        names.append(name)
    assert "zlib" in names
    out = np.empty_like(expected)
    data = deflate._inflate(raw, bufsize=expected.nbytes)
    if len(filters) == 2:
        deflate._numpy_unshuffle(data, out, 4)
        assert np.array_equal(out, expected)


def _damage(path: Path, dset: str, row: int, how: str) -> None:
    """Damage the stored chunk holding ``row`` in place (found via get_chunk_info)."""
    with h5py.File(path, "r") as f:
        ds = f[dset]
        info = ds.id.get_chunk_info_by_coord((row - row % ds.chunks[0], 0, 0))
        offset, size = info.byte_offset, info.size
    with open(path, "r+b") as fh:
        if how == "flip":
            fh.seek(offset + size // 2)
            chunk = bytearray(fh.read(64))
            fh.seek(offset + size // 2)
            fh.write(bytes(b ^ 0x5A for b in chunk))
        else:              # a valid deflate stream of the wrong length
            import zlib
            short = zlib.compress(b"\0" * 100, 1)
            assert len(short) <= size
            fh.seek(offset)
            fh.write(short)


@pytest.mark.parametrize("how", ["flip", "short"])
def test_corrupt_chunk_is_a_typed_error(tmp_path: Path, how: str) -> None:
    synth.write_run(tmp_path, "AGIPD1M", raw=False, n_trains=3, frames_per_train=4,
                    modules=[2], layout="shuffle-deflate", with_control=False)
    path = next(tmp_path.glob("CORR-*-AGIPD02-S00000.h5"))
    dset = "INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/2CH0:output/image/data"
    _damage(path, dset, 6, how)          # train 10001, frame 2
    det = detstack.AGIPD1M(detstack.RunDirectory(tmp_path))
    readers = [lambda: det["image.data"].ndarray(),
               lambda: det["image.data"].ndarray(astype=np.int16),
               lambda: det.get_array("image.data", pulses=by_index[2:3])]
    for read in readers:
        with pytest.raises(CorruptChunkError) as err:
            read()
        msg = str(err.value)
        for part in (path.name, "image/data", "module 2", "train 10001"):
            assert part in msg, (part, msg)
    # the frames around it still read
    good = det.select_trains(by_index[[0, 2]])["image.data"].ndarray()
    assert good.shape == (1, 8, 512, 128) and good.any()
    # converting to a zarr store stops at the damaged chunk too
    with pytest.raises(CorruptChunkError, match="train 10001"):
        to_zarr(det, tmp_path / "out.zarr", keys=["image.data"])


def test_to_zarr_from_compressed_equals_h5py(run: Path, tmp_path: Path) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    to_zarr(det, tmp_path / "s.zarr", keys=["image.data", "image.mask"], threads=2)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    for key in ("image.data", "image.mask"):
        want = h5py_frames(run, key, [0, 3]).reshape((2, 6, FRAMES) + g[key].shape[3:])
        np.testing.assert_array_equal(g[key][[0, 3]], want)
