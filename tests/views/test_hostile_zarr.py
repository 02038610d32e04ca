"""Damaged zarr stores: a deleted shard that the counts say holds frames, a shard that
is a FIFO, a record that disagrees with the arrays. Each is a typed error when read
through detstack, never zeros."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import detstack
from detstack import synth
from detstack.convert import to_zarr
from detstack.errors import MissingDataError, ViewRecordError
from detstack.store import open_view


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> Any:
    run = tmp_path_factory.mktemp("zrun") / "run"
    synth.write_run(run, "AGIPD1M", raw=True, n_trains=3, frames_per_train=2,
                    modules=[0, 1], with_control=False)
    return detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)


def read(view: Any) -> Any:
    return detstack.AGIPD1M(view, raw=True)["image.data"].ndarray()


def test_deleted_shard_is_an_error_in_folder_and_zip(det, tmp_path):
    folder = to_zarr(det, tmp_path / "v.zarr")
    shards = sorted(p for p in (Path(folder) / "image.data" / "c" / "1").rglob("*")
                    if p.is_file())
    shards[-1].unlink()
    with pytest.raises(MissingDataError, match="slot 1, train index"):
        read(open_view(folder))
    zipped = to_zarr(det, tmp_path / "v.zip")
    with zipfile.ZipFile(zipped) as src:
        member = sorted(n for n in src.namelist() if n.startswith("image.data/c/0/"))[-1]
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            if info.filename != member:
                dst.writestr(info, src.read(info))
    with pytest.raises(MissingDataError, match="slot 0, train index"):
        read(open_view(damaged))


def test_deleted_small_key_chunk_is_an_error(det, tmp_path):
    """Unsharded keys (pulse IDs...) are decoded by detstack too: a chunk the counts say
    holds rows is never read as fill."""
    folder = Path(to_zarr(det, tmp_path / "v.zarr"))
    ids = detstack.AGIPD1M(open_view(folder), raw=True)["image.pulseId"].ndarray()
    assert ids.shape == (2, 3 * 2) and ids.any()
    chunks = [p for p in (folder / "image.pulseId" / "c" / "1").rglob("*") if p.is_file()]
    assert len(chunks) == 1          # one chunk of up to 64 trains per module
    chunks[0].unlink()
    with pytest.raises(MissingDataError, match=r"chunk \(1, 0, 0\) of image.pulseId \(module slot 1"):
        detstack.AGIPD1M(open_view(folder), raw=True)["image.pulseId"].ndarray()


def test_absent_module_still_reads_as_fill(det, tmp_path):
    view = open_view(to_zarr(det, tmp_path / "v.zarr"))
    got = detstack.AGIPD1M(view, raw=True)["image.data"].ndarray(module_gaps=True)
    assert got.shape[0] == 16 and not got[5].any()


def test_fifo_shard_is_refused(det, tmp_path):
    folder = Path(to_zarr(det, tmp_path / "v.zarr"))
    shard = sorted(p for p in (folder / "image.data" / "c" / "0").rglob("*") if p.is_file())[0]
    shard.unlink()
    os.mkfifo(shard)
    code = ("import detstack\n"
            f"view = detstack.open_view({str(folder)!r})\n"
            "try:\n    detstack.AGIPD1M(view, raw=True)['image.data'].ndarray()\n"
            "except detstack.errors.NotRegularFileError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "FIFO" in done.stdout, done.stderr


@pytest.mark.parametrize("field,value", [("max_frames", 3), ("n_trains", 4)])
def test_record_disagreeing_with_arrays_is_refused(det, tmp_path, field, value):
    folder = Path(to_zarr(det, tmp_path / "v.zarr"))
    meta = json.loads((folder / "zarr.json").read_text())
    meta["attributes"]["detstack_record"][field] = value
    (folder / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ViewRecordError, match="disagrees"):
        open_view(folder)
