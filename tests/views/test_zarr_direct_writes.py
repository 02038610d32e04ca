"""Chunk objects written past the page cache (``O_DIRECT``): the same bytes as a
buffered write, the exact size (no block padding left), the buffered path where the
file system or the device refuses direct I/O, and the switch that turns it off."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from detstack.convert.zarr import direct_file
from detstack.convert.zarr.encode import ObjectFile, write_parts


def _pieces(seed: int, sizes: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, n, dtype=np.uint8) for n in sizes]


def _joined(parts: list) -> bytes:
    return b"".join(bytes(memoryview(p).cast("B")) for p in parts)


def test_direct_writes_are_used_and_give_the_bytes(tmp_path: Path) -> None:
    """Pieces of odd sizes, one larger than the staging buffer, across several flushes."""
    stage = direct_file.STAGE_BYTES
    sizes = [1, 4095, 4097, stage - 3, 2 * stage + 11, 0, 333_333, 7]
    parts = _pieces(0, sizes)
    path = tmp_path / "shard"
    path.write_bytes(b"x" * (3 * stage + 10_000_000))     # a longer, older object
    with ObjectFile(str(path)) as f:
        assert f.direct is not None      # this file system (the test's tmp) takes O_DIRECT
        assert fcntl.fcntl(f.fd, fcntl.F_GETFL) & os.O_DIRECT
        for i in range(0, len(parts), 3):
            assert f.write(parts[i:i + 3]) == sum(sizes[i:i + 3])
    assert path.stat().st_size == sum(sizes)
    assert path.read_bytes() == _joined(parts)


@pytest.mark.parametrize("total", [1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 4096])
def test_write_parts_of_large_objects(tmp_path: Path, total: int) -> None:
    parts = _pieces(1, [total // 3, total // 3, total - 2 * (total // 3)])
    path = tmp_path / "obj"
    write_parts(str(path), parts)
    assert path.read_bytes() == _joined(parts)


def test_switched_off_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETSTACK_DIRECT_WRITES", "0")
    with ObjectFile(str(tmp_path / "a")) as f:
        assert f.direct is None
        assert not fcntl.fcntl(f.fd, fcntl.F_GETFL) & os.O_DIRECT
        f.write(_pieces(2, [10_000]))
    assert (tmp_path / "a").stat().st_size == 10_000


def test_file_system_without_direct_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``open`` refusing O_DIRECT (tmpfs before Linux 6.6, FUSE, overlay mounts): buffered."""
    real_open = os.open

    def no_direct(path: str, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", no_direct)
    parts = _pieces(3, [3 << 20, 12345])
    with ObjectFile(str(tmp_path / "b")) as f:
        assert f.direct is None
        f.write(parts)
    assert (tmp_path / "b").read_bytes() == _joined(parts)


def test_device_refusing_the_alignment_goes_on_buffered(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A write refused with EINVAL (a device with larger blocks) drops O_DIRECT for the
    rest of that file; nothing is lost or written twice."""
    real_write = os.pwrite
    refused: list[int] = []

    def picky(fd: int, data: memoryview, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and len(refused) < 1:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data, offset)
    monkeypatch.setattr(os, "pwrite", picky)
    parts = _pieces(4, [direct_file.STAGE_BYTES + 5, 777])
    path = tmp_path / "c"
    with ObjectFile(str(path)) as f:
        assert f.direct is not None
        f.write(parts)
        direct_file.settle()        # the first block went by the writer thread
        assert refused and not fcntl.fcntl(f.fd, fcntl.F_GETFL) & os.O_DIRECT
    assert path.read_bytes() == _joined(parts)


@pytest.mark.parametrize("direct", ["1", "0"])
def test_full_disk_is_an_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              direct: str) -> None:
    """Direct and buffered writes alike (``os.pwrite`` / ``os.writev``); a direct write
    goes by the writer thread, and its error comes at the next write or at ``close``."""
    monkeypatch.setenv("DETSTACK_DIRECT_WRITES", direct)

    def full(fd: int, *args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    monkeypatch.setattr(os, "writev", full)
    f = ObjectFile(str(tmp_path / "d"))
    with pytest.raises(OSError) as err:
        f.write(_pieces(5, [direct_file.STAGE_BYTES]))
        f.close()
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "d")
    if f.direct is None:
        os.close(f.fd)          # the buffered write failed before close


def test_objects_open_at_once_in_one_thread(tmp_path: Path) -> None:
    """Two objects written in turn by one thread each keep their own staged bytes."""
    a, b = _pieces(6, [3000, 5000, 7000]), _pieces(7, [4000, 6000, 9000])
    with ObjectFile(str(tmp_path / "a")) as fa, ObjectFile(str(tmp_path / "b")) as fb:
        for pa, pb in zip(a, b, strict=True):
            fa.write([pa])
            fb.write([pb])
    assert (tmp_path / "a").read_bytes() == _joined(a)
    assert (tmp_path / "b").read_bytes() == _joined(b)


def test_objects_beyond_the_staging_buffers(tmp_path: Path) -> None:
    """More objects open at once than a thread has staging buffers: more are made."""
    n = direct_file.STAGES + 2
    parts = [_pieces(10 + i, [5000 + i, direct_file.STAGE_BYTES // 2]) for i in range(n)]
    files = [ObjectFile(str(tmp_path / f"o{i}")) for i in range(n)]
    for f, p in zip(files, parts, strict=True):
        f.write(p[:1])
    for f, p in zip(files, parts, strict=True):
        f.write(p[1:])
    for f in files:
        f.close()
    for i, p in enumerate(parts):
        assert (tmp_path / f"o{i}").read_bytes() == _joined(p)


def test_writes_in_flight_while_the_disk_stalls(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """While the disk takes no write, the caller goes on filling buffers (STAGES - 1
    writes in flight); an object closed with settle_later ends in the background and is
    whole, at its exact size, once ``settle`` returns."""
    real_write = os.pwrite
    disk = threading.Event()
    calls: list[int] = []

    def stalled(fd: int, data: memoryview, offset: int) -> int:
        calls.append(offset)
        assert disk.wait(30)
        return real_write(fd, data, offset)
    monkeypatch.setattr(os, "pwrite", stalled)
    stage = direct_file.STAGE_BYTES
    parts = _pieces(8, [(direct_file.STAGES - 1) * stage + 1234])
    path = tmp_path / "slow"
    f = ObjectFile(str(path), settle_later=True)
    filler = threading.Thread(target=lambda: (f.write(parts), f.close()))
    filler.start()
    filler.join(20)
    assert not filler.is_alive()        # every block handed over, the disk has none yet
    assert calls == [0]                 # the writer waits in its first write
    disk.set()
    direct_file.settle()
    assert path.stat().st_size == sum(len(p) for p in parts)
    assert path.read_bytes() == _joined(parts)
    assert calls == [i * stage for i in range(direct_file.STAGES)]


def test_error_of_a_write_in_the_background_comes_with_settle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, *args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    open_fds = len(os.listdir("/proc/self/fd"))
    for name in ("e", "f"):
        with ObjectFile(str(tmp_path / name), settle_later=True) as f:
            f.write(_pieces(9, [1000]))
    with pytest.raises(OSError) as err:
        direct_file.settle()
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "e")
    direct_file.settle()            # the first error, once; every write waited for
    assert len(os.listdir("/proc/self/fd")) == open_fds             # and both files closed
