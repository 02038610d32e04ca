"""Virtual CXI files (``convert.to_cxi``): the reference layout, checked against
EXtra-data's ``write_virtual_cxi`` on its mock runs, plus the bulk layout and reading."""

from __future__ import annotations

import contextlib
import io
import json
import os
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
    case_fixture,  # noqa: F401  (the 'case' fixture)
    make_run,
    open_det,
    validate_record,
)

import detstack
from detstack.convert import to_cxi
from detstack.errors import FileFormatError
from detstack.store import open_view

FRAMES_SAMPLE = 40  # frames compared in large virtual datasets (first, last and spread)
SAMPLE_BYTES = 32 << 20


def ed_detector(path: str, cls: str, **kw: Any) -> Any:
    from extra_data import RunDirectory, components
    return getattr(components, cls)(RunDirectory(path), **kw)


def walk(f: h5py.File) -> dict[str, Any]:
    """path -> Dataset, Group, or link target for soft links."""
    out: dict[str, Any] = {}

    def visit(name: str, group: h5py.Group) -> None:
        for child in group:
            path = f"{name}/{child}".lstrip("/")
            link = group.get(child, getlink=True)
            if isinstance(link, h5py.SoftLink):
                out[path] = ("softlink", link.path)
                continue
            obj = group[child]
            out[path] = obj
            if isinstance(obj, h5py.Group):
                visit(path, obj)

    visit("", f)
    return out


def sample_rows(ds: h5py.Dataset) -> np.ndarray:
    n = ds.shape[0]
    k = max(3, min(FRAMES_SAMPLE, SAMPLE_BYTES // max(ds.dtype.itemsize * ds.size // max(n, 1), 1)))
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, k)).astype(int))


def frames(ds: h5py.Dataset, rows: Any = None) -> np.ndarray:
    """Rows read one at a time: a frames-first read of many frames from chunked sources
    takes HDF5's slow path, a single frame does not."""
    rows = range(ds.shape[0]) if rows is None else rows
    return np.stack([ds[int(r)] for r in rows]) if len(rows) else ds[:0]


def assert_same_cxi(ours: Path, ref: Path, reduced: bool = False) -> None:
    """Every reference object exists in ours with the same shape, dtype, attrs, values
    and virtual-source structure; ours adds only the by_module group."""
    with h5py.File(ours, "r") as a, h5py.File(ref, "r") as b:
        wa, wb = walk(a), walk(b)
        extra = {p for p in set(wa) - set(wb) if not p.startswith("entry_1/by_module")}
        assert not extra and not set(wb) - set(wa), (extra, set(wb) - set(wa))
        assert dict(a["entry_1"].attrs) == dict(b["entry_1"].attrs)
        assert dict(a["entry_1/instrument_1/detector_1"].attrs) == \
            dict(b["entry_1/instrument_1/detector_1"].attrs)
        for path, y in wb.items():
            x = wa[path]
            if isinstance(y, tuple):
                assert x == y, path
                continue
            if isinstance(y, h5py.Group):
                continue
            assert (x.shape, x.dtype) == (y.shape, y.dtype), path
            assert dict(x.attrs) == dict(y.attrs), path
            assert x.is_virtual == y.is_virtual, path
            if y.is_virtual:
                assert x.fillvalue == y.fillvalue or (np.isnan(x.fillvalue) and
                                                      np.isnan(y.fillvalue)), path
                xs, ys = x.virtual_sources(), y.virtual_sources()
                assert len(xs) <= len(ys) if reduced else len(xs) == len(ys), path
                assert {os.path.basename(v.file_name) for v in xs} == \
                    {os.path.basename(v.file_name) for v in ys}
                rows = sample_rows(y)
                assert_equal_arrays(frames(x, rows), frames(y, rows))
            else:
                assert_equal_arrays(x[()], y[()])


ORACLE = {
    # name: (mock, format version, detector class, detector kwargs)
    "spb-proc": ("spb_proc", "1.2", "AGIPD1M", {}),
    "spb-proc-modules": ("spb_proc", "1.0", "AGIPD1M", {"modules": [3, 4, 8, 15]}),
    "spb-raw": ("spb_raw", "1.2", "AGIPD1M", {}),
    "lpd-raw": ("fxe_raw", "1.0", "LPD1M", {}),
    "lpd-gap": ("lpd_mini_gap", None, "LPD1M", {}),
    "jungfrau": ("jungfrau", None, "JUNGFRAU", {}),
    "jungfrau-modules": ("jungfrau", None, "JUNGFRAU", {"modules": [2, 3, 4, 6]}),
    "reduced": ("reduced_spb_proc", "1.2", "AGIPD1M", {}),
    "dssc": ("scs", None, "DSSC1M", {}),
}


@pytest.mark.parametrize("name", sorted(ORACLE))
def test_matches_reference(name: str, mock_data: Any, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    mock, version, cls, kw = ORACLE[name]
    run = mock_data(mock, version)
    ref = tmp_path / "ref.cxi"
    with contextlib.redirect_stdout(io.StringIO()):  # the reference prints debug lines
        ed_detector(run, cls, **kw).write_virtual_cxi(str(ref))
    det = getattr(detstack, cls)(detstack.RunDirectory(run), **kw)
    capsys.readouterr()
    det.write_virtual_cxi(str(tmp_path / "ours.cxi"))
    assert capsys.readouterr().out == ""  # no printing
    assert_same_cxi(tmp_path / "ours.cxi", ref, reduced=name == "reduced")
    with h5py.File(tmp_path / "ours.cxi", "r") as f:
        validate_record(json.loads(f.attrs["detstack_record"]))
        with open(tmp_path / "ours.cxi", "rb") as fh:
            head = fh.read(9)
        assert head[:8] == b"\x89HDF\r\n\x1a\n" and head[8] <= 3  # superblock of HDF5 1.10


def test_source_layout_of_mappings(mock_data: Any, tmp_path: Path) -> None:
    """One mapping per module; each maps one module slot, named by the module's file."""
    run = mock_data("spb_proc", "1.2")
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    with h5py.File(to_cxi(det, tmp_path / "x.cxi"), "r") as f:
        data = f["entry_1/instrument_1/detector_1/data"]
        assert data.shape[1:] == (16, 512, 128) and data.attrs["axes"]
        sources = data.virtual_sources()
        assert len(sources) == 16
        for vs in sources:
            start, _, count, block = vs.vspace.get_regular_hyperslab()
            assert count[1] == 1 and block[1] == 1
            assert os.path.basename(vs.file_name) == f"CORR-R0238-AGIPD{start[1]:02}-S00000.h5"
            assert os.path.isabs(vs.file_name)


@pytest.fixture(scope="module")
def cxi_view(case: tuple[str, Path, Any]) -> tuple[str, Any, Path]:
    name, run, det = case
    out = run.parent / "x.cxi"
    to_cxi(det, out)
    return name, det, out


def test_bulk_layout_equals_frames_first(cxi_view: tuple[str, Any, Path]) -> None:
    name, det, out = cxi_view
    with h5py.File(out, "r") as f:
        record = json.loads(f.attrs["detstack_record"])
        validate_record(record)
        ff = frames(f["entry_1/instrument_1/detector_1/data"])
        bulk = f["entry_1/by_module/data"][()]
        if det.kind.xtdf:
            assert_equal_arrays(np.moveaxis(bulk, 0, 1).reshape(ff.shape), ff)
        else:
            moved = np.moveaxis(bulk, 0, 2)  # (train, cell, module, y, x)
            assert_equal_arrays(moved.reshape(ff.shape), ff)
        cells = frames(f["entry_1/cellId"])
        cell_bulk = f["entry_1/by_module/" + ("cellId" if det.kind.xtdf else "memoryCell")][()]
        assert_equal_arrays(np.moveaxis(cell_bulk, 0, -1).reshape(cells.shape), cells)
        assert record["form"] == "cxi"


def test_reader_api_on_cxi(cxi_view: tuple[str, Any, Path]) -> None:
    name, det, out = cxi_view
    vdet = open_det(open_view(out), name)
    assert_reader_identical(det, vdet, CASES[name][0])


def test_fillvalues(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "agipd-corr")
    out = to_cxi(det, tmp_path / "f.cxi", fillvalues={"data": 0, "mask": 0xFF})
    with h5py.File(out, "r") as f:
        grp = f["entry_1/instrument_1/detector_1"]
        assert grp["data"].fillvalue == 0 and grp["mask"].fillvalue == 0xFF
        assert grp["gain"].fillvalue == 0
        data = grp["data"][()]
    slot = det.module_slot(5)
    missing = np.flatnonzero(det.train_ids_perframe == 10001)
    assert (data[missing, slot] == 0).all() and data[missing, det.module_slot(2)].any()
    raw = make_run(tmp_path / "raw", "agipd500k")
    with pytest.raises(ValueError, match="does not fit the uint16"):
        to_cxi(raw, tmp_path / "g.cxi", fillvalues={"data": np.nan})
    with pytest.raises(ValueError, match="fillvalues keys"):
        to_cxi(raw, tmp_path / "g.cxi", fillvalues={"dat": 1})
    assert not (tmp_path / "g.cxi").exists()


def test_relative_option_and_relocation(tmp_path: Path) -> None:
    det = make_run(tmp_path / "a" / "run", "lpd-raw")
    out = to_cxi(det, tmp_path / "a" / "rel.cxi", relative=True)
    ref = det.get_array("image.data")
    (tmp_path / "a").rename(tmp_path / "b")
    vdet = open_det(open_view(tmp_path / "b" / out.name), "lpd-raw")
    xr.testing.assert_identical(vdet.get_array("image.data"), ref)


def test_cxi_errors(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "lpd-raw")
    out = to_cxi(det, tmp_path / "x.cxi")
    with pytest.raises(FileExistsError):
        to_cxi(det, out)
    det.write_virtual_cxi(str(out))  # the reference API overwrites
    next((tmp_path / "run").glob("*LPD15*")).unlink()
    with pytest.raises(FileFormatError, match="missing"):
        open_view(out)


@pytest.mark.parametrize("mock", ["spb_proc", "reduced_spb_proc"])
def test_identifiers_written_in_batches(mock: str, mock_data: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame IDs are read a block of trains at a time and experiment_identifier written a
    batch of frames at a time (bounded memory for long runs); tiny blocks and batches give
    the reference's file exactly, also where frame counts vary from train to train."""
    from detstack.convert import cxi, frame_ids
    monkeypatch.setattr(cxi, "ID_BATCH", 7)
    monkeypatch.setattr(frame_ids, "TRAIN_BLOCK", 3)
    run = mock_data(mock, "1.2")
    ref = tmp_path / "ref.cxi"
    with contextlib.redirect_stdout(io.StringIO()):
        ed_detector(run, "AGIPD1M").write_virtual_cxi(str(ref))
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    assert len(det.train_ids) > 3 * frame_ids.TRAIN_BLOCK
    to_cxi(det, tmp_path / "ours.cxi")
    assert_same_cxi(tmp_path / "ours.cxi", ref, reduced=mock == "reduced_spb_proc")
    with h5py.File(tmp_path / "ours.cxi") as f:
        assert f["entry_1/experiment_identifier"].shape[0] > 7


def test_disagreeing_pulse_ids_in_a_later_block(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules disagreeing on a pulse ID in a late block of trains (earlier blocks already
    written) raise the detector's typed error naming the module, and leave no file."""
    from detstack import synth
    from detstack.convert import frame_ids
    from detstack.errors import InconsistentModulesError
    monkeypatch.setattr(frame_ids, "TRAIN_BLOCK", 2)
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", raw=False, n_trains=8, frames_per_train=4,
                    trains_per_file=8, modules=[0, 1], values="photons")
    src = "SPB_DET_AGIPD1M-1/CORR/1CH0:output"
    path = sorted(run.glob("*AGIPD01*.h5"))[-1]       # holds module 1's last train
    with h5py.File(path, "r+") as f:
        last = int(f[f"INDEX/{src}/image/first"][-1])   # train 8 of 8: the fourth block
        ds = f[f"INSTRUMENT/{src}/image/pulseId"]
        ds[last + 1] = ds[last + 1] + 1
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    with pytest.raises(InconsistentModulesError, match="module"):
        to_cxi(det, tmp_path / "x.cxi")
    assert not (tmp_path / "x.cxi").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
