"""The corpus of bad runs: a registry of case builders anyone can extend.

A case writes a small synthetic AGIPD-1M run (``base_run``) into a folder and damages
it; it returns the *culprit*, a piece of text (usually a file name) that every typed
error must name. ``reference`` is ``None`` when every data entry point must refuse the
run, else a function turning a clean copy into what the damaged run must read as (a
documented recovery, e.g. a skipped unreadable file). Register a new case with::

    @bad_run("my-case")
    def _(folder: Path) -> str:
        files = base_run(folder)
        ...damage files...
        return files[1].name

``validate_sees``: ``detstack validate`` (which reads no pixel data) must report it.
``xfail`` says which known gap a case still hits (strict: the mark must go once the
gap is closed); the closing line counts those cases separately.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from detstack import synth

SRC = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"
RUN = dict(kind="AGIPD1M", raw=True, n_trains=4, frames_per_train=[3, 2, 0, 3],
           modules=[0, 1, 3], missing_trains={1: [10002]}, with_control=False)


@dataclass(frozen=True)
class BadRun:
    name: str
    build: Callable[[Path], str]
    reference: Callable[[Path], None] | None = None
    xfail: str | None = None
    validate_sees: bool = True     # `detstack validate` must report it (exit status 1)


CASES: list[BadRun] = []


def bad_run(name: str, reference: Callable[[Path], None] | None = None,
            xfail: str | None = None, validate_sees: bool = True
            ) -> Callable[[Callable[[Path], str]], Callable[[Path], str]]:
    def register(build: Callable[[Path], str]) -> Callable[[Path], str]:
        CASES.append(BadRun(name, build, reference, xfail, validate_sees))
        return build
    return register


def base_run(folder: Path, **changes: object) -> list[Path]:
    """The clean run every case starts from (module files only, sorted by module)."""
    return [p for p in synth.write_run(folder, **{**RUN, **changes}) if "AGIPD" in p.name]


def module_file(folder: Path, module: int) -> Path:
    return next(folder.glob(f"*AGIPD{module:02d}-S00000.h5"))


def drop_module_file(module: int) -> Callable[[Path], None]:
    def reference(folder: Path) -> None:
        module_file(folder, module).unlink()
    return reference


def drop_nth_module_file(n: int) -> Callable[[Path], None]:
    """The reference for a case that damages ``base_run(...)[n]``: that file left out."""
    def reference(folder: Path) -> None:
        sorted(p for p in folder.glob("*.h5") if "AGIPD" in p.name)[n].unlink()
    return reference


def _edit(path: Path, fn: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "r+") as h5:
        fn(h5)


def _index(h5: h5py.File, module: int, name: str) -> h5py.Dataset:
    return h5[f"INDEX/{SRC.format(module)}/image/{name}"]


def _replace(h5: h5py.File, path: str, data: np.ndarray) -> None:
    del h5[path]
    h5.create_dataset(path, data=data)


# -- files that are not (whole) HDF5 files: skipped with a warning ------------------------

@bad_run("text-file", reference=drop_module_file(1))
def _(folder: Path) -> str:
    f = base_run(folder)[1]
    f.write_text("not HDF5, only the right name\n" * 50)
    return f.name


@bad_run("garbage-bytes", reference=drop_module_file(1))
def _(folder: Path) -> str:
    f = base_run(folder)[1]
    f.write_bytes(np.random.default_rng(1).bytes(8192))
    return f.name


@bad_run("empty-file", reference=drop_module_file(3))
def _(folder: Path) -> str:
    f = base_run(folder)[2]
    f.write_bytes(b"")
    return f.name


@bad_run("truncated-file", reference=drop_module_file(1))
def _(folder: Path) -> str:
    f = base_run(folder)[1]
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) // 2)
    return f.name


@bad_run("stray-text-file", reference=lambda folder: None, validate_sees=False)
def _(folder: Path) -> str:
    base_run(folder)
    (folder / "notes.txt").write_text("a user's notes next to the run")
    return "notes.txt"


# -- index problems: refused ---------------------------------------------------------------

@bad_run("count-past-end", reference=drop_module_file(0))
def _(folder: Path) -> str:
    f = base_run(folder)[0]
    _edit(f, lambda h5: _index(h5, 0, "count").__setitem__(3, 50))
    return f.name


@bad_run("negative-count-signed")
def _(folder: Path) -> str:
    f = base_run(folder)[0]

    def damage(h5: h5py.File) -> None:
        count = _index(h5, 0, "count")[...].astype(np.int64)
        count[1] = -2
        _replace(h5, f"INDEX/{SRC.format(0)}/image/count", count)
    _edit(f, damage)
    return f.name


@bad_run("negative-first-unsigned")
def _(folder: Path) -> str:
    f = base_run(folder)[0]

    def damage(h5: h5py.File) -> None:
        first = _index(h5, 0, "first")[...].astype(np.uint64)
        first[1] = np.uint64(2**64 - 1)
        _replace(h5, f"INDEX/{SRC.format(0)}/image/first", first)
    _edit(f, damage)
    return f.name


@bad_run("overlapping-trains")
def _(folder: Path) -> str:
    f = base_run(folder)[0]
    _edit(f, lambda h5: _index(h5, 0, "first").__setitem__(1, 1))
    return f.name


@bad_run("all-zero-train-ids", reference=drop_nth_module_file(2))
def _(folder: Path) -> str:
    f = base_run(folder)[2]

    def damage(h5: h5py.File) -> None:
        h5["INDEX/trainId"][...] = 0
    _edit(f, damage)
    return f.name


# -- modules that disagree: refused --------------------------------------------------------

def _rewrite_key(h5: h5py.File, module: int, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    path = f"INSTRUMENT/{SRC.format(module)}/image/data"
    data = fn(h5[path][...])
    del h5[path]
    h5.create_dataset(path, data=data, chunks=(1,) + data.shape[1:])


@bad_run("module-narrower-frames")
def _(folder: Path) -> str:
    f = base_run(folder)[2]
    _edit(f, lambda h5: _rewrite_key(h5, 3, lambda d: d[..., :64]))
    return f.name


@bad_run("module-float32-data")
def _(folder: Path) -> str:
    f = base_run(folder)[1]
    _edit(f, lambda h5: _rewrite_key(h5, 1, lambda d: d.astype(np.float32)))
    return f.name


@bad_run("module-uint32-data")
def _(folder: Path) -> str:
    f = base_run(folder)[1]
    _edit(f, lambda h5: _rewrite_key(h5, 1, lambda d: d.astype(np.uint32) + 70000))
    return f.name


@bad_run("corrupt-compressed-chunk", validate_sees=False)
def _(folder: Path) -> str:
    f = base_run(folder, layout="deflate")[0]
    with h5py.File(f, "r") as h5:
        ds = h5[f"INSTRUMENT/{SRC.format(0)}/image/data"]
        offset = ds.id.get_chunk_info(1).byte_offset
    with open(f, "r+b") as fh:
        fh.seek(offset + 2)
        fh.write(b"\xff" * 64)
    return f.name


def _data_path(module: int) -> str:
    return f"INSTRUMENT/{SRC.format(module)}/image/data"


def _zero_row(module: int, row: int) -> Callable[[Path], None]:
    """The reference for a chunk never written: its row reads as HDF5's fill value 0."""
    def reference(folder: Path) -> None:
        _edit(module_file(folder, module), lambda h5: h5[_data_path(module)].__setitem__(row, 0))
    return reference


@bad_run("never-written-chunk", reference=_zero_row(0, 1), validate_sees=False)
def _(folder: Path) -> str:
    """INDEX counts a frame whose chunk the DAQ never wrote: every reader and view form
    reads HDF5's fill value there, as h5py does (the manifest writer records the hole, so
    its reader does not take it for a deleted reference)."""
    f = base_run(folder)[0]

    def damage(h5: h5py.File) -> None:
        data = h5[_data_path(0)][...]
        del h5[_data_path(0)]
        ds = h5.create_dataset(_data_path(0), shape=data.shape, dtype=data.dtype,
                               chunks=(1,) + data.shape[1:])
        ds[:1] = data[:1]
        ds[2:] = data[2:]
    _edit(f, damage)
    return f.name


@bad_run("fifo-named-h5", reference=drop_module_file(1))
def _(folder: Path) -> str:
    files = base_run(folder)
    files[1].unlink()
    os.mkfifo(files[1])
    return files[1].name


def case(name: str) -> BadRun:
    return next(c for c in CASES if c.name == name)
