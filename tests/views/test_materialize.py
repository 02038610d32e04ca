"""Archival copies (``convert.materialize``): self-contained, same layout, same values."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
from h5_fixtures import (
    CASES,
    assert_equal_arrays,
    assert_reader_identical,
    make_run,
    open_det,
    validate_record,
)

from detstack.convert import archive as materialize_module
from detstack.convert import materialize, to_cxi, to_vds
from detstack.errors import FileFormatError
from detstack.store import open_view


def all_datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    out: dict[str, h5py.Dataset] = {}
    f.visititems(lambda n, o: out.setdefault(n, o) if isinstance(o, h5py.Dataset) else None)
    return out


def frames(ds: h5py.Dataset) -> np.ndarray:
    """Read a frames-first virtual dataset one frame at a time (fast with chunked sources)."""
    if not ds.is_virtual or not ds.shape:
        return ds[()]
    return np.stack([ds[i] for i in range(ds.shape[0])]) if ds.shape[0] else ds[()]


def assert_same_file(copy: Path, view: Path) -> None:
    """Same datasets, shapes, dtypes, fill values, attributes, links and values."""
    with h5py.File(copy, "r") as a, h5py.File(view, "r") as b:
        da, db = all_datasets(a), all_datasets(b)
        assert set(da) == set(db)
        for name, y in db.items():
            x = da[name]
            assert (x.shape, x.dtype) == (y.shape, y.dtype), name
            assert_equal_arrays(frames(x), frames(y))
            attrs = {k: v for k, v in y.attrs.items() if k != "detstack_record"}
            assert {k: v for k, v in x.attrs.items()} == attrs, name
            if y.is_virtual and x.dtype.kind == "f":
                assert np.isnan(x.fillvalue) == np.isnan(y.fillvalue)
            elif y.is_virtual:
                assert x.fillvalue == y.fillvalue
            if x.is_virtual:  # only stored once: over this same file
                assert {vs.file_name for vs in x.virtual_sources()} == {"."}
            elif y.is_virtual and x.size:
                assert x.compression == "gzip" and x.chunks is not None
        for name in ("entry_1/data_1", "entry_1/instrument_1/detector_1/experiment_identifier"):
            if name in b:
                assert a.get(name, getlink=True).path == b.get(name, getlink=True).path


@pytest.mark.parametrize("name", ["agipd-raw", "jf-raw", "lpd-corr"])
@pytest.mark.parametrize("form", ["vds", "cxi"])
def test_copy_is_self_contained(name: str, form: str, tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", name)
    ext = "h5" if form == "vds" else "cxi"
    view = (to_vds if form == "vds" else to_cxi)(det, tmp_path / f"view.{ext}")
    copy = materialize(view, tmp_path / f"copy.{ext}")
    assert_same_file(copy, view)
    ref = det.get_array(det.kind.main_key)
    shutil.rmtree(tmp_path / "run")
    vdet = open_det(open_view(copy), name)
    xr.testing.assert_identical(vdet.get_array(det.kind.main_key), ref)
    with h5py.File(copy, "r") as f:
        record = json.loads(f.attrs["detstack_record"])
    validate_record(record)
    assert record["form"] == "materialized" and record["materialized_from"] == form
    assert record["source_files"] == []


def test_reader_api_on_copy(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "agipd-corr")
    copy = materialize(to_vds(det, tmp_path / "v.h5"), tmp_path / "c.h5", compression="lzf")
    vdet = open_det(open_view(copy), "agipd-corr")
    assert_reader_identical(det, vdet, CASES["agipd-corr"][0])
    with h5py.File(copy, "r") as f:
        assert f["image.data"].compression == "lzf"


def test_cxi_stored_once(tmp_path: Path) -> None:
    """The CXI frames-first datasets become views of the module-first copy."""
    det = make_run(tmp_path / "run", "lpd-raw")
    view = to_cxi(det, tmp_path / "v.cxi")
    copy = materialize(view, tmp_path / "c.cxi", compression=None)
    with h5py.File(copy, "r") as f:
        data = f["entry_1/instrument_1/detector_1/data"]
        assert data.is_virtual and not f["entry_1/by_module/data"].is_virtual
        assert {vs.dset_name for vs in data.virtual_sources()} == {"/entry_1/by_module/data"}
        stored = f["entry_1/by_module/data"].id.get_storage_size()
        frames_bytes = f["entry_1/by_module/data"].dtype.itemsize * data.size
    assert stored <= frames_bytes
    again = materialize(copy, tmp_path / "again.cxi")
    assert_same_file(again, view)


def test_reference_cxi_without_record(mock_data: Any, tmp_path: Path) -> None:
    """A CXI file EXtra-data wrote (no detstack record) is archived too."""
    from extra_data import RunDirectory, components
    run = mock_data("lpd_mini_gap")
    ref = tmp_path / "ref.cxi"
    with contextlib.redirect_stdout(io.StringIO()):
        components.LPD1M(RunDirectory(run), raw=True).write_virtual_cxi(str(ref))
    copy = materialize(ref, tmp_path / "copy.cxi")
    assert_same_file(copy, ref)


def test_pieces_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny pieces (one train, one frame) give the same copy as big ones."""
    det = make_run(tmp_path / "run", "agipd-raw")
    view = to_vds(det, tmp_path / "v.h5")
    cxi = to_cxi(det, tmp_path / "v.cxi")
    monkeypatch.setattr(materialize_module, "PIECE_BYTES", 1)
    assert_same_file(materialize(view, tmp_path / "c.h5"), view)
    assert_same_file(materialize(cxi, tmp_path / "c.cxi"), cxi)


def test_chunk_shapes() -> None:
    chunk = materialize_module.chunk_shape
    assert chunk((16, 40, 64, 2, 512, 128), (1, 1, 64, 2, 512, 128), 2) == (1, 1, 4, 2, 512, 128)
    assert chunk((100, 16, 512, 128), (100, 1, 512, 128), 4) == (4, 1, 512, 128)
    assert chunk((16, 100, 512, 128), (1, 100, 512, 128), 4) == (1, 4, 512, 128)
    assert chunk((8, 10, 16, 512, 1024), (1, 10, 16, 512, 1024), 2) == (1, 1, 1, 512, 1024)
    assert chunk((16, 40, 8), (1, 40, 8), 1) == (1, 40, 8)


def test_missing_source_refused(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "lpd-raw")
    view = to_vds(det, tmp_path / "v.h5")
    next((tmp_path / "run").glob("*LPD15*")).unlink()
    with pytest.raises(FileFormatError, match="missing"):
        materialize(view, tmp_path / "c.h5")
    assert not (tmp_path / "c.h5").exists()


def test_existing_and_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    det = make_run(tmp_path / "run", "agipd500k")
    view = to_vds(det, tmp_path / "v.h5")
    out = tmp_path / "c.h5"
    out.write_text("keep")
    with pytest.raises(FileExistsError):
        materialize(view, out)
    assert out.read_text() == "keep"

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(materialize_module, "_write_copy", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        materialize(view, tmp_path / "d.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "run", "v.h5"]


def test_copy_opens_from_fsspec_url(tmp_path: Path) -> None:
    """A self-contained copy opens through fsspec; a virtual view cannot, and says why."""
    import fsspec
    det = make_run(tmp_path / "run", "agipd500k")
    view = to_vds(det, tmp_path / "v.h5")
    copy = materialize(view, tmp_path / "c.h5")
    mem = fsspec.filesystem("memory")
    mem.pipe("/bench/c.h5", copy.read_bytes())
    mem.pipe("/bench/v.h5", view.read_bytes())
    vdet = open_det(open_view("memory://bench/c.h5"), "agipd500k")
    xr.testing.assert_identical(vdet.get_array("image.data"), det.get_array("image.data"))
    with pytest.raises(FileFormatError, match="cannot be opened remotely"):
        open_view("memory://bench/v.h5")
