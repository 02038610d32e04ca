"""Blocked views built by worker processes: the same single file as a serial build,
errors travel back typed, and a failed or killed build leaves nothing under the name."""

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
import pytest
import xarray as xr
from h5_fixtures import assert_equal_arrays, expected_view, make_run, open_det

from detstack.cli import main as cli_main
from detstack.convert import to_vds, vds
from detstack.convert.plan import ViewPlan
from detstack.convert.vds import blocks
from detstack.store import open_view

KEYS = ("image.data", "image.mask", "image.gain")


def mappings(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every virtual dataset of a file with its mappings (names and selection bounds)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.is_virtual:
                out[name] = [(m.file_name, m.dset_name, m.vspace.get_select_bounds(),
                              m.src_space.get_select_bounds()) for m in obj.virtual_sources()]
        f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def corrected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("workers")
    return folder, make_run(folder / "run", "agipd-corr")


def test_workers_write_the_serial_view(corrected: tuple[Path, Any], tmp_path: Path) -> None:
    """Two workers give the serial build's mappings, arrays and record; the view reads
    through plain h5py and the reader API, verifies, and still reads once moved."""
    folder, det = corrected
    one = to_vds(det, folder / "one.h5", mapping="blocks", block_trains=1, workers=1,
                 overwrite=True)
    two = to_vds(det, folder / "two.h5", mapping="blocks", block_trains=1, workers=2,
                 overwrite=True)
    maps = mappings(two)
    assert maps == mappings(one)
    assert sum(name.startswith("_blocks/image.data/") for name in maps) == 4
    with h5py.File(one) as a, h5py.File(two) as b:
        ra, rb = (json.loads(f.attrs["detstack_record"]) for f in (a, b))
        assert {k: v for k, v in ra.items() if k != "created"} == \
            {k: v for k, v in rb.items() if k != "created"}
        assert rb["mappings"]["image.data"]["form"] == "blocks"
        for key in KEYS:
            assert_equal_arrays(b[key][()], expected_view(det, key))
            assert_equal_arrays(b[key][:, 1:3], expected_view(det, key)[:, 1:3])
    assert sorted(p.name for p in folder.iterdir()) == ["one.h5", "run", "two.h5"]
    assert cli_main(["verify", str(two)]) == 0
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved, symlinks=True)
    vdet = open_det(open_view(moved / "two.h5"), "agipd-corr")
    ref = open_det(open_view(one), "agipd-corr")
    xr.testing.assert_identical(vdet.get_array("image.data"), ref.get_array("image.data"))
    assert_equal_arrays(h5py.File(moved / "two.h5")["image.data"][()],
                        expected_view(det, "image.data"))


def test_worker_error_travels_back(corrected: tuple[Path, Any], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's typed error is raised by to_vds; no view and no temporary files remain."""
    _, det = corrected

    def broken(*args: Any, **kwargs: Any) -> None:
        raise vds.ViewSourceError("block 3 cannot be mapped")

    monkeypatch.setattr(blocks, "build_block", broken)    # inherited by the forked workers
    with pytest.raises(vds.ViewSourceError, match="block 3 cannot be mapped"):
        to_vds(det, tmp_path / "v.h5", mapping="blocks", block_trains=1, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_killed_parallel_write_leaves_nothing(corrected: tuple[Path, Any],
                                              tmp_path: Path) -> None:
    """A writer killed while its workers build leaves no view; the next write removes
    the dead writer's temporary folder and succeeds."""
    folder, det = corrected
    script = textwrap.dedent(f"""
        import os, signal, warnings
        import detstack
        from detstack.convert import vds
        from detstack.convert.vds import blocks
        warnings.simplefilter("ignore")
        real = blocks.ParallelBlocks.write
        def write(self, h5, kp):
            os.kill(os.getpid(), signal.SIGKILL)
        blocks.ParallelBlocks.write = write
        det = detstack.AGIPD1M(detstack.RunDirectory({str(folder / 'run')!r}))
        vds.to_vds(det, {str(tmp_path / 'v.h5')!r}, mapping="blocks", block_trains=1,
                   workers=2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    left = [p.name for p in tmp_path.iterdir()]
    assert "v.h5" not in left and any(name.endswith(".partial") for name in left)
    to_vds(det, tmp_path / "v.h5", mapping="blocks", block_trains=1, workers=2)
    assert [p.name for p in tmp_path.iterdir()] == ["v.h5"]


def test_workers_option(corrected: tuple[Path, Any], tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """workers must be positive; short views are built here unless the environment asks."""
    _, det = corrected
    with pytest.raises(ValueError, match="workers must be a positive number"):
        to_vds(det, tmp_path / "x.h5", mapping="blocks", workers=0)
    assert not (tmp_path / "x.h5").exists()
    plan = ViewPlan(det)
    kps = [plan.key("image.data")]
    assert blocks.block_workers(None, plan, kps) == 1         # a few mappings
    monkeypatch.setenv(blocks.WORKERS_ENV, "2")
    assert blocks.block_workers(None, plan, kps) == 2
    assert blocks.block_workers(3, plan, kps) == 3
    assert blocks.block_workers(3, plan, []) == 1              # nothing blocked
    assert os.environ[blocks.WORKERS_ENV] == "2"
