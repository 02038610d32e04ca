"""Opening the files of a run folder: the metadata cache, worker processes, unusable files.

Each file is opened lazily (`RunFile`: its sources are checked when first used) from
what opening reads (`FileInfo`): from the metadata cache when it has the file, else
from the file. A first open of a 2,000-file run spends ~2-3 ms per file in HDF5 (open,
three small reads, close), and longer when the page cache is cold: each file's metadata
is a few scattered pages. HDF5 serialises threads, so when many files are not cached
they are shared out to a few worker processes, started by loky (joblib's process pool:
unlike ``fork`` it cannot inherit a lock another thread holds, and unlike ``spawn`` it
does not re-run a user's script that lacks an ``if __name__ == "__main__"`` guard). A
file a worker cannot read comes back as ``None`` and is opened again here, which raises
or warns exactly as a serial open would: the workers change how fast a run opens, never
what it holds.

``DETSTACK_OPEN_WORKERS`` sets the number of processes (``0`` or ``1``: read every file
in this process). By default workers are used on machines with at least ``MIN_CORES``
cores (one per core, at most 4) for runs with at least ``MIN_FILES`` files the cache
lacks. On the 2-core benchmark machine, quiet, 2,055 files with a warm page cache open in
1.7-2.4 s with 2 workers against 2.7-3.5 s serial (EXtra-data, which opens in processes
too: 3.5-4.2 s); at a load of 13 two workers cost a little more than they saved (8.8-12.6
s against 8.5-10.6 s), a price worth the quiet-machine gain.
"""


from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import signal
import stat
import warnings
from pathlib import Path

from ..errors import FileFormatError, UnusableFileWarning
from ..progress import track
from . import meta_cache
from .derived import is_derived_view
from .files import FileInfo, RunFile, read_file_info
from .h5read import open_file
from .handles import require_regular

log = logging.getLogger(__name__)

MIN_FILES = 200        # below this, starting the workers costs more than it saves
MIN_CORES = 2
MAX_WORKERS = 4
BATCH = 64             # files per task: few round trips, still balanced


def workers_wanted(n_files: int) -> int:
    """How many worker processes to use for ``n_files`` files (0: none)."""
    env = os.environ.get("DETSTACK_OPEN_WORKERS", "")
    if env.strip().isdigit():
        wanted = int(env)
    else:
        cores = os.cpu_count() or 1
        wanted = min(MAX_WORKERS, cores) if n_files >= MIN_FILES and cores >= MIN_CORES else 0
    return wanted if wanted > 1 else 0


def _ignore_sigint() -> None:
    """Ctrl-C reaches the caller, which shuts the pool down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read_batch(paths: list[str]) -> list[FileInfo | None]:
    """In a worker: the FileInfo of each file, None where anything goes wrong."""
    out: list[FileInfo | None] = []
    for p in paths:
        try:
            f = open_file(p)
            try:
                out.append(read_file_info(Path(p), f))
            finally:
                f.close()
        except Exception:   # noqa: BLE001 - the caller reopens it and reports the problem
            out.append(None)
    return out


def read_infos(paths: list[Path], workers: int) -> dict[Path, FileInfo]:
    """{path: FileInfo} of the files the workers could read (the others are absent).

    Any failure of the pool itself (no processes allowed, a worker killed) is logged
    and leaves the files to the caller.
    """
    batches = [[os.fspath(p) for p in paths[i:i + BATCH]] for i in range(0, len(paths), BATCH)]
    found: dict[Path, FileInfo] = {}
    try:
        from loky import ProcessPoolExecutor
        if multiprocessing.current_process().daemon:
            return found     # already a worker of someone's pool: no pools inside pools
        with ProcessPoolExecutor(min(workers, len(batches)), initializer=_ignore_sigint,
                                 env={"OPENBLAS_NUM_THREADS": "1"}) as pool:
            for batch, infos in zip(batches, pool.map(_read_batch, batches), strict=True):
                for p, info in zip(batch, infos, strict=True):
                    if info is not None:
                        found[Path(p)] = info
    except ImportError:
        log.info("loky is not installed: opening %d files one after the other", len(paths))
    except (OSError, RuntimeError, concurrent.futures.process.BrokenProcessPool) as exc:
        log.info("opening files in worker processes failed (%s); opening them here", exc)
    return found


def open_files(folder: Path, names: list[str], use_cache: bool
                ) -> tuple[list[RunFile], list[str]]:
    """Open each file lazily (its sources are checked when first used); skip the unusable
    ones (not regular files, not HDF5, no INDEX...) with a warning."""
    cached = meta_cache.load(folder) if use_cache else {}
    fresh: dict[str, tuple[meta_cache.Stamp, FileInfo]] = {}
    files: list[RunFile] = []
    problems: list[str] = []
    read_ahead = read_uncached(folder, names, cached)
    for name in track(names, "scanning files"):
        p = folder / name
        try:
            stamp = meta_cache.stamp(require_regular(p))   # a FIFO would hang HDF5
            hit = cached.get(name)
            info = hit[1] if hit is not None and hit[0] == stamp else read_ahead.get(p)
            f = RunFile(p, check=False, info=info)
            if use_cache:
                f.stamp = stamp   # lets the source cache keep this file's index details
            fresh[name] = (stamp, f.take_info())
            files.append(f)
        except FileFormatError as exc:
            if is_derived_view(p):      # a view written beside the run: not a run file
                continue
            problems.append(str(exc))
            warnings.warn(UnusableFileWarning(f"Skipping unusable file: {exc}", p),
                          stacklevel=3)
    stale = [n for n, (st, _) in fresh.items() if n not in cached or cached[n][0] != st]
    if use_cache and stale:   # entries of other files (include=) are kept: stamps guard them
        meta_cache.save(folder, {**cached, **fresh})
    return files, problems


def read_uncached(folder: Path, names: list[str],
                   cached: dict[str, tuple[meta_cache.Stamp, FileInfo]]) -> dict[Path, FileInfo]:
    """What opening reads, for the regular files the cache lacks, from worker processes
    when there are many of them; {} otherwise."""
    todo = []
    for name in names:
        p = folder / name
        try:
            st = p.stat()
        except OSError:
            continue
        hit = cached.get(name)
        if stat.S_ISREG(st.st_mode) and (hit is None or hit[0] != meta_cache.stamp(st)):
            todo.append(p)
    workers = workers_wanted(len(todo))
    return read_infos(todo, workers) if workers else {}
