"""The encode pipeline's pieces: shards written as lists of pieces, reused per-thread
buffers, transposition into a given buffer, and the fast crc32 (same value as zlib)."""

from __future__ import annotations

import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import zarr

from detstack.convert.checksums import block_checksum
from detstack.convert.zarr.buffers import release_buffers, thread_buffer
from detstack.convert.zarr.encode import write_parts
from detstack.convert.zarr.layout import transposed
from detstack.convert.zarr.lossy import QUANTIZE


def test_write_parts_writes_every_piece_in_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    # more pieces than one writev call takes, empty ones, bytes and numpy views
    parts: list = [rng.integers(0, 255, int(n), dtype=np.uint8) for n in
                   rng.integers(0, 5000, 2100)]
    parts[3] = b""
    parts[7] = bytes(range(200))
    parts[11] = memoryview(np.arange(10, dtype="<u8"))
    path = tmp_path / "shard"
    path.write_bytes(b"x" * 10_000_000)          # an older, longer object is replaced
    write_parts(str(path), parts)
    assert path.read_bytes() == b"".join(bytes(memoryview(p).cast("B")) for p in parts)


def test_thread_buffers_are_reused_per_thread_and_released() -> None:
    a = thread_buffer("t", (4, 5), np.dtype("<u2"))
    b = thread_buffer("t", (2, 5), np.dtype("<u2"))
    assert a.shape == (4, 5) and b.shape == (2, 5) and b.dtype == np.dtype("<u2")
    assert np.shares_memory(a, b)                          # reused, not reallocated
    big = thread_buffer("t", (100, 100), np.dtype("f8"))   # grows when asked for more
    assert big.shape == (100, 100) and big.flags.c_contiguous
    other: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: other.append(thread_buffer("t", (4, 5), "<u2")))
    worker.start()
    worker.join()
    assert not np.shares_memory(other[0], big)             # each thread has its own
    release_buffers()
    assert not np.shares_memory(thread_buffer("t", (4, 5), "<u2"), big)


@pytest.mark.parametrize("tile", [None, 16 * 8 * 2, 7 * 8 * 2])   # one tile, whole, ragged
def test_transposed_into_a_buffer_equals_numpy(tile: int | None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from detstack.convert.zarr import layout
    if tile is not None:
        monkeypatch.setattr(layout, "TILE_BYTES", tile)
    chunk = np.random.default_rng(2).integers(0, 2**16, (1, 8, 1, 2, 16, 4), dtype=np.uint16)
    strided = np.random.default_rng(4).integers(0, 2**16, (1, 8, 1, 2, 16, 8),
                                                dtype=np.uint16)[..., ::2]   # rows not contiguous
    for c in (chunk, strided, chunk.astype(np.float32)):
        for order in [(0, 2, 3, 4, 5, 1), (5, 4, 3, 2, 1, 0)]:
            out = np.empty(tuple(c.shape[a] for a in order), c.dtype)
            got = transposed(c, order, out)
            assert got is out
            np.testing.assert_array_equal(got, np.transpose(c, order))
            np.testing.assert_array_equal(transposed(c, order), np.transpose(c, order))


@pytest.mark.parametrize("tile", [None, 7 * 8 * 2])
def test_transposition_sums_the_rows_it_moves(tile: int | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The checksums carried through a transposition (and through ``encode.rows``, the
    same chunk from rows anywhere in memory) are those of the moved rows, continued."""
    from detstack.convert.zarr import layout
    if tile is not None:
        monkeypatch.setattr(layout, "TILE_BYTES", tile)
    chunk = np.random.default_rng(5).integers(0, 2**16, (1, 8, 1, 2, 16, 4), dtype=np.uint16)
    start = [zlib.crc32(b"before"), None, 7, 0, 0, None, 0, 1]
    want = [None if v is None else zlib.crc32(chunk[0, i].tobytes(), v)
            for i, v in enumerate(start)]
    for order in [(0, 2, 3, 4, 5, 1), (0, 3, 2, 5, 4, 1)]:      # fast path and numpy's
        sums = list(start)
        np.testing.assert_array_equal(transposed(chunk, order, sums=sums),
                                      np.transpose(chunk, order))
        assert sums == want
    codecs = [{"name": "transpose", "configuration": {"order": [0, 2, 3, 4, 5, 1]}},
              {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 1,
                                                  "shuffle": "bitshuffle", "typesize": 2}},
              {"name": "crc32c"}]
    encode = layout.chunk_encoder(codecs, chunk.dtype)
    assert encode.summed_axis == 1
    sums = list(start)
    rows = [np.array(chunk[0, i]) for i in range(8)]            # separate arrays
    assert encode.rows(rows, sums) == encode(chunk)
    assert sums == want
    quantized = layout.chunk_encoder([{"name": QUANTIZE, "configuration": {
        "mode": "bits", "keepbits": 7}}, *codecs[:1]], np.dtype(np.float32))
    assert quantized.summed_axis is None        # its values are not the source's


def test_block_checksum_is_zlib_crc32() -> None:
    rows = np.random.default_rng(3).integers(0, 2**16, (3, 2, 64, 32), dtype=np.uint16)
    assert block_checksum(rows) == zlib.crc32(rows.tobytes())
    assert block_checksum(rows[:, 1]) == zlib.crc32(rows[:, 1].tobytes())   # not contiguous


def test_store_written_from_pieces_reads_back(tmp_path: Path) -> None:
    """A sharded store whose shards went through write_parts decodes in zarr-python,
    inner chunks transposed through the reused buffer included."""
    import detstack
    from detstack import synth
    from detstack.convert import to_zarr
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", modules=[2], n_trains=9, frames_per_train=3,
                    with_control=False)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    url = tmp_path / "s.zarr"
    to_zarr(det, url, keys=["image.data"], threads=2)
    arr = zarr.open_array(str(url / "image.data"), mode="r")
    assert arr.shards is not None and arr.chunks[1] == 8      # 8-train transposed chunks
    assert arr.metadata.codecs[0].codecs[0].to_dict()["name"] == "transpose"
    expected = det.get_array("image.data").values
    np.testing.assert_array_equal(arr[2:3], expected)      # module 2 in slot 2 of 16
    assert not arr[3].any()


def test_encoded_pieces_are_the_chunk_with_its_checksum_appended() -> None:
    """parts=True gives the same bytes as one piece, the crc32c as its own 4 bytes; a
    checksum before another codec is appended in place."""
    import google_crc32c

    from detstack.convert.zarr.layout import chunk_encoder
    chunk = np.random.default_rng(4).integers(0, 4000, (1, 8, 1, 2, 16, 4), dtype=np.uint16)
    codecs = [{"name": "transpose", "configuration": {"order": [0, 2, 3, 4, 5, 1]}},
              {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 1,
                                                  "shuffle": "bitshuffle", "typesize": 2,
                                                  "blocksize": 0}},
              {"name": "crc32c"}]
    whole = chunk_encoder(codecs, chunk.dtype)(chunk)
    pieces = chunk_encoder(codecs, chunk.dtype, parts=True)(chunk)
    assert len(pieces) == 2 and len(pieces[1]) == 4 and b"".join(pieces) == whole
    assert int.from_bytes(whole[-4:], "little") == google_crc32c.value(whole[:-4])
    inner = chunk_encoder([{"name": "crc32c"}, {"name": "zstd", "configuration": {"level": 1}}],
                          chunk.dtype)(chunk)
    import numcodecs
    raw = numcodecs.Zstd().decode(inner)
    assert raw[:-4] == chunk.tobytes() and int.from_bytes(raw[-4:], "little") == \
        google_crc32c.value(chunk.tobytes())


def test_blosc_encoder_gives_numcodecs_bytes() -> None:
    """Whichever blosc package encodes, the bytes are numcodecs' (a store never depends on
    what is installed); python-blosc is the one used when present, for the first block size."""
    import importlib.util

    import numcodecs

    from detstack.convert.zarr import blosc_encode
    # python-blosc takes the block size of the first codec in the process: 1 MiB (the default)
    first = list(blosc_encode._blocksize) or [1 << 20]
    rng = np.random.default_rng(5)
    frames = (rng.normal(5000, 12, (2, 64, 32, 8))).astype(np.uint16)
    odd = np.frombuffer(frames.tobytes()[:-1], np.uint8)      # not a multiple of typesize 2
    for cname, clevel, shuffle, typesize in [("zstd", 1, 2, None), ("lz4", 5, 1, 2),
                                             ("zstd", 1, 2, 2)]:
        encode = blosc_encode.blosc_encoder(cname, clevel, shuffle, 1 << 20, typesize)
        ref = numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffle, blocksize=1 << 20,
                              typesize=typesize)
        for data in (frames, frames.astype(np.float32), odd):
            assert bytes(encode(data)) == bytes(ref.encode(data))
            np.testing.assert_array_equal(
                np.frombuffer(ref.decode(encode(data)), data.dtype), data.reshape(-1))
    installed = importlib.util.find_spec("blosc") is not None
    fast = blosc_encode.blosc_encoder("zstd", 1, 2, first[0])
    assert (fast.__qualname__ != "Blosc.encode") == installed
    other = blosc_encode.blosc_encoder("zstd", 1, 2, first[0] + 4096)   # another block size
    assert other.__qualname__ == "Blosc.encode"


def test_collector_paused_while_tasks_run_and_restored(tmp_path: Path) -> None:
    """``to_zarr`` on threads pauses the cyclic garbage collector while its tasks run (a
    few % of its CPU) and leaves it as it found it, also when it was off."""
    import gc

    import detstack
    from detstack import synth
    from detstack.convert import to_zarr
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", modules=[0], n_trains=4, frames_per_train=2,
                    with_control=False)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    for before in (True, False):
        (gc.enable if before else gc.disable)()
        seen: list[bool] = []
        try:
            to_zarr(det, tmp_path / f"{before}.zarr", keys=["image.data"], threads=2,
                    progress=lambda done, total, seen=seen: seen.append(gc.isenabled()))
            assert gc.isenabled() is before
        finally:
            gc.enable()
        # the first report comes before the tasks start; each task's report while they run
        assert seen[0] is before and len(seen) > 1 and not any(seen[1:])


def test_short_runs_are_cut_into_enough_tasks() -> None:
    """A short run gets at least MIN_TASKS tasks where its shards allow (the last tasks
    run alone), a long one TRAIN_BLOCK-train tasks; never a fraction of a shard."""
    from detstack.convert.zarr.layout import MIN_TASKS, TRAIN_BLOCK, ArrayLayout, train_block

    def lay(unit_trains: int) -> ArrayLayout:
        return ArrayLayout("image.data", "", True, np.dtype("u2"), 0, (16, 100, 64, 8),
                           ("module", "train", "pulse", "x"), (1, unit_trains, 64, 8),
                           (1, unit_trains, 1, 8))
    assert train_block([lay(8)], 16, 16) == 8                    # 32 tasks: shards allow no more
    assert train_block([lay(8)], 64, 16) == 16                   # 64 tasks
    assert 16 * -(-64 // train_block([lay(8)], 64, 16)) >= MIN_TASKS
    assert train_block([lay(8)], 30000, 16) == TRAIN_BLOCK       # a long run: large tasks
    assert train_block([lay(8), lay(64)], 16, 16) == 64          # a 64-train stored object
    assert train_block([lay(1)], 3, 1) == 1
