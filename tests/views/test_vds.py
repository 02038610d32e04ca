"""HDF5 virtual views (``convert.to_vds``): content, reader API, paths, safety."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
from h5_fixtures import (
    CASES,
    MAIN_KEY,
    assert_equal_arrays,
    assert_reader_identical,
    case_fixture,  # noqa: F401  (the 'case' fixture)
    expected_view,
    make_run,
    open_det,
    validate_record,
)

import detstack
from detstack.cli import main as cli_main
from detstack.convert import to_vds, vds
from detstack.convert.plan import ViewPlan
from detstack.errors import FileFormatError
from detstack.store import open_view


@pytest.fixture(scope="module")
def view(case: tuple[str, Path, Any]) -> tuple[str, Path, Any, Path]:
    name, run, det = case
    out = run.parent / "view.h5"
    to_vds(det, out)
    return name, run, det, out


def test_arrays_equal_detector_reads(view: tuple[str, Path, Any, Path]) -> None:
    """Every key read with plain h5py is the module-slot array of the run, fill included."""
    name, _, det, out = view
    plan = ViewPlan(det)
    with h5py.File(out, "r") as f:
        assert sorted(k for k in f if "." in k) == sorted(kp.key for kp in plan.keys)
        for kp in plan.keys:
            ds = f[kp.key]
            assert ds.is_virtual
            assert ds.shape == plan.shape(kp)
            assert_equal_arrays(ds[()], expected_view(det, kp.key))
            if ds.size:
                fill = ds.fillvalue
                assert_equal_arrays(fill, np.asarray(kp.fill_value, kp.dtype))
        assert_equal_arrays(f["train_ids"][()], np.array(det.train_ids, np.uint64))
        numbers = f["module_numbers"][()]
        assert len(numbers) == det.n_modules
        assert all(numbers[det.module_slot(m)] == m for m in det.modules)
        for group in json.loads(f.attrs["detstack_record"])["index_groups"]:
            assert_equal_arrays(f[f"counts/{group}"][()], plan.counts(group))


def test_train_range_read(view: tuple[str, Path, Any, Path]) -> None:
    name, _, det, out = view
    key = MAIN_KEY[CASES[name][0]]
    with h5py.File(out, "r") as f:
        assert_equal_arrays(f[key][:, 1:3], expected_view(det, key)[:, 1:3])


def test_reader_api_identical(view: tuple[str, Path, Any, Path]) -> None:
    name, _, det, out = view
    vdet = open_det(open_view(out), name)
    assert_reader_identical(det, vdet, CASES[name][0])
    first = next(det.trains(require_all=False))[1]
    assert next(vdet.trains(require_all=False))[1].keys() == first.keys()


def test_record_and_mapping_forms(view: tuple[str, Path, Any, Path]) -> None:
    name, run, det, out = view
    with h5py.File(out, "r") as f:
        record = json.loads(f.attrs["detstack_record"])
        validate_record(record)
        assert record["form"] == "vds" and record["relative_paths"] is True
        assert {e["path"] for e in record["source_files"]} == {
            f"run/{p.name}" for p in run.glob("*.h5")}
        plan = ViewPlan(det)
        for kp in plan.keys:
            ds = f[kp.key]
            files = {vs.file_name for vs in ds.virtual_sources()}
            assert all(not Path(n).is_absolute() and n.startswith("run/") for n in files)
            present = int((plan.counts(kp.group) > 0).sum())
            per_train = kp.per_frame and kp.key.endswith(("data", "gain", "mask")) \
                and name != "agipd-contig"
            assert ds.attrs["mapping"] == ("per-train" if per_train else "per-run")
            n_maps = ds.id.get_create_plist().get_virtual_count()
            assert n_maps == present if per_train else n_maps <= present
            assert record["mappings"][kp.key] == {"form": ds.attrs["mapping"], "count": n_maps}


def test_raw_agipd_planes(tmp_path: Path) -> None:
    """Raw AGIPD keeps the data/gain axis; a 0:1 slice reads the data plane only."""
    det = make_run(tmp_path / "run", "agipd-raw")
    out = to_vds(det, tmp_path / "v.h5")
    with h5py.File(out, "r") as f:
        ds = f["image.data"]
        assert ds.attrs["axes"] == "module:train:pulse:data_gain:slow_scan:fast_scan"
        assert list(ds.attrs["data_gain"]) == ["data", "gain"]
        plane = ds[:, :, :, 0:1]
    exp = expected_view(det, "image.data")[:, :, :, 0:1]
    assert_equal_arrays(plane, exp)
    ref = det.get_array("image.data", pulses=np.s_[:5]).sel(module=9).isel(train=0, data_gain=0)
    assert_equal_arrays(plane[det.module_slot(9), 0, :5, 0], ref.values.astype(np.uint16))


def test_relocated_run_and_view(tmp_path: Path) -> None:
    """Moving the folder holding run and view keeps it readable (relative paths);
    with absolute paths the moved view reports its missing sources."""
    det = make_run(tmp_path / "a" / "run", "agipd-raw")
    to_vds(det, tmp_path / "a" / "rel.h5")
    to_vds(det, tmp_path / "a" / "abs.h5", relative=False)
    ref = det.get_array("image.data")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = open_det(open_view(tmp_path / "b" / "rel.h5"), "agipd-raw")
    xr.testing.assert_identical(moved.get_array("image.data"), ref)
    with pytest.raises(FileFormatError, match="missing"):
        open_view(tmp_path / "b" / "abs.h5")


def test_view_outside_run_folder(tmp_path: Path) -> None:
    det = make_run(tmp_path / "raw" / "r0001", "lpd-raw")
    to_vds(det, tmp_path / "scratch" / "lpd.h5")
    with h5py.File(tmp_path / "scratch" / "lpd.h5", "r") as f:
        names = {vs.file_name for vs in f["image.data"].virtual_sources()}
    assert all(n.startswith("../raw/r0001/") for n in names)
    shutil.copytree(tmp_path, tmp_path.parent / (tmp_path.name + "-copy"))
    copy = tmp_path.parent / (tmp_path.name + "-copy")
    vdet = open_det(open_view(copy / "scratch" / "lpd.h5"), "lpd-raw")
    xr.testing.assert_identical(vdet.get_array("image.data"), det.get_array("image.data"))


def test_missing_source_refused_and_verified(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    det = make_run(tmp_path / "run", "agipd-raw")
    to_vds(det, tmp_path / "v.h5")
    victim = sorted((tmp_path / "run").glob("*AGIPD03*"))[0]
    victim.unlink()
    with pytest.raises(FileFormatError, match=f"missing.*{victim.name}.*detstack verify"):
        open_view(tmp_path / "v.h5")
    loose = open_view(tmp_path / "v.h5", check_sources=False)
    assert loose.record["form"] == "vds"
    assert cli_main(["verify", str(tmp_path / "v.h5")]) == 1
    assert f"MISSING: {victim}" in capsys.readouterr().out


def test_resized_source_refused(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "lpd-raw")
    to_vds(det, tmp_path / "v.h5")
    victim = sorted((tmp_path / "run").glob("*.h5"))[0]
    with open(victim, "ab") as fh:
        fh.write(b"\0" * 100)
    with pytest.raises(FileFormatError, match="changed in size"):
        open_view(tmp_path / "v.h5")


def test_modified_source_warns(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "lpd-raw")
    to_vds(det, tmp_path / "v.h5")
    victim = sorted((tmp_path / "run").glob("*.h5"))[0]
    os.utime(victim, (1e9, 1e9))
    with pytest.warns(UserWarning, match="modified since the view was written"):
        vdet = open_det(open_view(tmp_path / "v.h5"), "lpd-raw")
    xr.testing.assert_identical(vdet.get_array("image.data"), det.get_array("image.data"))


def test_existing_output_refused(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "agipd500k")
    out = tmp_path / "v.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        to_vds(det, out)
    assert out.read_bytes() == b"keep me"
    to_vds(det, out, overwrite=True)
    assert open_view(out).record["form"] == "vds"


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    det = make_run(tmp_path / "run", "agipd500k")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(vds, "write_coords", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        to_vds(det, tmp_path / "v.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_killed_write_leaves_no_file(tmp_path: Path) -> None:
    """A writer process killed while adding mappings leaves nothing under the name."""
    make_run(tmp_path / "run", "agipd500k")
    script = textwrap.dedent(f"""
        import os, signal, warnings
        import detstack
        from detstack.convert import vds
        warnings.simplefilter("ignore")
        real = vds.MappingBuilder.create
        def create(self, group, name):
            ds = real(self, group, name)
            if name == "image.data":
                os.kill(os.getpid(), signal.SIGKILL)
            return ds
        vds.MappingBuilder.create = create
        det = detstack.AGIPD500K(detstack.RunDirectory({str(tmp_path / 'run')!r}), raw=True)
        vds.to_vds(det, {str(tmp_path / 'v.h5')!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not (tmp_path / "v.h5").exists()


def test_newer_schema_refused(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "agipd500k")
    out = to_vds(det, tmp_path / "v.h5")
    with h5py.File(out, "r+") as f:
        record = json.loads(f.attrs["detstack_record"])
        f.attrs["detstack_record"] = json.dumps(record | {"schema_version": 3})
    with pytest.raises(FileFormatError, match="schema version 3.*Upgrade detstack"):
        open_view(out)


def test_not_a_view(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(FileFormatError, match="not a detstack view"):
        open_view(tmp_path / "plain.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(FileFormatError, match="not a readable HDF5 file"):
        open_view(tmp_path / "junk.h5")


def test_keys_subset_and_run_input(tmp_path: Path) -> None:
    make_run(tmp_path / "run", "jf-raw")
    out = to_vds(detstack.RunDirectory(tmp_path / "run"), tmp_path / "jf.h5",
                 keys=["data.adc", "data.memoryCell"])
    with h5py.File(out, "r") as f:
        assert sorted(k for k in f if "." in k) == ["data.adc", "data.memoryCell"]
        assert f["data.adc"].attrs["axes"] == "module:train:cell:slow_scan:fast_scan"
    vdet = detstack.JUNGFRAU(open_view(out), raw=True)
    assert vdet.n_modules == 4
    det = open_det(detstack.RunDirectory(tmp_path / "run"), "jf-raw")
    xr.testing.assert_identical(vdet.get_array("data.adc"), det.get_array("data.adc"))
    np.testing.assert_array_equal(vdet.cell_ids(), det.cell_ids())


def test_view_of_a_view_refused(tmp_path: Path) -> None:
    det = make_run(tmp_path / "run", "agipd500k")
    out = to_vds(det, tmp_path / "v.h5")
    vdet = open_det(open_view(out), "agipd500k")
    with pytest.raises(vds.ViewSourceError, match="not an EuXFEL HDF5 file"):
        to_vds(vdet, tmp_path / "v2.h5")
    assert not (tmp_path / "v2.h5").exists()


def test_cli_convert_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path / "run", "dssc-raw")
    out = tmp_path / "cli.h5"
    assert cli_main(["convert", str(tmp_path / "run"), str(out), "--to", "vds"]) == 0
    assert cli_main(["verify", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    det = open_det(detstack.RunDirectory(tmp_path / "run"), "dssc-raw")
    vdet = open_det(open_view(out), "dssc-raw")
    xr.testing.assert_identical(vdet.get_array("image.data"), det.get_array("image.data"))


@pytest.mark.parametrize("mapping", ["blocks", "compact"])
def test_mapping_forms_read_back(case: tuple[str, Path, Any], tmp_path: Path,
                                 mapping: str) -> None:
    """Blocked and compact mappings read back the same arrays through plain h5py and
    through the reader API (blocks of 2 trains, so blocks break inside sequence files)."""
    name, _, det = case
    out = to_vds(det, tmp_path / "v.h5", mapping=mapping, block_trains=2)
    plan = ViewPlan(det)
    with h5py.File(out, "r") as f:
        record = json.loads(f.attrs["detstack_record"])
        for kp in plan.keys:
            ds = f[kp.key]
            assert_equal_arrays(ds[()], expected_view(det, kp.key))
            assert_equal_arrays(ds[:, 1:3], expected_view(det, kp.key)[:, 1:3])
            form = ds.attrs["mapping"]
            assert record["mappings"][kp.key]["form"] == form
            if form == "blocks":
                n_blocks = -(-len(det.train_ids) // 2)
                maps = ds.id.get_create_plist().get_virtual_count()
                assert 0 < maps <= n_blocks
                assert {vs.file_name for vs in ds.virtual_sources()} == {"."}
                parts = f[f"_blocks/{kp.key}"]
                inner = sum(parts[p].id.get_create_plist().get_virtual_count() for p in parts)
                assert inner == int((plan.counts(kp.group) > 0).sum())
                assert record["mappings"][kp.key]["count"] == inner + maps
            else:
                assert form == "per-run"
    assert_reader_identical(det, open_det(open_view(out), name), CASES[name][0])


def test_auto_mapping_blocks_long_runs(tmp_path: Path) -> None:
    """'auto' blocks pixel keys of runs longer than block_trains; bad options refused."""
    det = make_run(tmp_path / "run", "agipd-raw")
    n = len(det.train_ids)
    to_vds(det, tmp_path / "short.h5", block_trains=n)
    to_vds(det, tmp_path / "long.h5", block_trains=n - 1)
    with h5py.File(tmp_path / "short.h5") as s, h5py.File(tmp_path / "long.h5") as lg:
        assert s["image.data"].attrs["mapping"] == "per-train"
        assert lg["image.data"].attrs["mapping"] == "blocks"
        assert lg["image.cellId"].attrs["mapping"] == "per-run"
        assert_equal_arrays(lg["image.data"][()], s["image.data"][()])
    with pytest.raises(ValueError, match="mapping must be one of"):
        to_vds(det, tmp_path / "x.h5", mapping="per-module")
    with pytest.raises(ValueError, match="block_trains"):
        to_vds(det, tmp_path / "x.h5", block_trains=0)
    assert not (tmp_path / "x.h5").exists()


def test_blocks_view_materializes(tmp_path: Path) -> None:
    """A blocked view copies into a self-contained file that reads the same without the
    run; the data are stored once (in the blocks), the key stays a view over them."""
    from detstack.convert import materialize
    det = make_run(tmp_path / "run", "agipd-corr")
    view = to_vds(det, tmp_path / "v.h5", mapping="blocks", block_trains=2)
    want = {k: expected_view(det, k) for k in ("image.data", "image.mask")}
    ref = det.get_array("image.data")
    out = materialize(view, tmp_path / "m.h5")
    shutil.rmtree(tmp_path / "run")
    with h5py.File(out) as m:
        for key, exp in want.items():
            assert_equal_arrays(m[key][()], exp)
            stored = [m[f"_blocks/{key}/{p}"] for p in m[f"_blocks/{key}"]]
            assert stored and not any(d.is_virtual for d in stored)
    vdet = open_det(open_view(out), "agipd-corr")
    xr.testing.assert_identical(vdet.get_array("image.data"), ref)


def test_block_runs_match_frame_runs(case: tuple[str, Path, Any]) -> None:
    """The per-train computation of copy blocks equals the frame map's per-frame one,
    for every index group and module (gaps, missing trains, several files)."""
    _, _, det = case
    for group in {det.kind.index_group, *det.data.index_groups(next(iter(det.source_to_modno)))}:
        fmap = det.group_map(group)
        for m in range(fmap.n_modules):
            for per_train in (False, True):
                assert vds.block_runs(fmap, m, per_train) == fmap.runs(m, per_train=per_train)
