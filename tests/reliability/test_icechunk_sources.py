"""Icechunk views: a virtual reference whose source chunk is missing, moved or changed, or
that is gone from the repository, is a typed error naming the file (or repository), key,
module and train when read, never fill values or other bytes. Read with
``check_sources=False``, so that the reader itself, not the check at open, must notice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.convert.icechunk import open_icechunk, to_icechunk
from detstack.errors import DetstackError, FileFormatError, MissingDataError

RUN = dict(kind="AGIPD1M", raw=True, n_trains=3, frames_per_train=2, modules=[0, 3],
           with_control=False)          # raw: uncompressed, a rewrite reads as other values
DATA = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data"
SOURCE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """(run, repository, the values it must read)."""
    synth.write_run(tmp_path / "run", **RUN)
    det = detstack.AGIPD1M(detstack.RunDirectory(tmp_path / "run"), raw=True)
    to_icechunk(det, tmp_path / "v.icechunk")
    return tmp_path / "run", tmp_path / "v.icechunk", det.get_array("image.data").values


def module0(run: Path) -> Path:
    return next(run.glob("*AGIPD00-S00000.h5"))


def read(repo: Path) -> np.ndarray:
    view = open_icechunk(repo, check_sources=False)
    return detstack.AGIPD1M(view, raw=True).get_array("image.data").values


def later(path: Path) -> None:
    """Give the file a modification time after the repository's (as any rewrite would)."""
    t = time.time() + 5
    os.utime(path, (t, t))


def rewrite_frame(path: Path) -> None:
    """Change frame 0 of module 0 in place (same size, same layout), in a child process."""
    subprocess.run([sys.executable, "-c", "import h5py\n"
                    f"with h5py.File({str(path)!r}, 'r+') as h5:\n"
                    f"    ds = h5[{DATA!r}]\n    ds[0] = ds[0] + 1\n"], check=True)


def delete_reference(repo: Path) -> None:
    import icechunk
    from zarr.core.sync import sync
    storage = icechunk.local_filesystem_storage(str(repo))
    session = icechunk.Repository.open(storage).writable_session("main")
    sync(session.store.delete("image.data/c/0/1/0/0/0/0"))     # module 0, train 10001
    session.commit("a reference lost")


DAMAGE = {
    "moved": (lambda run, repo: module0(run).rename(run.parent / "elsewhere.h5"),
              MissingDataError, "is missing (moved or deleted)"),
    "deleted": (lambda run, repo: module0(run).unlink(), MissingDataError,
                "is missing (moved or deleted)"),
    "rewritten": (lambda run, repo: (rewrite_frame(module0(run)), later(module0(run))),
                  FileFormatError, "since the repository was written"),
    "touched": (lambda run, repo: later(module0(run)), FileFormatError,
                "since the repository was written"),
    "truncated": (lambda run, repo: os.truncate(module0(run), module0(run).stat().st_size // 2),
                  FileFormatError, "content changed since the repository was written"),
    # cut short within the clock tick of the write: Icechunk's time check passes, the read
    # fails without naming the file; detstack still names it
    "truncated, same mtime": (lambda run, repo: same_mtime(
        module0(run), lambda f: os.truncate(f, f.stat().st_size // 2)),
        FileFormatError, "content changed since the repository was written"),
}


def same_mtime(path: Path, change: Any) -> None:
    before = path.stat()
    change(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_changed_source_is_a_typed_error(repo: tuple[Path, Path, np.ndarray],
                                         damage: str) -> None:
    run, path, want = repo
    np.testing.assert_array_equal(read(path), want)
    change, error, message = DAMAGE[damage]
    name = module0(run).name
    change(run, path)
    with pytest.raises(error) as err:
        read(path)
    msg = str(err.value)
    for part in (name, message, "image.data", SOURCE, "train 1000", "v.icechunk"):
        assert part in msg, (part, msg)
    assert "\n" not in msg                      # one line for the CLI
    with pytest.raises(DetstackError):          # checked at open, or refused when read
        detstack.AGIPD1M(open_icechunk(path), raw=True).get_array("image.data")
    count("faults")


def test_deleted_reference_is_a_typed_error(repo: tuple[Path, Path, np.ndarray]) -> None:
    run, path, want = repo
    delete_reference(path)
    import icechunk
    import zarr
    plain = icechunk.Repository.open(
        icechunk.local_filesystem_storage(str(path)),
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {run.resolve().as_uri() + "/": None}))
    # plain zarr reads the lost chunk as fill: the silent read detstack must refuse
    assert (zarr.open_group(plain.readonly_session("main").store, mode="r")
            ["image.data"][0, 1, 0] == 0).all()
    with pytest.raises(MissingDataError, match=r"virtual reference of chunk \(0, 1, .*"
                       r"module slot 0, train index 1\) is missing"):
        read(path)
    view = detstack.AGIPD1M(open_icechunk(path, check_sources=False), raw=True)
    other = view.select_trains(detstack.by_index[[0, 2]]).get_array("image.data").values
    np.testing.assert_array_equal(other, want[:, [0, 2]])    # the rest still reads
    count("faults")


def test_plain_verify_finds_the_lost_reference(repo: tuple[Path, Path, np.ndarray]) -> None:
    """``detstack verify`` (console script, no --full) checks every promised reference."""
    import json
    run, path, _ = repo
    script = str(Path(sys.executable).with_name("detstack"))
    done = subprocess.run([script, "verify", str(path), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    delete_reference(path)
    done = subprocess.run([script, "verify", str(path), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = json.loads(done.stdout)["errors"]
    assert any("virtual reference of chunk (0, 1, 0, 0, 0, 0)" in e for e in errors), errors
    count("faults")
