"""Hostile and damaged manifests: every attack is refused with a typed error, and the
manifests detstack writes open wherever they were written.

Each case starts from a real manifest of a synthetic run and edits its JSON (or the
files around it) the way an attacker or an accident would.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

import detstack
from detstack import synth
from detstack.cli import main as cli_main
from detstack.convert import to_manifest
from detstack.errors import (
    DetstackError,
    FileFormatError,
    NotRegularFileError,
    UnsafeReferenceError,
    ViewLimitError,
)
from detstack.store import open_view
from detstack.store.manifest import manifest_store


def make(tmp_path: Path, where: str = "run") -> tuple[Any, Path, Path]:
    """(detector, run folder, manifest written into ``where`` below tmp_path)."""
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", raw=True, n_trains=3, frames_per_train=2,
                    modules=[0, 1], with_control=False)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    out = to_manifest(det, tmp_path / where / "view.json")
    return det, run, out


def edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def first_ref(doc: dict[str, Any]) -> str:
    return next(k for k, v in doc["refs"].items()
                if isinstance(v, list) and k.startswith("image.data/"))


def read_all(view: Any) -> Any:
    return detstack.AGIPD1M(view, raw=True).get_array("image.data")


def test_written_manifest_opens_anywhere_with_cli(tmp_path, monkeypatch, capsys):
    det, run, out = make(tmp_path, "views/deep")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    xr.testing.assert_identical(det.get_array("image.data"), read_all(open_view(out)))
    assert cli_main(["info", str(out)]) == 0
    assert "AGIPD1M" in capsys.readouterr().out


def test_symlink_to_etc_in_manifest_folder_is_refused(tmp_path):
    _, run, out = make(tmp_path)
    (run / "link").symlink_to("/etc")
    for target in ("{{base}}/link/passwd", str(run / "link" / "passwd")):
        def hostile(doc: dict[str, Any], t: str = target) -> None:
            doc["refs"][first_ref(doc)] = [t, 0, 100]
            doc["templates"] = {"base": str(run)}   # the compact form's template
        edit(out, hostile)
        with pytest.raises(UnsafeReferenceError, match="/etc/passwd"):
            open_view(out)
        with pytest.raises(UnsafeReferenceError):
            zarr.open_group(manifest_store(out), mode="r")


def test_record_listing_etc_passwd_is_refused(tmp_path):
    _, run, out = make(tmp_path)

    def hostile(doc: dict[str, Any]) -> None:
        doc["refs"][first_ref(doc)] = ["/etc/passwd", 0, 100]
        attrs = json.loads(doc["refs"][".zattrs"])
        attrs["detstack_record"]["source_files"].append(
            {"path": "/etc/passwd", "size": os.path.getsize("/etc/passwd"), "mtime": 0})
        doc["refs"][".zattrs"] = json.dumps(attrs)
        meta = json.loads(doc["refs"][".zmetadata"])
        meta["metadata"][".zattrs"] = attrs
        doc["refs"][".zmetadata"] = json.dumps(meta)
    edit(out, hostile)
    with pytest.raises(DetstackError, match="not an HDF5 file"):
        open_view(out)
    view = open_view(out, check_sources=False)
    with pytest.raises(UnsafeReferenceError, match="not an HDF5 file"):
        read_all(view)


def test_references_outside_dataset_storage_are_refused(tmp_path):
    _, run, out = make(tmp_path)
    doc = json.loads(out.read_text())
    key = first_ref(doc)
    url, offset, size = doc["refs"][key]
    for bad in ([url, 0, size],                              # the superblock / metadata
                [url, os.path.getsize(url.replace("{{base}}", str(out.parent))), 10]):
        edit(out, lambda d, b=bad: d["refs"].__setitem__(key, b))
        with pytest.raises(UnsafeReferenceError, match="outside the stored data|past its"):
            read_all(open_view(out))


def test_symlink_swapped_after_open_is_refused(tmp_path):
    det, run, out = make(tmp_path)
    view = open_view(out)
    read_all(view)
    source = sorted(run.glob("*AGIPD00*.h5"))[0]
    copy = tmp_path / "copy.h5"
    shutil.copy(source, copy)
    source.unlink()
    source.symlink_to(copy)               # same bytes, but not the file the record lists
    view._keepalive[0].fs.close_files()   # descriptors are reopened (and checked) later
    with pytest.raises(UnsafeReferenceError, match="now resolves to"):
        read_all(view)


def test_source_without_record_needs_allow(tmp_path):
    det, run, out = make(tmp_path, "views")

    def unlisted(doc: dict[str, Any]) -> None:
        for name in (".zattrs",):
            attrs = json.loads(doc["refs"][name])
            attrs["detstack_record"]["source_files"] = []
            doc["refs"][name] = json.dumps(attrs)
            meta = json.loads(doc["refs"][".zmetadata"])
            meta["metadata"][name] = attrs
            doc["refs"][".zmetadata"] = json.dumps(meta)
    edit(out, unlisted)
    with pytest.raises(UnsafeReferenceError, match="allowed_prefixes.*--allow"):
        open_view(out)
    view = open_view(out, allowed_prefixes=[str(run)])
    xr.testing.assert_identical(det.get_array("image.data"), read_all(view))
    assert cli_main(["info", str(out)]) == 2
    assert cli_main(["info", str(out), "--allow", str(run)]) == 0


def test_inline_decompression_bomb_is_refused(tmp_path):
    _, run, out = make(tmp_path)
    bomb = "base64:" + base64.b64encode(zlib.compress(b"\0" * (64 << 20), 9)).decode()
    edit(out, lambda d: d["refs"].__setitem__("train/0", bomb))
    assert out.stat().st_size < 1 << 20
    with pytest.raises(ViewLimitError, match="decompression bomb"):
        open_view(out)


@pytest.mark.parametrize("shape", [[10**15], [-1]])
def test_absurd_shapes_are_refused(tmp_path, shape):
    _, run, out = make(tmp_path)

    def huge(doc: dict[str, Any]) -> None:
        meta = json.loads(doc["refs"][".zmetadata"])
        meta["metadata"]["train/.zarray"]["shape"] = shape
        doc["refs"][".zmetadata"] = json.dumps(meta)
    edit(out, huge)
    with pytest.raises(ViewLimitError, match="elements|invalid shape"):
        open_view(out)


def test_deeply_nested_json_is_refused(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ViewLimitError, match="nested"):
        open_view(tmp_path / "deep.json")
    _, run, out = make(tmp_path)
    nested: Any = 1
    for _ in range(100):
        nested = [nested]
    edit(out, lambda d: d["refs"].__setitem__(".zattrs", json.dumps({"x": nested})))
    with pytest.raises(ViewLimitError, match="nested"):
        open_view(out)


def test_integer_fill_values_are_explicit(tmp_path):
    """The writer names every fill value (zarr-python 2 reads ``null`` as uninitialised
    memory); a manifest from elsewhere with ``null`` still reads absent chunks as 0."""
    _, run, out = make(tmp_path)
    meta = json.loads(json.loads(out.read_text())["refs"][".zmetadata"])["metadata"]
    arrays = {k[: -len("/.zarray")]: v for k, v in meta.items() if k.endswith("/.zarray")}
    assert arrays["image.pulseId"]["fill_value"] == 0
    assert arrays["image.data"]["fill_value"] == 0
    assert all(a["fill_value"] is not None for a in arrays.values()), arrays

    def null_fills(doc: dict[str, Any]) -> None:
        zmeta = json.loads(doc["refs"][".zmetadata"])
        for name, zarray in zmeta["metadata"].items():
            if name.endswith("/.zarray") and np.dtype(zarray["dtype"]).kind in "iu":
                zarray["fill_value"] = None
                if name in doc["refs"]:
                    doc["refs"][name] = json.dumps(zarray)
        doc["refs"][".zmetadata"] = json.dumps(zmeta)
    edit(out, null_fills)
    group = zarr.open_group(manifest_store(out), mode="r", zarr_format=2)
    assert group["image.pulseId"].fill_value == 0
    absent = group["image.data"][5]              # module slot 5: no file, no chunks
    assert absent.shape == (3, 2, 2, 512, 128) and not absent.any()


def _in_subprocess(code: str) -> subprocess.CompletedProcess[str]:
    """Run code that would hang if the refusal regressed; a timeout fails the test."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_fifo_manifest_and_fifo_source_are_refused(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    done = _in_subprocess(f"import detstack\ntry:\n    detstack.open_view({str(fifo)!r})\n"
                          "except detstack.errors.NotRegularFileError as e:\n    print(e)\n")
    assert "FIFO" in done.stdout, done.stderr
    _, run, out = make(tmp_path)
    source = sorted(run.glob("*AGIPD01*.h5"))[0]
    source.unlink()
    os.mkfifo(source)
    done = _in_subprocess(
        "import detstack\n"
        f"view = detstack.open_view({str(out)!r}, check_sources=False)\n"
        "try:\n    detstack.AGIPD1M(view, raw=True).get_array('image.data')\n"
        "except detstack.errors.NotRegularFileError as e:\n    print(e)\n")
    assert "FIFO" in done.stdout, done.stderr
    with pytest.raises(NotRegularFileError):
        open_view(out)


def test_changed_source_is_refused_even_unchecked(tmp_path):
    _, run, out = make(tmp_path)
    source = sorted(run.glob("*AGIPD00*.h5"))[0]
    data = bytearray(source.read_bytes())
    data[:8192] = data[:8192][::-1]          # same size, other content
    data[:8] = b"\x89HDF\r\n\x1a\n"
    source.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="missing or changed"):
        open_view(out)
    with pytest.raises(FileFormatError, match="different content"):
        read_all(open_view(out, check_sources=False))


def test_relocated_run_and_manifest_still_read(tmp_path):
    det, run, out = make(tmp_path)
    expected = det.get_array("image.data")
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "run", moved)
    got = read_all(open_view(moved / "view.json"))
    np.testing.assert_array_equal(expected.values, got.values)


def test_checked_files_are_hashed_once_and_again_after_a_write(tmp_path, monkeypatch):
    """A source file whose content was checked is not hashed again while fstat says it is
    the same (inode, size, mtime, ctime); a write in place, even with the old mtime put
    back, changes its ctime and is checked again, and refused."""
    from detstack.store.manifest import manifest_filesystem
    _, run, out = make(tmp_path)
    guard = manifest_filesystem(str(out), None, None).guard
    loc = next(loc for loc in guard.listed if "AGIPD00" in loc)
    os.close(guard._open(loc))
    assert loc in guard._checked
    hashed = []
    import detstack.store.manifest_guard as mg
    real = mg.fd_identity
    monkeypatch.setattr(mg, "fd_identity", lambda fd, *a: hashed.append(fd) or real(fd, *a))
    os.close(guard._open(loc))
    assert hashed == []                       # the same file: not hashed again
    before = os.stat(loc)
    data = bytearray(Path(loc).read_bytes())
    data[8:4104] = data[8:4104][::-1]         # same size, other content, same mtime
    Path(loc).write_bytes(bytes(data))
    os.utime(loc, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(FileFormatError, match="different content"):
        guard._open(loc)
    assert len(hashed) == 1
