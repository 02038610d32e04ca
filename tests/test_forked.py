"""A worker's error reaches the parent typed; one that cannot be pickled as its message;
workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from detstack.convert.forked import fork_pool, run_reporting, unpack
from detstack.convert.vds import blocks
from detstack.errors import DetstackError, MissingDataError


class Unpicklable(RuntimeError):
    def __reduce__(self):
        raise TypeError("no pickling")


def test_result_and_typed_error_travel():
    assert unpack(run_reporting(lambda i: i * 3, 7)) == 21

    def fails(i: int) -> None:
        raise MissingDataError("/data/r0001/RAW-R0001-AGIPD05-S00002.h5",
                               f"train {i} of module 5 is missing")

    reported = run_reporting(fails, 11)
    assert reported[0] == "error"
    with pytest.raises(MissingDataError, match="train 11 of module 5"):
        unpack(reported)


def test_unpicklable_error_travels_as_its_message():
    def fails(i: int) -> None:
        raise Unpicklable(f"task {i} broke")

    reported = run_reporting(fails, 2)
    assert reported[1] is None
    with pytest.raises(DetstackError, match="Unpicklable: task 2 broke"):
        unpack(reported)


def test_every_error_class_pickles_with_its_type_and_fields():
    import pickle

    from detstack.convert.manifest.storage import UnsupportedKeyError
    from detstack.errors import MissingDependencyError, OutputWriteError
    from detstack.store.manifest import SourceUnreachableError
    made = [MissingDataError("/data/f.h5", "train 3 is missing", "rebuild it"),
            OutputWriteError("/out/v.h5", "disk full"),
            MissingDependencyError("fastparquet", "parquet", "writing .parq manifests"),
            SourceUnreachableError("refs/0", "/data/f.h5", "moved"),
            UnsupportedKeyError("image.data", "szip compression")]
    for exc in made:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert vars(back) == vars(exc)


def _gone(pid: int) -> bool:
    """The process has exited (absent, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_parent_leaves_no_worker(tmp_path: Path) -> None:
    """The manifest pool's forked workers die with a killed parent (they would otherwise
    wait for tasks forever); the vds pool uses the same initializer."""
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from detstack.convert.manifest.parallel import Tasks
        folder = Path({str(tmp_path)!r})
        def task(i):
            (folder / f"{{os.getpid()}}.pid").touch()
            time.sleep(120)
        with Tasks(task, 2) as tasks:
            while len(list(folder.glob("*.pid"))) < 2:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "DETSTACK_MANIFEST_WORKERS": "2"}
    log = tmp_path / "stderr.txt"   # a file, not a pipe: workers left over would hold it
    with open(log, "wb") as err:
        proc = subprocess.run([sys.executable, "-c", script], stdout=err, stderr=err,
                              timeout=60, env=env)
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and os.getpid() not in pids
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if not _gone(pid)]
    for pid in left:   # do not leave them running when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"
    assert blocks.fork_pool is fork_pool      # the pool that uses die_with_parent


def test_workers_forget_the_parents_reading_pool(tmp_path: Path) -> None:
    """A worker forked after the parent used its reading thread pool reads with threads
    too (the inherited pool has no threads in the child: without the initializer
    forgetting it, the worker would wait for it forever)."""
    script = textwrap.dedent("""
        import threading
        from detstack.convert.manifest.parallel import Tasks
        from detstack.detectors import reading
        n = reading.DEFAULT_THREADS   # every lane of the parent's pool started, idle now
        reading.run_jobs([threading.Barrier(n).wait] * n, n)
        assert reading._POOL is not None
        def task(i):
            done = []
            reading.run_jobs([lambda j=j: done.append(i * 10 + j) for j in range(4)], 2)
            return sorted(done)
        with Tasks(task, 2) as tasks:
            print(tasks.results())
    """)
    env = {**os.environ, "DETSTACK_MANIFEST_WORKERS": "2"}
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("a worker waited forever for the parent's reading pool")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[[0, 1, 2, 3], [10, 11, 12, 13]]"
