"""Every writer on a full disk: ``OutputWriteError`` naming the target, nothing under
the final name, no temporary file left, and no crash (HDF5 used to segfault here).

The disk is a tmpfs mounted for the test (the suite runs as root in CI); where
mounting is not allowed the same writers run with ``RLIMIT_FSIZE`` (SIGXFSZ ignored,
so writes past the limit fail with EFBIG), which the test names in its id.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.convert import to_manifest, to_vds, to_zarr
from detstack.convert.archive import materialize
from detstack.convert.cxi import to_cxi
from detstack.convert.frames_file import write_frames
from detstack.errors import OutputWriteError

RUN = dict(kind="AGIPD1M", raw=True, n_trains=3, frames_per_train=8, modules=[0, 1, 2],
           with_control=False)


def _mount(where: Path, size: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def small_disk(base: Path, size: int) -> Iterator[tuple[Path, Callable[[int], contextlib.AbstractContextManager[None]]]]:
    """(folder, limit(free_bytes)): a folder on a small disk, and a context leaving only
    ``free_bytes`` writable there."""
    where = base / f"disk-{uuid.uuid4().hex[:6]}"
    mounted = _mount(where, size)

    @contextlib.contextmanager
    def limit(free: int) -> Iterator[None]:
        if mounted:
            st = os.statvfs(where)
            filler = where / "filler"
            with open(filler, "wb") as f:
                f.write(b"\0" * max(st.f_bavail * st.f_frsize - free, 0))
            try:
                yield
            finally:
                filler.unlink()
        else:
            old = resource.getrlimit(resource.RLIMIT_FSIZE)
            handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (free, old[1]))
            try:
                yield
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, old)
                signal.signal(signal.SIGXFSZ, handler)
    try:
        yield where, limit
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fulldisk") / "run"
    synth.write_run(folder, **RUN)
    to_vds(detstack.AGIPD1M(detstack.RunDirectory(folder), raw=True), folder / "view.h5")
    return folder


def _frames(det: detstack.AGIPD1M, out: Path) -> None:
    n = det.frame_map.train_counts().astype(np.int64)
    write_frames(det, out, np.repeat(np.asarray(det.frame_map.train_ids), n),
                 np.concatenate([np.arange(c) for c in n]))


WRITERS: dict[str, tuple[str, Callable[[detstack.AGIPD1M, Path, Path], object]]] = {
    "vds": ("v.h5", lambda det, run, out: to_vds(det, out)),
    "cxi": ("v.cxi", lambda det, run, out: to_cxi(det, out)),
    "manifest-json": ("m.json", lambda det, run, out: to_manifest(det, out, relative=False)),
    "manifest-parquet": ("m.parq", lambda det, run, out: to_manifest(det, out, relative=False)),
    "zarr": ("s.zarr", lambda det, run, out: to_zarr(det, out, compressor=False)),
    "zarr-zip": ("s.zip", lambda det, run, out: to_zarr(det, out, compressor=False)),
    "frames": ("f.h5", lambda det, run, out: _frames(det, out)),
    "materialize": ("mat.h5", lambda det, run, out: materialize(run / "view.h5", out,
                                                                compression=None)),
}


def _size(path: Path) -> int:
    """Bytes ``path`` takes on a tmpfs (whole 4 KiB pages per file)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in files)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.8])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_full_disk(run: Path, tmp_path: Path, writer: str, fraction: float) -> None:
    name, write = WRITERS[writer]
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    write(det, run, tmp_path / name)
    size = _size(tmp_path / name)
    free = int(size * fraction)
    with small_disk(tmp_path, 2 * size + (4 << 20)) as (disk, limit):
        out = disk / name
        try:
            with limit(free):
                write(det, run, out)
        except OutputWriteError as exc:
            count("faults")
            assert str(out) in str(exc) and "nothing was left" in str(exc)
            left = sorted(p.name for p in disk.iterdir() if p.name != "filler")
            assert left == [], left
        else:
            pytest.fail(f"{writer} fitted in {free} bytes; the test must make the disk smaller")
        write(det, run, out)          # space again: the same call now succeeds
        assert out.exists()
