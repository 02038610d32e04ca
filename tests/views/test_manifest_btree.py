"""Single chunks found in a version-1 B-tree a few nodes at a time (store.manifest_btree)
are HDF5's own chunks: by coordinate and by address, every stored chunk of multi-level,
compressed, sparse and out-of-order datasets gives HDF5's answer, and nothing else is
ever found (a shifted address, an address inside a chunk, the B-tree's own nodes). The
manifest guard then reads a frame without reading any whole chunk index."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_chunk_index import hdf5_table
from test_manifest import open_det, write

from detstack.store import open_view
from detstack.store.manifest_btree import PointIndex, point_index
from detstack.store.manifest_guard import ChunkIndex


def make(path: Path) -> Path:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w", libver="earliest") as f:
        # 5,000 one-row chunks: a three-level B-tree (64 entries a node)
        f.create_dataset("rows", data=np.arange(5000 * 6, dtype="u2").reshape(5000, 6),
                         chunks=(1, 6))
        # compressed chunks of varying size, entry axes split over several chunks
        f.create_dataset("packed", data=rng.integers(0, 9, (40, 12, 10)).astype("f4"),
                         chunks=(1, 5, 4), compression="gzip", shuffle=True)
        # holes, growable (the DAQ's raw layout)
        sparse = f.create_dataset("sparse", shape=(900, 4), dtype="i4", chunks=(1, 4),
                                  maxshape=(None, 4))
        for r in range(0, 900, 7):
            sparse[r] = r
        # written last row first: addresses run against coordinates
        backwards = f.create_dataset("backwards", shape=(300, 5), dtype="f8", chunks=(1, 5))
        for r in range(299, -1, -1):
            backwards[r] = r
        f.create_dataset("empty", shape=(10, 3), dtype="f8", chunks=(2, 3))
    return path


@pytest.fixture(scope="module")
def h5file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("btree") / "f.h5")


def index(f: h5py.File, name: str) -> PointIndex:
    found = point_index(f.id.get_vfd_handle(), f[name])
    assert found is not None
    return found


@pytest.mark.parametrize("name", ["rows", "packed", "sparse", "backwards", "empty"])
def test_every_chunk_found_as_hdf5_stores_it(h5file: Path, name: str) -> None:
    with h5py.File(h5file, "r") as f:
        ds = f[name]
        coords, addr, size, mask = hdf5_table(ds)
        pi = index(f, name)
        in_order = bool((np.diff(addr) > 0).all())
        assert in_order == (name in ("rows", "sparse", "empty"))
        by_address = 0
        for c, a, s, m in zip(coords.tolist(), addr.tolist(), size.tolist(), mask.tolist(),
                              strict=True):
            offset = [i * n for i, n in zip(c, ds.chunks, strict=True)]
            assert pi.find(offset) == (a, s, m)
            found = pi.find_address(a)
            assert found in (None, (a, s, m))
            by_address += found is not None
        if in_order:             # chunks in coordinate order: every one found by address
            assert by_address == len(addr)
        if name == "rows":
            assert len({n.level for n in pi._nodes.values()}) == 3    # root, middle, leaves
        if name == "empty":
            assert len(addr) == 0 and pi.find((0, 0)) is None


def test_found_only_where_hdf5_has_a_chunk(h5file: Path) -> None:
    with h5py.File(h5file, "r") as f:
        _, addr, _, _ = hdf5_table(f["rows"])
        pi = index(f, "rows")
        for a in addr.tolist()[::97]:
            assert pi.find_address(a + 1) is None            # inside a chunk
            assert pi.find_address(a - 1) is None
        nodes = list(pi._nodes)
        assert all(pi.find_address(n) is None for n in nodes)    # the index itself
        assert pi.find_address(0) is None and pi.find_address(1 << 50) is None
        assert pi.find((5000, 0)) is None and pi.find((3, 1)) is None   # off the grid
        sparse = index(f, "sparse")
        assert sparse.find((8, 0)) is None and sparse.find((7, 0)) is not None


def test_chunks_out_of_order_are_left_to_the_whole_index(h5file: Path) -> None:
    """Backwards addresses defeat the search: it gives up, and the guard's bulk table
    still accepts exactly the stored chunks."""
    with h5py.File(h5file, "r") as f:
        _, addr, size, _ = hdf5_table(f["backwards"])
    guard = ChunkIndex(str(h5file))
    try:
        for a, s in zip(addr.tolist(), size.tolist(), strict=True):
            assert guard.holds(a, a + s, ("backwards",))
            assert not guard.holds(a + 8, a + 8 + s, ("backwards",))
        assert guard._stored["backwards"].starts is not None     # read whole
    finally:
        guard.close()


def test_a_frame_is_checked_without_any_whole_chunk_index(tmp_path: Path) -> None:
    name = "agipd-raw-chunked"
    from detstack.convert import to_manifest
    folder = write(tmp_path / "run", name)
    det = open_det(folder, name)
    out = to_manifest(det, folder / "view.parq")
    collection = open_view(out)
    view = open_det(collection, name)
    tid = int(view.train_ids[1])
    got = view.select_trains(_by_id(tid)).get_array("image.data", pulses=np.s_[1:2])
    want = det.select_trains(_by_id(tid)).get_array("image.data", pulses=np.s_[1:2])
    np.testing.assert_array_equal(got.values, want.values)
    guard = collection._keepalive[0].fs.guard
    assert guard._indexes, "the frame's chunks were checked"
    for index in guard._indexes.values():
        assert all(d is None or d.starts is None for d in index._stored.values())


def _by_id(tid: int) -> object:
    import detstack
    return detstack.by_id[[tid]]


def test_reference_to_an_index_node_is_refused(tmp_path: Path) -> None:
    """A reference of a chunk's size pointing at the source dataset's own chunk B-tree
    (file metadata between chunks) is found by no lookup and refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from detstack.convert import to_manifest
    from detstack.errors import UnsafeReferenceError
    name = "agipd-raw-chunked"
    folder = write(tmp_path / "run", name)
    out = to_manifest(open_det(folder, name), folder / "view.parq")
    file = out / "image.data" / "refs.0.parq"
    cols = pq.read_table(file).to_pydict()
    i = next(k for k, p in enumerate(cols["path"]) if p is not None)
    source = cols["path"][i] if Path(cols["path"][i]).is_absolute() else \
        str(folder / cols["path"][i])
    with h5py.File(source, "r") as f:
        dset = next(n for n in _datasets(f) if n.endswith("image/data"))
        node = index(f, dset).root
    cols["offset"][i] = node
    pq.write_table(pa.table({"path": pa.array(cols["path"], pa.string()),
                             "offset": pa.array(cols["offset"], pa.int64()),
                             "size": pa.array(cols["size"], pa.int64())}), file)
    view = open_det(open_view(out), name)
    with pytest.raises(UnsafeReferenceError, match="outside the stored data"):
        view.get_array("image.data")


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def test_sidecar_chunks_decode_in_runs() -> None:
    """Equal deflated pieces are inflated once and repeated; distinct ones each; a piece
    that inflates to another size gives None (HDF5 then reads the dataset)."""
    import zlib

    from detstack.store.manifest_sidecar import _inflate_each, _pieces
    plain = [bytes([v]) * 16 for v in (1, 1, 1, 2, 2, 1, 3, 3)]
    packed = [zlib.compress(p) for p in plain]
    buf = np.frombuffer(b"".join(packed), np.uint8)
    sizes = np.array([len(p) for p in packed], np.int64)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    got = _inflate_each(buf, first, sizes, 16)
    assert got is not None and got.tobytes() == b"".join(plain)
    order = np.array([3, 0, 7, 1])                      # not in file order
    got = _inflate_each(buf, first[order], sizes[order], 16)
    assert got is not None and got.tobytes() == b"".join(plain[i] for i in order)
    assert _inflate_each(buf, first, sizes, 15) is None
    bad = buf.copy()
    bad[first[3]] ^= 0xFF                               # a damaged zlib header
    with pytest.raises(zlib.error):
        _inflate_each(bad, first, sizes, 16)
    raw = np.arange(40, dtype=np.uint8)
    np.testing.assert_array_equal(_pieces(raw, np.array([0, 10, 20]), np.array([10] * 3)),
                                  raw[:30].reshape(3, 10))
    np.testing.assert_array_equal(_pieces(raw, np.array([20, 0]), np.array([10, 10])),
                                  np.stack([raw[20:30], raw[0:10]]))
    assert _pieces(raw, np.array([0, 10]), np.array([10, 5])) is None
