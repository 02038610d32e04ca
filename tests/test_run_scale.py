"""Runs with many files: a bounded handle pool, more files than `ulimit -n`, the metadata
cache. Small real runs (synth) stand in for long ones: what matters is the file count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.run import meta_cache

N_TRAINS = 6


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 modules x 6 one-train sequence files (+ 6 control files): 102 files."""
    folder = tmp_path_factory.mktemp("many") / "run"
    synth.write_run(folder, "AGIPD1M", n_trains=N_TRAINS, frames_per_train=2,
                    trains_per_file=1, missing_trains={5: [10003]})
    return folder


CHILD = textwrap.dedent("""
    import json, os, resource, sys
    import numpy as np
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    import detstack
    from detstack import synth
    from detstack.run.handles import POOL
    run = detstack.RunDirectory(sys.argv[1])
    det = detstack.AGIPD1M(run)
    arr = det.get_array("image.data")
    wrong = 0
    for m in range(16):
        for t, tid in enumerate(det.train_ids):
            for p in range(2):
                want = synth.frame_values("AGIPD1M", m, tid, p)
                got = arr.values[m, t, p]
                if m == 5 and tid == 10003:
                    wrong += int(got.any())
                else:
                    wrong += int(not np.array_equal(got, want))
    n_trains = sum(1 for _ in det.trains())
    print(json.dumps({"files": len(run.files), "modules": det.n_modules, "wrong": wrong,
                      "trains": n_trains, "pool": len(POOL), "limit": POOL.limit,
                      "fds": len(os.listdir("/proc/self/fd"))}))
""")


def test_more_files_than_the_open_file_limit(many_files: Path, tmp_path: Path) -> None:
    n_files = len(list(many_files.glob("*.h5")))
    limit = 48
    assert n_files > 2 * limit
    env = {**os.environ, "DETSTACK_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(many_files), str(limit)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Skipping" not in out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["files"] == n_files
    assert res["modules"] == 16
    assert res["trains"] == N_TRAINS - 1     # trains() skips 10003, which module 5 lacks
    assert res["wrong"] == 0
    assert res["limit"] == limit // 4 and res["pool"] <= res["limit"]
    assert res["fds"] < limit


def test_handles_are_bounded_and_reopened(many_files: Path, monkeypatch) -> None:
    from detstack.run.handles import POOL
    monkeypatch.setattr(POOL, "limit", 5)
    run = detstack.RunDirectory(many_files)
    assert len(POOL) <= 5
    seen = {}
    for tid, data in run.select("*/DET/*", "image.data").trains():
        assert len(POOL) <= 5
        for src, d in data.items():
            if "image.data" not in d:
                continue      # module 5 has no train 10003
            seen[(src, tid)] = int(d["image.data"][0, 0, 0, 1])   # stamp: train & 0xFFFF
    assert len(seen) == 16 * N_TRAINS - 1
    assert all(v == tid & 0xFFFF for (_, tid), v in seen.items())


def test_cache_outside_the_folder(many_files: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "c"))
    before = sorted(os.listdir(many_files))
    first = detstack.RunDirectory(many_files)
    path = meta_cache.cache_path(many_files)
    assert path.is_file() and path.parent.parent == tmp_path / "c"
    cached = meta_cache.load(many_files)
    assert len(cached) == len(first.files)
    second = detstack.RunDirectory(many_files)
    assert second.train_ids == first.train_ids
    assert second.all_sources == first.all_sources
    for a, b in zip(first.files, second.files, strict=True):
        assert np.array_equal(a.train_ids, b.train_ids) and np.array_equal(a.validity, b.validity)
    assert sorted(os.listdir(many_files)) == before
    # a damaged cache is ignored and rewritten; a deleted one is rebuilt
    path.write_bytes(b"PK\x03\x04 not a zip")
    assert detstack.RunDirectory(many_files).train_ids == first.train_ids
    assert len(meta_cache.load(many_files)) == len(first.files)
    path.unlink()
    assert detstack.AGIPD1M(detstack.RunDirectory(many_files)).n_modules == 16
    assert path.is_file()


def test_cache_entry_of_a_changed_file_is_not_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "c"))
    folder = tmp_path / "run"
    synth.write_run(folder, "AGIPD1M", modules=[0], n_trains=4, frames_per_train=1)
    assert detstack.RunDirectory(folder).train_ids == [10000, 10001, 10002, 10003]
    synth.write_run(folder, "AGIPD1M", modules=[0], n_trains=3, first_train=500,
                    frames_per_train=1, overwrite=True)
    assert detstack.RunDirectory(folder).train_ids == [500, 501, 502]


def test_cache_can_be_turned_off(tmp_path: Path, many_files: Path, monkeypatch) -> None:
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "off"))
    detstack.RunDirectory(many_files, cache=False)
    monkeypatch.setenv("DETSTACK_NO_CACHE", "1")
    detstack.RunDirectory(many_files)
    assert not (tmp_path / "off").exists()


def test_worker_processes_open_the_same_run(many_files: Path, tmp_path: Path,
                                            monkeypatch) -> None:
    """Files read by worker processes give the run a serial open gives; a damaged file
    is reported the same way (the workers hand it back), and nothing is cached twice.
    Run as an unguarded script (no ``__main__`` check), as users write them."""
    bad = tmp_path / "run"
    bad.mkdir()
    for p in many_files.glob("*.h5"):
        os.symlink(p, bad / p.name)
    (bad / "RAW-R0001-AGIPD07-S00099.h5").write_bytes(b"not an HDF5 file" * 64)
    script = tmp_path / "open_run.py"
    script.write_text(textwrap.dedent(f"""
        import json, warnings
        import detstack
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            run = detstack.RunDirectory({str(bad)!r})
        print(json.dumps({{"files": [str(f.path) for f in run.files],
                           "tids": [f.train_ids.tolist() for f in run.files],
                           "valid": [f.validity.tolist() for f in run.files],
                           "sources": sorted(run.all_sources),
                           "warnings": [str(x.message) for x in w]}}))
    """))
    results = {}
    for workers in ("0", "2"):
        env = {**os.environ, "DETSTACK_CACHE_DIR": str(tmp_path / f"c{workers}"),
               "DETSTACK_OPEN_WORKERS": workers}
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.count("{") == 1      # the script ran once, not in the workers
        results[workers] = json.loads(out.stdout)
    assert results["0"] == results["2"]
    assert len(results["2"]["files"]) == len(list(many_files.glob("*.h5")))
    assert any("AGIPD07-S00099" in w and "not an HDF5 file" in w
               for w in results["2"]["warnings"])


@pytest.mark.parametrize("fmt", ["1.1", "1.3"])
def test_cache_restores_what_opening_read(tmp_path: Path, monkeypatch, fmt: str) -> None:
    """INDEX/trainId (zero padded) and INDEX/flag come back from the cache as stored,
    dtype and values (flags are kept in 8 bits there when they fit), and the reopened
    run has the same trains and suspect trains."""
    import h5py
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "c"))
    folder = tmp_path / "run"
    synth.write_run(folder, "AGIPD1M", modules=[0, 1], n_trains=6, frames_per_train=1,
                    format_version=fmt, bad_flags=[1, 4], index_pad=8, trains_per_file=4,
                    with_control=False)
    first = detstack.RunDirectory(folder, inc_suspect_trains=False)
    cached = meta_cache.load(folder)
    assert len(cached) == 4
    good: set[int] = set()
    for p in sorted(folder.glob("*.h5")):
        with h5py.File(p, "r") as f:
            raw, flag = f["INDEX/trainId"][:], f["INDEX/flag"][:]
        trusted = (flag == 0) if fmt == "1.1" else (flag != 0)     # 1.1 stores it inverted
        good |= {int(t) for t, ok in zip(raw, trusted, strict=True) if t and ok}
        info = cached[p.name][1]
        assert info.flag is not None and info.flag.dtype == flag.dtype
        np.testing.assert_array_equal(info.flag, flag)
        np.testing.assert_array_equal(info.raw_train_ids, raw)
    second = detstack.RunDirectory(folder, inc_suspect_trains=False)
    assert second.train_ids == first.train_ids == sorted(good) and len(good) < 6
    for a, b in zip(first.files, second.files, strict=True):
        np.testing.assert_array_equal(a.validity, b.validity)
        assert a.info is None and b.info is None      # taken by opening, not kept
