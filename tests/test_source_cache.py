"""Index details read in one pass per file and cached outside the run (run.source_cache):
the frame maps of every index group equal the files' own INDEX, read with plain h5py,
whether they come from the files or the cache, and a changed file is read again."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import detstack
from detstack import synth
from detstack.run import source_cache
from detstack.run.handles import POOL

GROUPS = ["image", "header", "trailer", "detector"]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETSTACK_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "run"
    synth.write_run(folder, "AGIPD1M", raw=False, n_trains=6, frames_per_train=3,
                    trains_per_file=3, missing_trains={2: [10004]})
    return folder


def plain_index(folder: Path, modno: int, group: str, tids: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(first, count, file name) per train of one module, straight from the files."""
    first = np.zeros(len(tids), np.uint64)
    count = np.zeros(len(tids), np.uint64)
    names = [""] * len(tids)
    for p in sorted(folder.glob(f"*AGIPD{modno:02d}*.h5")):
        with h5py.File(p, "r") as f:
            src = next(iter(f["INDEX/SPB_DET_AGIPD1M-1/CORR"]))
            grp = f[f"INDEX/SPB_DET_AGIPD1M-1/CORR/{src}/{group}"]
            n = len(grp["first"])   # INDEX/trainId may be padded with zeros
            for tid, a, c in zip(f["INDEX/trainId"][:n], grp["first"][:], grp["count"][:],
                                 strict=True):
                if tid in tids and c:
                    t = int(np.searchsorted(tids, tid))
                    first[t], count[t], names[t] = a, c, p.name
    return first, count, names


def assert_maps_match(det: detstack.AGIPD1M, folder: Path) -> None:
    tids = np.asarray(det.train_ids, np.uint64)
    for group in GROUPS:
        fmap = det.group_map(group)
        for m, modno in enumerate(fmap.modules.tolist()):
            first, count, names = plain_index(folder, modno, group, tids)
            np.testing.assert_array_equal(fmap.counts[m], count)
            have = count > 0
            np.testing.assert_array_equal(fmap.first[m][have], first[have])
            assert [fmap.files[i].path.name for i in fmap.file[m][have]] == \
                [n for n, h in zip(names, have, strict=True) if h]


def test_frame_maps_from_files_and_from_cache(run: Path) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    assert_maps_match(det, run)
    assert source_cache.details_path(run).exists()
    cached = source_cache.load(run)
    n_module_files = len(list(run.glob("*AGIPD*.h5")))
    assert len(cached) == n_module_files > 16   # one entry per (module file, source)
    POOL.clear()
    data = detstack.RunDirectory(run)
    det2 = detstack.AGIPD1M(data)
    for group in GROUPS:
        det2.group_map(group)
    # keys and index of every group came from the caches: no module file was opened
    assert not {f.path.name for f in data.files if f._key in POOL._files}
    assert_maps_match(det2, run)
    np.testing.assert_array_equal(det.get_array("image.cellId").values,
                                  det2.get_array("image.cellId").values)


def test_changed_file_is_read_again(run: Path) -> None:
    detstack.AGIPD1M(detstack.RunDirectory(run))
    target = next(p for p in sorted(run.glob("*AGIPD07-*.h5"))
                  if 10004 in h5py.File(p, "r")["INDEX/trainId"][:])
    with h5py.File(target, "r+") as f:   # train 10004 loses its frames in module 7
        src = next(iter(f["INDEX/SPB_DET_AGIPD1M-1/CORR"]))
        count = f[f"INDEX/SPB_DET_AGIPD1M-1/CORR/{src}/image/count"]
        values = count[:]
        values[list(f["INDEX/trainId"][:]).index(10004)] = 0
        count[:] = values
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    t = det.train_ids.index(10004)
    assert det.frame_map.counts[det.modules.index(7), t] == 0
    assert_maps_match(det, run)


def test_damaged_cache_is_ignored(run: Path) -> None:
    detstack.AGIPD1M(detstack.RunDirectory(run))
    source_cache.details_path(run).write_bytes(b"not a cache")
    assert source_cache.load(run) == {}
    det = detstack.AGIPD1M(detstack.RunDirectory(run))
    assert_maps_match(det, run)
    assert len(source_cache.load(run)) == len(list(run.glob("*AGIPD*.h5")))   # rewritten


def test_no_cache_writes_nothing(run: Path) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run, cache=False))
    assert_maps_match(det, run)
    assert not source_cache.details_path(run).exists()


@pytest.mark.parametrize("cache", [False, True])
def test_index_groups_share_their_arrays(run: Path, cache: bool) -> None:
    """A detector keeps each (module, train) array its index groups agree on once: every
    per-train group has the same counts and first rows, every group the same files; the
    arrays are read-only, and a train selection keeps both the sharing and the values."""
    detstack.AGIPD1M(detstack.RunDirectory(run))      # fills the source cache
    POOL.clear()
    det = detstack.AGIPD1M(detstack.RunDirectory(run, cache=cache))
    maps = {g: det.group_map(g) for g in GROUPS}
    for g in ("trailer", "detector"):
        assert maps[g].counts is maps["header"].counts and maps[g].first is maps["header"].first
    assert all(maps[g].file is maps["image"].file for g in GROUPS)
    assert maps["image"].counts is not maps["header"].counts     # 3 frames vs 1 row per train
    for fmap in maps.values():
        for a in (fmap.counts, fmap.file, fmap.first):
            assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        maps["header"].counts[0, 0] = 7
    assert_maps_match(det, run)
    # the files' own index groups (read from the files or from the cache): these regular
    # ones are kept as three numbers each, and read back exactly
    f = det.frame_map.files[int(det.frame_map.file[0, 0])]
    src = det.frame_map.sources[0]
    header, trailer, image = (f.index(src, g) for g in ("header", "trailer", "image"))
    np.testing.assert_array_equal(header.first, np.arange(len(f.train_ids)))
    np.testing.assert_array_equal(trailer.count, np.ones(len(f.train_ids)))
    np.testing.assert_array_equal(image.first, image.count.cumsum() - image.count)
    assert header.nbytes() == trailer.nbytes() == image.nbytes() == 0

    sel = det.select_trains(np.s_[1:5])
    smaps = {g: sel.group_map(g) for g in GROUPS}
    assert smaps["trailer"].counts is smaps["header"].counts
    assert smaps["image"].file is smaps["header"].file
    for g in GROUPS:
        for name in ("counts", "file", "first"):
            np.testing.assert_array_equal(getattr(smaps[g], name),
                                          getattr(maps[g], name)[:, 1:5])
    assert_maps_match(sel, run)
    everything = np.ones(len(det.train_ids), bool)
    assert det.frame_map.select_trains(everything) is det.frame_map


def test_source_tables_cache_is_bounded(run: Path) -> None:
    """The run keeps its most recent source tables only; one built again equals the first."""
    from detstack.run.source_table import TABLE_CACHE
    data = detstack.RunDirectory(run)
    srcs = sorted(s for s in data.instrument_sources if "/CORR/" in s)
    tables = {(s, g): data.source_table(s, g) for s in srcs for g in GROUPS}
    assert len(data._tables) == TABLE_CACHE < len(tables)
    for (s, g), table in tables.items():
        again = data.source_table(s, g)
        for name in ("train_ids", "file", "first", "count"):
            np.testing.assert_array_equal(getattr(again, name), getattr(table, name))
    assert data.source_table(*next(reversed(tables))) is data.source_table(*next(reversed(tables)))


def test_source_tables_cache_is_bounded_in_bytes(run: Path) -> None:
    """Long runs keep fewer tables: at most ``max_bytes`` of them, the latest always."""
    data = detstack.RunDirectory(run)
    srcs = sorted(s for s in data.instrument_sources if "/CORR/" in s)
    size = data.source_table(srcs[0], "image").nbytes
    data._tables.max_bytes = int(2.5 * size)
    for s in srcs[:4]:
        data.source_table(s, "image")
    assert len(data._tables) == 2
    data._tables.max_bytes = 1
    last = data.source_table(srcs[5], "image")
    assert len(data._tables) == 1 and data.source_table(srcs[5], "image") is last
