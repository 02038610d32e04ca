"""Hostile or damaged views run through ``open_view``, the reader and ``verify --full``
in a child process (timeout, 3 GiB address-space limit): each must be refused with a
typed error naming what is wrong. The refusals themselves are built by relviews;
this suite attacks the public entry points with them."""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
from relsuite_child import HERE, run_child
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.convert import to_manifest, to_vds

RUN = dict(kind="AGIPD1M", raw=True, n_trains=2, frames_per_train=2, modules=[0],
           with_control=False)


def _manifest(folder: Path) -> tuple[Path, dict]:
    run = folder / "run"
    synth.write_run(run, **RUN)
    to_manifest(detstack.AGIPD1M(detstack.RunDirectory(run), raw=True), run / "m.json")
    return run / "m.json", json.loads((run / "m.json").read_text())


def symlink_escape(folder: Path) -> tuple[Path, str]:
    path, doc = _manifest(folder)
    os.symlink("/etc", path.parent / "sys")
    doc["refs"]["image.data/0.0.0.0.0.0"] = ["{{base}}/sys/passwd", 0, 64]
    path.write_text(json.dumps(doc))
    return path, "passwd"


def zlib_bomb(n_mib: int) -> bytes:
    """A valid zlib stream of ``n_mib`` MiB of zeros (~1 KB per MiB), built from one
    compressed MiB repeated (a full flush makes every block alike): seconds faster than
    compressing the zeros."""
    zeros = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    last = c.compress(zeros) + c.flush()
    check = 1
    for _ in range(n_mib):
        check = zlib.adler32(zeros, check)
    return b"\x78\xda" + block * (n_mib - 1) + last + check.to_bytes(4, "big")


def inline_bomb(folder: Path) -> tuple[Path, str]:
    path, doc = _manifest(folder)
    bomb = zlib_bomb(1024)
    doc["refs"]["train/0"] = "base64:" + base64.b64encode(bomb).decode()
    path.write_text(json.dumps(doc))
    return path, "train"


def absurd_shape(folder: Path) -> tuple[Path, str]:
    path, doc = _manifest(folder)
    meta = json.loads(doc["refs"]["image.data/.zarray"])
    meta["shape"][1] = 10**15
    doc["refs"]["image.data/.zarray"] = json.dumps(meta)
    path.write_text(json.dumps(doc))
    return path, "image.data"


def deleted_reference(folder: Path) -> tuple[Path, str]:
    """A data chunk's reference removed: zarr would read it as zeros."""
    path, doc = _manifest(folder)
    del doc["refs"]["image.data/0.1.1.0.0.0"]      # module 0, train 10001, frame 1
    path.write_text(json.dumps(doc))
    return path, "train 10001"


def _vds_with_source(folder: Path, source: str) -> tuple[Path, str]:
    run = folder / "run"
    synth.write_run(run, **RUN)
    view = folder / "v.h5"
    to_vds(detstack.AGIPD1M(detstack.RunDirectory(run), raw=True), view)
    with h5py.File(view, "r+") as h5:
        ds = h5["image.data"]
        shape, dtype, attrs = ds.shape, ds.dtype, dict(ds.attrs)
        del h5["image.data"]
        layout = h5py.VirtualLayout(shape, dtype)
        layout[0, 0, 0] = h5py.VirtualSource(source, "data", shape[3:], dtype)
        new = h5.create_virtual_dataset("image.data", layout, fillvalue=0)
        new.attrs.update(attrs)
    return view, Path(source).name


def vds_to_passwd(folder: Path) -> tuple[Path, str]:
    return _vds_with_source(folder, "/etc/passwd")


def vds_to_unlisted_missing(folder: Path) -> tuple[Path, str]:
    return _vds_with_source(folder, str(folder / "run" / "RAW-R0001-AGIPD07-S00000.h5"))


ATTACKS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "manifest-symlink-escape": symlink_escape,
    "manifest-inline-bomb": inline_bomb,
    "manifest-absurd-shape": absurd_shape,
    "manifest-deleted-reference": deleted_reference,
    "vds-maps-etc-passwd": vds_to_passwd,
    "vds-maps-unlisted-missing-file": vds_to_unlisted_missing,
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_refused(name: str, tmp_path: Path) -> None:
    view, culprit = ATTACKS[name](tmp_path)
    lines, ended = run_child([str(HERE / "relsuite_open.py"), str(view)], 120)
    assert ended == "exit", f"{name}: {ended}"
    (result,) = lines
    assert result["outcome"] == "typed", result
    assert culprit in result["message"], result["message"]
    count("attacks")
