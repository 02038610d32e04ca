"""Chunk offsets read in bulk from version-1 B-trees (convert.chunk_index) equal HDF5's own
answers (get_chunk_info for every chunk), and files the fast path does not know fall
back to chunk_iter with the same result."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from detstack.convert import chunk_index
from detstack.convert.chunk_index import Unrecognised, _from_btree, chunk_table


def hdf5_table(ds: h5py.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(coords, addr, size, mask) of every chunk, one get_chunk_info call each."""
    infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    coords = np.array([i.chunk_offset for i in infos], np.int64).reshape(len(infos), ds.ndim)
    return (coords // np.array(ds.chunks), np.array([i.byte_offset for i in infos], np.int64),
            np.array([i.size for i in infos], np.int64),
            np.array([i.filter_mask for i in infos], np.int64))


def assert_same(table: chunk_index.ChunkTable, ds: h5py.Dataset) -> None:
    coords, addr, size, mask = hdf5_table(ds)
    assert len(table) == len(addr)
    np.testing.assert_array_equal(table.coords, coords)
    np.testing.assert_array_equal(table.addr, addr)
    np.testing.assert_array_equal(table.size, size)
    np.testing.assert_array_equal(table.mask, mask)


def write(path: Path, libver: str = "earliest", **kw: object) -> Path:
    rng = np.random.default_rng(1)
    with h5py.File(path, "w", libver=libver, **kw) as f:
        # one frame per chunk, holes, growable (the DAQ's raw layout): a multi-level B-tree
        ds = f.create_dataset("frames", shape=(3000, 4, 6), dtype="u2", chunks=(1, 4, 6),
                              maxshape=(None, 4, 6))
        for r in range(0, 3000, 7):
            ds[r] = r
        # compressed chunks of varying size, entry axes split over several chunks
        f.create_dataset("packed", data=rng.integers(0, 9, (40, 12, 10)).astype("f4"),
                         chunks=(1, 5, 4), compression="gzip", shuffle=True)
        f.create_dataset("empty", shape=(10, 3), dtype="f8", chunks=(2, 3))
    return path


@pytest.mark.parametrize("name", ["frames", "packed", "empty"])
def test_btree_read_equals_hdf5(tmp_path: Path, name: str) -> None:
    with h5py.File(write(tmp_path / "a.h5"), "r") as f:
        ds = f[name]
        table = _from_btree(ds)          # the fast path itself, not its fallback
        assert_same(table, ds)
        assert_same(chunk_table(ds), ds)
        if name == "frames":
            assert len(table) == len(range(0, 3000, 7))
        if name == "packed":
            assert len(set(table.size.tolist())) > 1    # sizes really vary


@pytest.mark.parametrize("kw", [{"libver": "latest"}, {"userblock_size": 512}],
                         ids=["hdf5-1.10-indexes", "user-block"])
def test_unknown_layouts_fall_back_to_chunk_iter(tmp_path: Path, kw: dict) -> None:
    with h5py.File(write(tmp_path / "b.h5", **kw), "r") as f:
        for name in ["frames", "packed"]:
            with pytest.raises(Unrecognised):
                _from_btree(f[name])
            assert_same(chunk_table(f[name]), f[name])


def test_spot_check_disagreement_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """If HDF5's own lookup ever disagrees with the table read directly, chunk_iter wins."""
    with h5py.File(write(tmp_path / "c.h5"), "r") as f:
        ds = f["frames"]
        real = chunk_index._leaf_records

        def swapped(*args: object) -> tuple[np.ndarray, int]:
            rec, first_leaf = real(*args)
            rec = rec.copy()
            rec["addr"][[0, 1]] = rec["addr"][[1, 0]]   # two chunks swapped: still a valid
            return rec, first_leaf                      # layout, only HDF5 can tell

        monkeypatch.setattr(chunk_index, "_leaf_records", swapped)
        with pytest.raises(Unrecognised, match="spot check"):
            _from_btree(ds)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="detstack"):
            assert_same(chunk_table(ds), ds)
        assert "disagrees with HDF5" in caplog.text


def test_many_leaves_read_concurrently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A B-tree with hundreds of leaves (read several nodes at a time), chunks allocated
    out of file order (written backwards): the same table as HDF5's."""
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("rows", shape=(20_000, 2), dtype="u1", chunks=(1, 2),
                              maxshape=(None, 2))
        for r in range(19_999, -1, -3):
            ds[r] = r % 251
    levels: list[int] = []
    real = chunk_index._read_nodes

    def counting(fd: int, addrs: list[int], size: int) -> list[bytes]:
        levels.append(len(addrs))
        return real(fd, addrs, size)

    monkeypatch.setattr(chunk_index, "_read_nodes", counting)
    monkeypatch.setattr(chunk_index, "IO_THREADS", 8)   # this small tree: 116 leaves
    with h5py.File(path, "r") as f:
        table = _from_btree(f["rows"])
        assert max(levels) >= 4 * chunk_index.IO_THREADS     # the concurrent path ran
        assert not (np.diff(table.addr) > 0).all()           # not in file order
        assert_same(table, f["rows"])


def test_tables_read_ahead_equal_hdf5(tmp_path: Path) -> None:
    """TablesAhead: the tables of datasets announced in advance (several files, one whose
    layout only chunk_iter reads, one handle reopened in between) are HDF5's, in order."""
    a, b = write(tmp_path / "a.h5"), write(tmp_path / "b.h5", libver="latest")
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        order = [fa["frames"], fb["packed"], fa["packed"], fa["empty"], fb["frames"]]
        ahead = chunk_index.TablesAhead()
        for ds in order:
            ahead.add(ds)
        assert len(ahead) == len(order)
        for i, ds in enumerate(order):
            if i == 2:
                ds = h5py.File(a, "r")["packed"]   # another handle of the same dataset
            assert_same(ahead.next(ds), ds)
        ahead.add(fa["frames"])
        with pytest.raises(AssertionError, match="out of order"):
            ahead.next(fa["packed"])
        ahead.add(fa["packed"])
        ahead.close()
        assert len(ahead) == 0
