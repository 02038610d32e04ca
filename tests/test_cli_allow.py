"""``--allow PREFIX`` on every command that opens views: trust is widened only when the
user names the place, through the installed console script."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from clitools import cli, cli_json, one_line_error

from detstack import synth


@pytest.fixture(scope="module")
def unlisted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run, manifest whose record lists none of the files its references reach)."""
    root = tmp_path_factory.mktemp("allow")
    run = root / "run"
    synth.write_run(run, "AGIPD1M", raw=True, n_trains=3, frames_per_train=2, modules=[0, 1],
                    with_control=False)
    manifest = root / "views" / "view.json"
    assert cli("convert", run, manifest, "--raw").returncode == 0
    doc = json.loads(manifest.read_text())
    attrs = json.loads(doc["refs"][".zattrs"])
    attrs["detstack_record"]["source_files"] = []
    doc["refs"][".zattrs"] = json.dumps(attrs)
    meta = json.loads(doc["refs"][".zmetadata"])
    meta["metadata"][".zattrs"] = attrs
    doc["refs"][".zmetadata"] = json.dumps(meta)
    manifest.write_text(json.dumps(doc))
    return run, manifest


def test_info_and_preview(unlisted: tuple[Path, Path], tmp_path: Path) -> None:
    run, manifest = unlisted
    error = one_line_error(cli("info", manifest), "pass --allow PREFIX naming")
    assert "allowed_prefixes" not in error and "(CLI:" not in error
    doc = cli_json("info", manifest, "--allow", run)
    assert doc["detectors"][0]["modules"]["present"] == [0, 1]
    one_line_error(cli("preview", manifest, "-o", tmp_path / "p.png"), "--allow PREFIX")
    res = cli("preview", manifest, "-o", tmp_path / "p.png", "--allow", run)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_verify(unlisted: tuple[Path, Path]) -> None:
    run, manifest = unlisted
    refused = cli_json("verify", manifest, status=1)
    assert refused["ok"] is False and "--allow PREFIX" in refused["errors"][0]
    res = cli("verify", manifest)
    assert res.returncode == 1 and res.stdout.startswith("REFUSED:") and "--allow" in res.stdout
    assert "allowed_prefixes" not in res.stdout and "(CLI:" not in res.stdout
    trusted = cli_json("verify", manifest, "--allow", run, "--full")
    assert trusted["ok"] is True and not trusted["errors"]
    assert "could not be compared" in trusted["notes"][0]   # the record lists no sources


def test_convert_reads_runs_only(unlisted: tuple[Path, Path], tmp_path: Path) -> None:
    """No writer takes a view as its source, so convert has no trust to widen: a view as
    RUN is refused whatever the options."""
    run, manifest = unlisted
    for name in ("v.h5", "v.zarr"):
        one_line_error(cli("convert", manifest, tmp_path / name), "is a view",
                       "convert the run it was made from")
        assert not (tmp_path / name).exists()
    assert cli("convert", run, tmp_path / "v.h5", "--raw", "--allow", run).returncode == 2


def view_linking_outside(tmp_path: Path) -> tuple[Path, Path]:
    """An HDF5 view with an external link to a file its record does not list."""
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", raw=True, n_trains=2, frames_per_train=2, modules=[0],
                    with_control=False)
    view = tmp_path / "view.h5"
    assert cli("convert", run, view, "--raw").returncode == 0
    other = tmp_path / "elsewhere" / "other.h5"
    other.parent.mkdir()
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with h5py.File(view, "r+") as f:
        f["extra"] = h5py.ExternalLink(str(other), "/x")
    return view, other


def test_hdf5_view_with_an_external_link(tmp_path: Path) -> None:
    view, other = view_linking_outside(tmp_path)
    assert cli_json("verify", view, status=1)["errors"]
    assert cli_json("verify", view, "--allow", other.parent)["ok"] is True
    one_line_error(cli("info", view), "external link")
    assert cli_json("info", view, "--allow", other.parent)["trains"]["count"] == 2


def test_allow_on_an_icechunk_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "r.icechunk"
    repo.mkdir()
    one_line_error(cli("verify", repo, "--allow", tmp_path), "not to Icechunk")


def test_archive_refuses_a_view_linking_outside_its_record(tmp_path: Path) -> None:
    """`archive` (materialize) applies the view trust rules: a detstack view with an
    external link to a file its record does not list is not copied into an archive
    unless --allow names the folder; then it is archived and reads the same."""
    view, other = view_linking_outside(tmp_path)
    out = tmp_path / "copy.h5"
    one_line_error(cli("archive", view, out), "external link")
    assert not out.exists()
    assert cli("archive", view, out, "--allow", other.parent).returncode == 0
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["extra"][()], np.arange(3))
