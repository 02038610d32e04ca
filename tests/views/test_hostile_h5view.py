"""Hostile and damaged HDF5 views: mappings, links and external storage that lead
outside the record, missing mapped sources, and records that disagree with arrays.

Every case starts from a real view of a synthetic run and edits it with h5py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.convert import to_vds
from detstack.errors import (
    MissingDataError,
    UnsafeReferenceError,
    ViewRecordError,
)
from detstack.store import open_view
from detstack.store.h5_guard import view_file_problems

KEY = "image.pulseId"


def make(tmp_path: Path) -> tuple[Any, Path, Path]:
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", raw=True, n_trains=3, frames_per_train=2,
                    modules=[0, 1], with_control=False)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    return det, run, to_vds(det, tmp_path / "view.h5")


def remap(view: Path, key: str, file_name: str, dset_name: str | None = None) -> None:
    """Point every mapping of ``key`` at ``file_name`` (same source dataset names)."""
    with h5py.File(view, "r+") as f:
        ds = f[key]
        layout = h5py.VirtualLayout(ds.shape, ds.dtype)
        for m in ds.virtual_sources():
            src = h5py.VirtualSource(file_name, dset_name or m.dset_name,
                                     shape=m.src_space.shape)
            layout[_sel(m.vspace)] = src[_sel(m.src_space)]
        fill = ds.fillvalue
        del f[key]
        f.create_virtual_dataset(key, layout, fillvalue=fill)


def _sel(space: h5py.h5s.SpaceID) -> tuple[slice, ...]:
    start, stride, count, block = space.get_regular_hyperslab()
    return tuple(slice(s, s + c * b) for s, c, b in zip(start, count, block, strict=True))


def read(view: Any, key: str = KEY) -> Any:
    return detstack.AGIPD1M(view, raw=True)[key].ndarray()


def test_mapping_to_unlisted_file_is_refused(tmp_path):
    det, run, view = make(tmp_path)
    outside = tmp_path / "outside.h5"
    shutil.copy(sorted(run.glob("*AGIPD00*.h5"))[0], outside)  # a real file, not listed
    remap(view, KEY, str(outside))
    opened = open_view(view)
    with pytest.raises(UnsafeReferenceError, match="outside.h5"):
        read(opened)
    np.testing.assert_array_equal(read(opened, "image.data"), det["image.data"].ndarray())
    assert any("UNSAFE" in p and "outside.h5" in p
               for p in view_file_problems(str(view), opened.record))


def test_mapping_to_etc_passwd_and_missing_unlisted_file(tmp_path):
    _, run, view = make(tmp_path)
    for target in ("/etc/passwd", str(tmp_path / "gone.h5")):
        remap(view, KEY, target)
        with pytest.raises(UnsafeReferenceError, match=target):
            read(open_view(view))


def test_missing_listed_source_is_an_error_when_read(tmp_path):
    _, run, view = make(tmp_path)
    sorted(run.glob("*AGIPD01*.h5"))[0].unlink()
    with pytest.raises(detstack.errors.FileFormatError, match="missing"):
        open_view(view)
    opened = open_view(view, check_sources=False)
    with pytest.raises(MissingDataError, match="AGIPD01"):   # never read as fill
        read(opened)
    assert any(p.startswith("MISSING") for p in view_file_problems(str(view), opened.record))


def test_external_link_outside_is_refused(tmp_path):
    _, run, view = make(tmp_path)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with h5py.File(view, "r+") as f:
        f["sneaky"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    with pytest.raises(UnsafeReferenceError, match="external link"):
        open_view(view)
    opened = open_view(view, allowed_prefixes=[str(tmp_path)])   # trust widened explicitly
    assert read(opened).shape[0] == 2


def test_external_raw_storage_is_refused(tmp_path):
    _, run, view = make(tmp_path)
    with h5py.File(view, "r+") as f:
        shape, dtype = f[KEY].shape, f[KEY].dtype
        del f[KEY]
        f.create_dataset(KEY, shape, dtype,
                         external=[("/etc/passwd", 0, int(np.prod(shape)) * dtype.itemsize)])
    with pytest.raises(UnsafeReferenceError, match="external raw storage"):
        read(open_view(view))


@pytest.mark.parametrize("field,value,where", [("max_frames", 3, "read"),
                                               ("n_trains", 2, "open"),
                                               ("modules", {"0": 0, "99": 1}, "open")])
def test_record_disagreeing_with_arrays_is_refused(tmp_path, field, value, where):
    _, run, view = make(tmp_path)
    with h5py.File(view, "r+") as f:
        record = json.loads(f.attrs["detstack_record"])
        if field == "modules":
            mods = record["detector"]["modules"]
            record["detector"]["modules"] = {k: mods[str(v)] for k, v in value.items()}
        else:
            record[field] = value
        f.attrs["detstack_record"] = json.dumps(record)
    if where == "open":
        with pytest.raises(ViewRecordError, match="disagrees|fit"):
            open_view(view)
    else:
        with pytest.raises(ViewRecordError, match="record describes"):
            read(open_view(view))


def test_fifo_named_like_a_view_is_refused(tmp_path):
    fifo = tmp_path / "view.h5"
    os.mkfifo(fifo)
    code = (f"import detstack\ntry:\n    detstack.open_view({str(fifo)!r})\n"
            "except detstack.errors.NotRegularFileError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "FIFO" in done.stdout, done.stderr
