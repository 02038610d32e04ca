"""detstack's own shard decoder for local zarr stores, against zarr-python and the run."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)
from zarr_store_helpers import make_run, open_det, view_det

from detstack.convert import to_zarr
from detstack.errors import FileFormatError, MissingDataError
from detstack.store.zarr_shards import ShardedArray

INDEXES = [(), (1,), (0, 2), (1, slice(1, 4)), (slice(None), 1, slice(0, 5), 3),
           (2, slice(2, 3), slice(1, None, 2), slice(None), slice(0, 7, 3)),
           (-1, -1), (slice(3, 3),)]


@pytest.mark.parametrize("codecs,order", [
    ([BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")], None),
    ([ZstdCodec(level=3), Crc32cCodec()], None),
    ([GzipCodec(level=1)], (0, 1, 3, 4, 2)),
    ([], (2, 0, 1, 3, 4)),
])
def test_same_values_as_zarr_python(tmp_path: Path, codecs: list, order: tuple | None) -> None:
    """Partial edge shards, several inner chunks per shard, the transpose codec."""
    shape, shards, inner = (3, 5, 7, 4, 9), (1, 2, 4, 4, 9), (1, 1, 2, 2, 9)
    data = np.random.default_rng(1).integers(1, 60000, shape).astype(np.uint16)
    pipeline = ([TransposeCodec(order=order)] if order else []) + [BytesCodec()] + codecs
    arr = zarr.create_array(str(tmp_path / "a"), shape=shape, dtype=data.dtype,
                            serializer=ShardingCodec(chunk_shape=inner, codecs=pipeline),
                            chunks=shards, fill_value=0, compressors=None, filters=None)
    arr[...] = data
    fast = ShardedArray.wrap(zarr.open_array(str(tmp_path / "a"), mode="r"), str(tmp_path / "a"))
    assert isinstance(fast, ShardedArray)
    for index in INDEXES:
        np.testing.assert_array_equal(fast[index], data[index], err_msg=str(index))
        out = np.zeros(data[index].shape, data.dtype)
        for job in fast.read_jobs(index, out):
            job()
        np.testing.assert_array_equal(out, data[index], err_msg=str(index))
    assert fast.read_jobs((0, slice(None, None, -1)), np.empty((5, 7, 4, 9))) is None


def test_unsharded_arrays_decode_chunk_files(tmp_path: Path) -> None:
    """Unsharded arrays (the small keys) are read from their chunk files too."""
    data = np.arange(35, dtype="<u8").reshape(5, 7)
    plain = zarr.create_array(str(tmp_path / "p"), shape=(5, 7), chunks=(2, 3), dtype="<u8",
                              fill_value=0)
    plain[...] = data
    fast = ShardedArray.wrap(zarr.open_array(str(tmp_path / "p"), mode="r"), str(tmp_path / "p"))
    assert isinstance(fast, ShardedArray)
    for index in [(slice(None),), (1, slice(2, 7)), (slice(1, 5), 6), (4,)]:
        np.testing.assert_array_equal(fast[index], data[index], err_msg=str(index))
    (tmp_path / "p" / "c" / "1" / "1").unlink()       # a chunk gone: never read as fill
    with pytest.raises(MissingDataError, match="chunk"):
        fast[2:4, 3:6]


def test_expanded_arrays_plan_jobs_like_their_reads(tmp_path: Path) -> None:
    """Arrays with re-inserted length-1 axes (pulse IDs read as rows of one value) give
    jobs filling the output like their own reads, into an output of another dtype too."""
    from detstack.store.view_collection import ExpandedArray
    data = np.arange(3 * 10 * 4, dtype="<u8").reshape(3, 10, 4)
    plain = zarr.create_array(str(tmp_path / "p"), shape=data.shape, chunks=(1, 8, 4),
                              dtype="<u8", fill_value=0)
    plain[...] = data
    fast = ShardedArray.wrap(zarr.open_array(str(tmp_path / "p"), mode="r"), str(tmp_path / "p"))
    expanded = ExpandedArray(fast, (3,))
    for index in [(1, 2, slice(None), slice(0, 1)), (2, 9, slice(1, 3), 0), (0, slice(6, 10)),
                  (1, 3, slice(None), slice(1, 1))]:
        want = expanded[index]
        out = np.full(want.shape, -1, np.int64)
        for job in expanded.read_jobs(index, out):
            job()
        np.testing.assert_array_equal(out, want, err_msg=str(index))
    assert ExpandedArray(zarr.open_array(str(tmp_path / "p"), mode="r"), (3,)).read_jobs(
        (0, 1), np.empty((4, 1))) is None           # zarr-python reads it itself


def test_unusual_arrays_stay_with_zarr_python(tmp_path: Path) -> None:
    odd = zarr.create_array(str(tmp_path / "p"), shape=(4, 4), chunks=(2, 2), dtype="u2",
                            chunk_key_encoding={"name": "v2"})
    assert ShardedArray.wrap(odd, str(tmp_path)) is odd
    sharded = zarr.create_array(str(tmp_path / "s"), shape=(4, 4), chunks=(2, 2), shards=(4, 4),
                                dtype="u2")
    assert ShardedArray.wrap(sharded, None) is sharded     # not a local folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("shards") / "AGIPD1M-raw", "AGIPD1M-raw")


@pytest.mark.parametrize("layout", [{}, {"shards": 2, "chunks": {"image.data":
                                                                 (1, 1, 2, 1, 512, 128)}}])
def test_reader_api_on_store_equals_run(run: Path, tmp_path: Path, layout: dict) -> None:
    det = open_det(run, "AGIPD1M-raw")
    url = str(tmp_path / "s.zarr")
    to_zarr(det, url, keys=["image.data", "image.pulseId", "image.cellId"], **layout)
    dv = view_det(det, url)
    assert isinstance(dv.data.files[0].h5["image.data"].array, ShardedArray)
    for kw in ({}, {"pulses": np.s_[1:3]}, {"roi": np.s_[1, 100:120, ::5]}):
        xr.testing.assert_identical(det.get_array("image.data", **kw),
                                    dv.get_array("image.data", **kw))
    for (t1, d1), (t2, d2) in zip(det.trains(), dv.trains(), strict=True):
        assert t1 == t2
        xr.testing.assert_identical(d1["image.data"], d2["image.data"])


def test_damaged_store_is_a_typed_error(run: Path, tmp_path: Path) -> None:
    det = open_det(run, "AGIPD1M-raw")
    url = tmp_path / "s.zarr"
    to_zarr(det, str(url), keys=["image.data", "image.pulseId", "image.cellId"])
    shard = url / "image.data" / "c" / "3" / "0" / "0" / "0" / "0" / "0"   # module 3, 1st train
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) // 2] + data[len(data) // 2 + 100:])
    with pytest.raises(FileFormatError):
        view_det(det, str(url)).get_array("image.data")
    os.remove(shard)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MissingDataError, match="shard"):
            view_det(det, str(url)).get_array("image.data")


def test_xarray_dask_chunks(run: Path, tmp_path: Path) -> None:
    """What xarray does with a store (documented in the README): its default dask chunk
    is the zarr read chunk (our inner chunk); ``chunks={"pulse": -1}`` gives one dask
    chunk per shard, ``chunks="auto"`` whole multiples of inner chunks (~128 MiB)."""
    det = open_det(run, "AGIPD1M-raw")
    url = str(tmp_path / "s.zarr")
    to_zarr(det, url, keys=["image.data"])
    arr = zarr.open_array(url + "/image.data", mode="r")
    default = xr.open_zarr(url)["image.data"]
    assert default.data.chunksize == arr.chunks
    train, pulse = default.dims.index("train"), default.dims.index("pulse")
    frames = default.data.chunksize[train] * default.data.chunksize[pulse]
    assert frames == min(8, default.sizes["train"])      # not one dask chunk per frame
    assert default.encoding["shards"] == arr.shards
    per_shard = xr.open_zarr(url, chunks={"pulse": -1})["image.data"]
    assert per_shard.data.chunksize == arr.shards
    auto = xr.open_zarr(url, chunks="auto")["image.data"].data
    assert all(c % i == 0 or c == s for cs, i, s in zip(auto.chunks, arr.chunks, arr.shape,
                                                          strict=True) for c in cs[:-1])
    assert np.prod(auto.chunksize) >= np.prod(arr.shards)
