"""Plain ``detstack verify`` (no ``--full``) checks every shard of a zarr folder store by
its index alone: present where the counts say, index whole, consistent with the file and
not empty where the counts promise rows. Run through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.convert import to_zarr

RUN = dict(kind="AGIPD1M", raw=True, n_trains=4, frames_per_train=[3, 0, 5, 2],
           modules=[0, 3], missing_trains={3: [10002]}, with_control=False)
SCRIPT = str(Path(sys.executable).with_name("detstack"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store per layout, written once and copied by each test."""
    folder = tmp_path_factory.mktemp("shards")
    synth.write_run(folder / "run", **RUN)
    det = detstack.AGIPD1M(detstack.RunDirectory(folder / "run"), raw=True)
    out = {}
    for layout in ("trains", "frames"):
        out[layout] = folder / f"{layout}.zarr"
        to_zarr(det, out[layout], layout=layout)
    return out


def copy(pristine: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    import shutil
    target = tmp_path / f"{layout}.zarr"
    shutil.copytree(pristine[layout], target)
    return target


def verify(store: Path) -> tuple[int, dict]:
    done = subprocess.run([SCRIPT, "verify", str(store), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode >= 0, done.stderr          # a negative status is a crash
    return done.returncode, json.loads(done.stdout)


def shards_of(store: Path, module: int) -> list[Path]:
    return sorted(p for p in (store / "image.data" / "c" / str(module)).rglob("*")
                  if p.is_file())


@pytest.mark.parametrize("layout", ["trains", "frames"])
def test_healthy_store_verifies(pristine: dict[str, Path], layout: str) -> None:
    code, doc = verify(pristine[layout])
    assert code == 0 and doc["ok"] and not doc["errors"], doc


@pytest.mark.parametrize("layout", ["trains", "frames"])
def test_deleted_shard_is_found_without_full(pristine: dict[str, Path], layout: str,
                                             tmp_path: Path) -> None:
    store = copy(pristine, layout, tmp_path)
    victim = shards_of(store, 3)[0]
    victim.unlink()
    code, doc = verify(store)
    assert code == 1 and not doc["ok"]
    assert any("is missing" in e and "image.data" in e and str(victim) in e
               for e in doc["errors"]), doc
    count("faults")


def test_truncated_shard_is_found(pristine: dict[str, Path], tmp_path: Path) -> None:
    store = copy(pristine, "trains", tmp_path)
    victim = shards_of(store, 0)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) // 2])          # the index at the end is gone
    code, doc = verify(store)
    assert code == 1
    assert any(str(victim) in e and "index" in e for e in doc["errors"]), doc
    victim.write_bytes(b"")                            # an empty file
    code, doc = verify(store)
    assert code == 1 and any(str(victim) in e for e in doc["errors"]), doc
    count("faults", 2)


def _rewrite_index(shard: Path, change) -> None:
    """Change the shard's index (16 bytes per inner chunk, then a crc32c) and write a
    matching checksum, so only the index's content is wrong."""
    import google_crc32c
    data = bytearray(shard.read_bytes())
    n = _n_inner(shard)
    start = len(data) - 16 * n - 4
    index = np.frombuffer(bytes(data[start:start + 16 * n]), "<u8").reshape(n, 2).copy()
    change(index)
    raw = index.astype("<u8").tobytes()
    data[start:] = raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()
    shard.write_bytes(bytes(data))


def _n_inner(shard: Path) -> int:
    array = next(p for p in shard.parents if (p / "zarr.json").is_file())
    meta = json.loads((array / "zarr.json").read_text())
    conf = meta["codecs"][0]["configuration"]
    inner = conf["chunk_shape"]
    outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
    return int(np.prod([o // i for o, i in zip(outer, inner, strict=True)]))


def test_index_past_the_file_and_emptied_chunk(pristine: dict[str, Path],
                                               tmp_path: Path) -> None:
    store = copy(pristine, "trains", tmp_path)
    victim = shards_of(store, 0)[0]

    def past_the_end(index: np.ndarray) -> None:
        used = np.flatnonzero(index[:, 0] != np.iinfo(np.uint64).max)
        index[used[0], 0] = 10**9

    _rewrite_index(victim, past_the_end)
    code, doc = verify(store)
    assert code == 1 and any("points past the data" in e and str(victim) in e
                             for e in doc["errors"]), doc

    store = copy(pristine, "trains", tmp_path / "b")

    def emptied(index: np.ndarray) -> None:
        index[:] = np.iinfo(np.uint64).max               # every inner chunk "empty"

    victim = shards_of(store, 0)[0]
    _rewrite_index(victim, emptied)
    code, doc = verify(store)
    assert code == 1 and any("is empty, but the store's counts say it holds rows" in e
                             for e in doc["errors"]), doc
    # zarr itself would read that shard as fill values without a word
    import zarr
    arr = zarr.open_group(str(store), mode="r")["image.data"]
    assert (arr[0, 0] == 0).all()
    count("faults", 2)
