"""detstack preview writes a real PNG: frame in detector layout, availability, frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clitools import cli, hide_package, one_line_error

from detstack import convert, synth
from detstack.detectors import AGIPD1M
from detstack.run import RunDirectory

WIDTH, HEIGHT = 1400, 600


def check_png(path: Path) -> np.ndarray:
    """The PNG exists, has the expected size and is not blank."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[:2] == (HEIGHT, WIDTH)
    rgb = img[..., :3].reshape(-1, 3)
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50   # plots, not a flat fill
    assert float(rgb.std()) > 0.05
    return img


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("preview") / "run"
    synth.write_run(path, "AGIPD1M", n_trains=5, frames_per_train=3,
                    modules=[m for m in range(16) if m != 6], missing_trains={2: [10002]},
                    with_control=False, mean_photons=3.0)
    return path


def test_preview_of_a_run(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    res = cli("preview", run, "--train", "10001", "--pulse", "2", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "train 10001 frame 2, 15 of 16 modules, extra_geom" in res.stdout
    check_png(out)


def test_preview_of_a_view_without_extra_geom_is_tiled(run: Path, tmp_path: Path) -> None:
    convert.to_vds(AGIPD1M(RunDirectory(run), raw=True), tmp_path / "view.h5")
    out = tmp_path / "v.png"
    res = cli("preview", tmp_path / "view.h5", "-o", out, env=hide_package(tmp_path, "extra_geom"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("tiled")
    check_png(out)


def test_preview_errors(run: Path, tmp_path: Path) -> None:
    one_line_error(cli("preview", run, "--pulse", "3", "-o", tmp_path / "x.png"),
                   "--pulse 3 is beyond the 3 frames of train 10000")
    one_line_error(cli("preview", run, "--train", "1", "-o", tmp_path / "x.png"),
                   "train 1 has no frames", "--train")
    one_line_error(cli("preview", run, "-o", tmp_path / "x.png",
                       env=hide_package(tmp_path, "matplotlib")),
                   "matplotlib", "pip install 'detstack[plot]'")
    assert not (tmp_path / "x.png").exists()
