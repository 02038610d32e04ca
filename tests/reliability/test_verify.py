"""``detstack verify``: content identity instead of modification times, self-contained
stores, and ``--full`` naming the module, train and frame of every damaged block."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from relsuite_tally import count

import detstack
from detstack import synth
from detstack.cli import main as cli_main
from detstack.convert import to_manifest, to_vds, to_zarr
from detstack.convert.cxi import to_cxi
from detstack.store.verify import verify_view

RUN = dict(kind="AGIPD1M", raw=True, n_trains=4, frames_per_train=[3, 0, 5, 2],
           modules=[0, 3], missing_trains={3: [10002]}, with_control=False)
DATA = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data"


def make(folder: Path, **changes: object) -> tuple[Path, detstack.AGIPD1M]:
    run = folder / "run"
    synth.write_run(run, **{**RUN, **changes})
    return run, detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)


def edit(path: Path, code: str) -> None:
    """Change a file in a child process (the views under test keep it open here)."""
    subprocess.run([sys.executable, "-c", f"import h5py, numpy as np\n"
                    f"with h5py.File({str(path)!r}, 'r+') as h5:\n    ds = h5[{DATA!r}]\n"
                    f"    {code}"], check=True, env=dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE"))


def test_every_form_verifies_fully(tmp_path: Path) -> None:
    run, det = make(tmp_path)
    outs = [tmp_path / "v.h5", tmp_path / "v.cxi", run / "m.json", run / "m.parq",
            tmp_path / "s.zarr", tmp_path / "s.zip"]
    to_vds(det, outs[0])
    to_cxi(det, outs[1])
    to_manifest(det, outs[2])
    to_manifest(det, outs[3])
    to_zarr(det, outs[4])
    to_zarr(det, outs[5])
    for out in outs:
        report = verify_view(str(out), full=True)
        assert report.ok, report.lines()
        sources = 3 if out.suffix in (".json", ".parq") else 2   # manifests: + sidecar
        assert report.frames_checked >= 10 and report.checked == sources


def test_touch_is_not_a_change_but_a_rewrite_is(tmp_path: Path) -> None:
    run, det = make(tmp_path)
    to_vds(det, tmp_path / "v.h5")
    f = next(run.glob("*AGIPD00*"))
    os.utime(f, (1, 1))
    assert verify_view(str(tmp_path / "v.h5")).ok
    with open(f, "r+b") as fh:          # same size, other bytes at the end of the file
        fh.seek(-16, os.SEEK_END)
        fh.write(b"\x00" * 16)
    report = verify_view(str(tmp_path / "v.h5"))
    assert not report.ok and report.changed and f.name in report.changed[0]
    count("faults")


def test_self_contained_store_without_sources(tmp_path: Path) -> None:
    run, det = make(tmp_path)
    to_zarr(det, tmp_path / "s.zarr")
    to_vds(det, tmp_path / "v.h5")
    shutil.rmtree(run)
    report = verify_view(str(tmp_path / "s.zarr"), full=True)
    assert report.ok and not report.missing and "does not need them" in report.notes[0]
    assert report.frames_checked > 0                      # against the checksums
    bad = verify_view(str(tmp_path / "v.h5"))
    assert not bad.ok and len(bad.missing) == 2
    count("faults")


def test_full_names_damaged_zarr_blocks(tmp_path: Path) -> None:
    """A deleted shard and a rewritten one are found by their checksums; with the
    sources at hand the frames are named."""
    run, det = make(tmp_path)
    store = tmp_path / "s.zarr"
    to_zarr(det, store)
    shard = sorted(p for p in (store / "image.data" / "c" / "0").rglob("*") if p.is_file())[0]
    shard.unlink()                                          # a shard of module 0
    report = verify_view(str(store), full=True)
    assert not report.ok and report.mismatches
    assert {(m.key, m.module) for m in report.mismatches} == {("image.data", 0)}
    assert {m.train for m in report.mismatches} <= {10000, 10002, 10003}
    code = cli_main(["verify", str(store), "--full", "--json"])
    assert code == 1
    count("faults")


def test_rewritten_manifest_source_is_reported(tmp_path: Path) -> None:
    """A compressed chunk rewritten in place moves in the file (a manifest's byte ranges
    would read the old bytes): the manifest is refused, and verify says why, naming the
    file, with exit status 1."""
    run, det = make(tmp_path, layout="deflate")
    to_manifest(det, run / "m.json")
    noise = "np.random.default_rng(0).integers(0, 65535, ds.shape[1:], dtype=np.uint16)"
    f = next(run.glob("*AGIPD00*"))
    edit(f, f"ds[3] = {noise}")      # train 10002, frame 0
    # a fresh process: this one still holds the files open with their old chunk index
    done = subprocess.run([sys.executable, "-m", "detstack", "verify", str(run / "m.json"),
                           "--full", "--json"], capture_output=True, text=True,
                          env=dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE"))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert not report["ok"], report
    assert any(f.name in line for line in report["errors"] + report["changed"]), report
    count("faults")


def test_cli_verify_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, det = make(tmp_path)
    to_vds(det, tmp_path / "v.h5")
    assert cli_main(["verify", str(tmp_path / "v.h5"), "--full", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["full"] and doc["frames_checked"] > 0


def test_checksums_match_the_data(tmp_path: Path) -> None:
    """The recorded checksums are those of the arrays zarr-python reads back."""
    import zlib
    run, det = make(tmp_path)
    to_zarr(det, tmp_path / "s.zarr")
    from detstack.convert.checksums import read_document
    sums = read_document((tmp_path / "s.zarr" / ".detstack-checksums.json").read_bytes())
    import zarr
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    counts = g["count.image"][...]
    arr = g["image.data"]
    for slot, t in zip(*np.nonzero(counts), strict=True):
        block = np.ascontiguousarray(arr[slot, t, :int(counts[slot, t])])
        assert zlib.crc32(block.data) == sums["image.data"][slot, t]
    with h5py.File(next(run.glob("*AGIPD00*"))) as h5:
        assert np.array_equal(h5[DATA][0:3], arr[0, 0, :3])


def test_full_checks_the_bound_of_lossy_stores(tmp_path: Path) -> None:
    """A lossy key passes when within its stated bound, and a block pushed beyond it is
    named; its lossless keys are still checked against the checksums."""
    run = tmp_path / "run"
    synth.write_run(run, kind="AGIPD500K", raw=False, n_trains=3, frames_per_train=2,
                    modules=[1, 2], with_control=False)
    det = detstack.AGIPD500K(detstack.RunDirectory(run))
    energy = synth.photon_energy("AGIPD500K")
    store = tmp_path / "lossy.zarr"
    to_zarr(det, store, lossy=f"photons:{energy}")
    report = verify_view(str(store), full=True)
    assert report.ok, report.lines()
    import zarr
    arr = zarr.open_group(str(store), mode="a")["image.data"]
    arr[1, 1, 0] = arr[1, 1, 0] + energy          # module 1, second train, frame 0
    report = verify_view(str(store), full=True)
    assert [(m.key, m.module, m.train, m.frames) for m in report.mismatches] == \
        [("image.data", 1, 10001, [0])]
    assert "error bound" in report.mismatches[0].detail


def test_full_verifies_the_frame_layout(tmp_path: Path) -> None:
    """Frame-layout views verify fully; a store's checksums are per (slot, block of
    frames), equal to what zarr reads back, and a damaged block names its trains."""
    import zarr

    from detstack.convert.checksums import frames_per_block, read_document
    run, det = make(tmp_path, frames_per_train=[3, 0, 70, 2])   # 10002 spans two shards
    outs = [tmp_path / "v.h5", run / "m.json", tmp_path / "s.zarr"]
    to_vds(det, outs[0], layout="frames")
    to_manifest(det, outs[1], layout="frames")
    to_zarr(det, outs[2], layout="frames")
    to_vds(det, tmp_path / "trains.h5")
    n_checked = verify_view(str(tmp_path / "trains.h5"), full=True).frames_checked
    assert n_checked > 80                                  # modules 0 and 3, every key
    for out in outs:
        report = verify_view(str(out), full=True)
        assert report.ok, report.lines()
        assert report.frames_checked == n_checked, out    # the same frames as the trains
    raw = (outs[2] / ".detstack-checksums.json").read_bytes()
    size, sums = frames_per_block(raw)["image.data"], read_document(raw)["image.data"]
    arr = zarr.open_group(str(outs[2]), mode="r")["image.data"]
    assert arr.shape[1] == 75 and sums.shape == (16, -(-75 // size))
    import zlib
    for slot in (0, 3):
        for b in range(sums.shape[1]):
            block = np.ascontiguousarray(arr[slot, b * size:(b + 1) * size])
            assert zlib.crc32(block.data) == sums[slot, b]
    assert not sums[1].any()                                  # an absent module: none
    shard = outs[2] / "image.data" / "c" / "3" / "1" / "0" / "0" / "0"  # frames 64-74
    data = bytearray(shard.read_bytes())
    data[:64] = bytes(64)                                     # a rewritten shard of module 3
    shard.write_bytes(bytes(data))
    report = verify_view(str(outs[2]), full=True)
    assert not report.ok
    assert {(m.key, m.module) for m in report.mismatches} == {("image.data", 3)}
    assert 10003 in {m.train for m in report.mismatches} <= {10000, 10003}  # module 3's
    count("faults")
