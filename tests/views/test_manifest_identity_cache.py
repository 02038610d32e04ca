"""Opening a manifest checks every source file's content identity; a file whose stat
(inode, size, modification and change time) is what it was when its identity was last
computed (by the writer, or a previous check) passes without being read. Anything that
changes a file's content changes its stat, so such a file is read and refused."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from test_manifest import open_det, write

from detstack.convert import to_manifest
from detstack.errors import FileFormatError
from detstack.store import manifest_guard, open_view

RUN = "agipd-raw-chunked"   # 3 modules, 2 sequence files each (one module lacks a train)


def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the run files whose identity the guard computes, as it does (the
    sidecar, whose arrays are read through a checked descriptor at every open, is left
    out), one entry per computation."""
    calls: list[str] = []
    real = manifest_guard.fd_identity

    def counted(fd: int, size: int | None = None) -> dict[str, Any]:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not path.endswith("arrays.h5"):
            calls.append(os.path.basename(path))
        return real(fd, size)
    monkeypatch.setattr(manifest_guard, "fd_identity", counted)
    return calls


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, int]:
    """A run, its Parquet manifest outside it, and the number of source files the record
    lists, with a cache of its own."""
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DETSTACK_NO_CACHE", raising=False)
    run = write(tmp_path / "run", RUN)
    out = to_manifest(open_det(run, RUN), tmp_path / "v.parq")
    listed = len(json.loads((out / ".zmetadata").read_text())["metadata"][".zattrs"]
                 ["detstack_record"]["source_files"])
    return run, out, listed


def test_the_writer_leaves_identities_the_first_open_uses(built, monkeypatch):
    run, out, listed = built
    before = sorted(p.name for p in run.iterdir())
    calls = hashes(monkeypatch)
    open_view(out)
    open_view(out)
    assert calls == []
    assert sorted(p.name for p in run.iterdir()) == before   # nothing in the run folder
    assert listed == len(before) == 12


def test_without_the_cache_every_file_is_read(built, monkeypatch, tmp_path):
    _, out, listed = built
    calls = hashes(monkeypatch)
    monkeypatch.setenv("DETSTACK_NO_CACHE", "1")
    open_view(out)
    open_view(out)
    assert sorted(calls) == sorted(2 * [p.name for p in built[0].iterdir()])
    monkeypatch.delenv("DETSTACK_NO_CACHE")
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "another"))   # a new machine
    open_view(out)
    assert len(calls) == 3 * listed
    open_view(out)
    assert len(calls) == 3 * listed     # the first check remembered them


def _source(run: Path) -> Path:
    return sorted(run.glob("RAW-*AGIPD03*.h5"))[0]


def test_rewritten_in_place_with_times_restored_is_refused(built, monkeypatch):
    run, out, _ = built
    source = _source(run)
    st = source.stat()
    with h5py.File(source, "r+") as f:          # same size, other bytes
        f.attrs["edited"] = np.int64(1)
    os.truncate(source, st.st_size)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))   # the change time moved on
    assert source.stat().st_size == st.st_size
    assert source.stat().st_mtime_ns == st.st_mtime_ns
    calls = hashes(monkeypatch)
    with pytest.raises(FileFormatError, match="missing or changed") as err:
        open_view(out)
    assert source.name in str(err.value) and calls == [source.name]


def test_replaced_by_another_file_of_same_size_and_time_is_refused(built):
    run, out, _ = built
    source = _source(run)
    st = source.stat()
    other = source.with_name("copy.tmp")
    shutil.copyfile(source, other)
    with h5py.File(other, "r+") as f:
        f.attrs["edited"] = np.int64(1)
    os.truncate(other, st.st_size)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, source)                   # a new inode under the old name
    with pytest.raises(FileFormatError, match="missing or changed"):
        open_view(out)


def test_a_missing_file_is_refused_before_the_cache_is_asked(built):
    run, out, _ = built
    source = _source(run)
    source.unlink()
    with pytest.raises(FileFormatError, match=f"{source.name} is missing"):
        open_view(out)


@pytest.mark.parametrize("damage", ["garbage", "files-a-list", "short-state", "float-state"])
def test_a_damaged_cache_is_ignored_and_rewritten(built, monkeypatch, tmp_path, damage):
    run, out, listed = built
    caches = sorted((tmp_path / "cache" / "runs").glob("*.identities.npz"))
    assert len(caches) == 1    # the run folder's, written by to_manifest
    for path in caches:
        if damage == "garbage":
            path.write_bytes(b"\0not a cache" * 10)
            continue
        with np.load(path) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
        if damage == "files-a-list":
            meta["files"] = list(meta["files"].items())
        else:
            for entry in meta["files"].values():
                entry[0] = entry[0][:4] if damage == "short-state" else \
                    [float(v) for v in entry[0]]
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        path.write_bytes(buf.getvalue())
    calls = hashes(monkeypatch)
    open_view(out)
    assert sorted(calls) == sorted(p.name for p in run.iterdir())   # read again, each file
    open_view(out)
    assert len(calls) == listed           # and remembered again
