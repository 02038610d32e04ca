"""Fixtures of the detector reader tests: EXtra-data's mock runs, some with real values.

EXtra-data is the oracle here, never a dependency of detstack. Its generators
(``extra_data.tests.make_examples``) make sparse runs whose pixel chunks are never
written, so every pixel reads 0. To make value comparisons meaningful the
``ed_*_filled`` fixtures copy a mock run and write distinct random values into a
few trains of a few modules with h5py (pixel datasets are re-created with gzip
first, so writing a few bands of random values keeps the copies small).

All fixture names start with ``ed_`` so they never clash with ``tests/conftest.py``.
The filled copies are session-scoped (made once per xdist worker, on first use): no
test modifies them, and making them per test module would multiply the setup time.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np
import pytest
from extra_data.tests import make_examples as mk


def make_spb_raw_and_corr(dir_path: str, format_version: str = "1.2") -> None:
    """spb raw AGIPD (DET, uint16) plus corrected CORR/{m}CH0:output sources (no legacy
    links) in one folder: the union of a raw and a modern corrected run."""
    from extra_data.tests.mockdata.detectors import AGIPDModule

    mk.make_spb_run(dir_path, format_version=format_version)
    for m in range(16):
        mk.write_file(f"{dir_path}/CORR-R0238-AGIPD{m:02}-S00000.h5",
                      [AGIPDModule(f"SPB_DET_AGIPD1M-1/CORR/{m}CH0", channel_name="output",
                                   raw=False, frames_per_train=32)],
                      ntrains=64, chunksize=32, format_version=format_version)


def make_lpd_and_spb(dir_path: str, format_version: str = "1.0") -> None:
    """The LPD files of the fxe run and the spb raw run in one folder: two detectors."""
    mk.make_fxe_run(dir_path, format_version=format_version)
    for p in Path(dir_path).glob("*DA*.h5"):
        p.unlink()
    mk.make_spb_run(dir_path, format_version=format_version)


def make_lpd_solo(dir_path: str, format_version: str = "1.0") -> None:
    """One LPD Solo module (FXE_DET_LPD_SOLO-1), 5 trains x 10 frames."""
    from extra_data.tests.mockdata.detectors import LPDModule

    mk.write_file(f"{dir_path}/RAW-R0001-LPD00-S00000.h5",
                  [LPDModule("FXE_DET_LPD_SOLO-1/DET/0CH0", frames_per_train=10)],
                  ntrains=5, chunksize=5, format_version=format_version)


# name -> (generator, keyword arguments, file name for single-file generators)
GENERATORS: dict[str, tuple[Callable[..., object], dict[str, object], str | None]] = {
    "fxe_raw": (mk.make_fxe_run, {}, None),
    "spb_raw": (mk.make_spb_run, {}, None),
    "spb_proc": (mk.make_spb_run, {"raw": False}, None),
    "reduced_proc": (mk.make_reduced_spb_run, {"raw": False}, None),
    "reduced_raw": (mk.make_reduced_spb_run, {"raw": True}, None),
    "lpd_parallelgain": (mk.make_lpd_parallelgain_run, {}, None),
    "lpd_mini_gap": (mk.make_lpd_run_mini_missed_train, {}, None),
    "modern_proc": (mk.make_modern_spb_proc_run, {}, None),
    "scs": (mk.make_scs_run, {}, None),
    "jungfrau": (mk.make_jungfrau_run, {}, None),
    "fxe_jungfrau": (mk.make_fxe_jungfrau_run, {}, None),
    "agipd500k": (mk.make_agipd500k_run, {}, None),
    "spb_raw_and_corr": (make_spb_raw_and_corr, {}, None),
    "lpd_and_spb": (make_lpd_and_spb, {}, None),
    "lpd_solo": (make_lpd_solo, {}, None),
    "agipd_file": (mk.make_agipd_file, {}, "RAW-R9999-AGIPD00-S00000.h5"),
    "agipd_example_file": (mk.make_agipd_example_file, {}, "CORR-R9999-AGIPD07-S00000.h5"),
}
FIXED_VERSION = {"lpd_mini_gap", "modern_proc", "scs", "jungfrau", "fxe_jungfrau",
                 "agipd500k", "spb_raw_and_corr", "lpd_and_spb", "lpd_solo"}
SEEDED = {"reduced_proc", "reduced_raw"}


class EdMocks:
    """``mocks(name, version)``: path of an EXtra-data mock, made once per session."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._made: dict[tuple[str, str | None], Path] = {}

    def __call__(self, name: str, version: str | None = "1.0") -> Path:
        if name in FIXED_VERSION:
            version = None
        if (name, version) not in self._made:
            make, kwargs, filename = GENERATORS[name]
            kwargs = dict(kwargs)
            if version is not None:
                kwargs["format_version"] = version
            if name in SEEDED:
                kwargs["rng"] = np.random.RandomState(123)
            folder = self._factory.mktemp(f"ed_{name}_{version or 'fixed'}")
            path = folder / filename if filename else folder
            make(str(path), **kwargs)
            self._made[(name, version)] = path
        return self._made[(name, version)]

    def copy(self, name: str, version: str | None = "1.0", *,
             include: str = "*.h5") -> Path:
        """A private copy (of the files matching ``include``) that may be modified."""
        src = self(name, version)
        dest = self._factory.mktemp(f"ed_{name}_copy")
        if src.is_file():
            return Path(shutil.copy2(src, dest / src.name))
        for p in sorted(src.glob(include)):
            shutil.copy2(p, dest / p.name)
        return dest


# -- writing values into copies ---------------------------------------------------------

BANDS = ((0, 4), (40, 44))  # rows of each frame (second-last axis) that get random values


def index_rows(path: Path, source: str, group: str, positions: Iterable[int]) -> np.ndarray:
    """Data rows of the trains at ``positions`` of a file (new-style INDEX first/count)."""
    with h5py.File(path, "r") as f:
        first = f[f"INDEX/{source}/{group}/first"][:]
        count = f[f"INDEX/{source}/{group}/count"][:]
    return np.concatenate([np.arange(first[p], first[p] + count[p]) for p in positions]
                          ).astype(np.int64)


def write_random(path: Path, dataset: str, rows: np.ndarray, seed: int, *,
                 recompress: bool = True, bands: tuple[tuple[int, int], ...] | None = BANDS,
                 low: int = 1, high: int | None = None) -> None:
    """Write random values into ``rows`` of ``dataset`` (only ``bands`` of each frame).

    ``recompress`` re-creates the (unwritten) dataset with gzip, same shape, dtype and
    maxshape, so that mostly-zero frames cost little disk. ``bands=None``: whole frames.
    """
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.int64)
    with h5py.File(path, "r+") as f:
        ds = f[dataset]
        shape, dtype, maxshape, chunks = ds.shape, ds.dtype, ds.maxshape, ds.chunks
        if recompress:
            assert ds.id.get_storage_size() == 0, f"{dataset} holds data: not re-created"
            del f[dataset]
            if chunks is None or chunks[0] > 16:
                chunks = (1,) + shape[1:]
            ds = f.create_dataset(dataset, shape=shape, dtype=dtype, maxshape=maxshape,
                                  chunks=chunks, compression="gzip", compression_opts=1)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        runs = list(zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True))
        block = np.zeros((len(rows),) + shape[1:], dtype)
        if not recompress and bands is not None:  # keep what is outside the bands
            for s, e in runs:
                block[s:e] = ds[rows[s]:rows[e - 1] + 1]
        parts = [block] if bands is None else [block[..., lo:hi, :] for lo, hi in bands]
        for part in parts:
            if dtype.kind == "f":
                part[...] = rng.normal(100, 30, part.shape).astype(dtype)
            else:
                top = high if high is not None else min(int(np.iinfo(dtype).max), 2**31)
                part[...] = rng.integers(low, top, part.shape).astype(dtype)
        for s, e in runs:
            ds[rows[s]:rows[e - 1] + 1] = block[s:e]


def xtdf_source(detname: str, modno: int, where: str = "DET", channel: str = "xtdf") -> str:
    return f"{detname}/{where}/{modno}CH0:{channel}"


def fill_xtdf_module(path: Path, source: str, positions: Iterable[int], seed: int,
                     keys: Iterable[str] = ("data",), recompress: bool = True) -> None:
    rows = index_rows(path, source, "image", positions)
    for i, key in enumerate(keys):
        write_random(path, f"INSTRUMENT/{source}/image/{key}", rows, seed + 1000 * i,
                     recompress=recompress and key == "data",
                     high=8 if key == "mask" else None)


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ed_mocks(tmp_path_factory: pytest.TempPathFactory) -> EdMocks:
    return EdMocks(tmp_path_factory)


@pytest.fixture(scope="session", params=["0.5", "1.0", "1.2"])
def ed_format_version(request: pytest.FixtureRequest) -> str:
    return request.param


LPD = "FXE_DET_LPD1M-1"
AGIPD = "SPB_DET_AGIPD1M-1"
LPD_FILLED_MODULES = (0, 5, 15)
LPD_FILLED_TRAINS = range(3)


@pytest.fixture(scope="session")
def ed_lpd_filled(ed_mocks: EdMocks) -> Path:
    """fxe raw LPD (fmt 1.0, LPD files only): modules 0, 5, 15 hold random values in
    trains 10000-10002; every module's cell IDs are a permutation (7 * pulse % 128) of
    the pulse IDs, so pulse and cell labels differ and cells arrive unsorted."""
    run = ed_mocks.copy("fxe_raw", "1.0", include="*LPD*.h5")
    for m in LPD_FILLED_MODULES:
        fill_xtdf_module(run / f"RAW-R0450-LPD{m:02}-S00000.h5", xtdf_source(LPD, m),
                         LPD_FILLED_TRAINS, seed=m)
    for m in range(16):
        with h5py.File(run / f"RAW-R0450-LPD{m:02}-S00000.h5", "r+") as f:
            base = f"INSTRUMENT/{xtdf_source(LPD, m)}/image/"
            f[base + "cellId"][:] = (f[base + "pulseId"][:] * 7 % 128).astype(np.uint16)
    return run


REDUCED_FILLED_MODULES = (8, 9)


@pytest.fixture(scope="session")
def ed_reduced_filled(ed_mocks: EdMocks) -> Path:
    """Reduced proc AGIPD (RandomState(123), fmt 1.0): modules 8 and 9 hold random data,
    gain and mask values (mask bits 0-7) in every frame; module 9 keeps the generator's
    mask[0, 0, :32] = 0..31."""
    run = ed_mocks.copy("reduced_proc", "1.0", include="CORR*.h5")
    for m in REDUCED_FILLED_MODULES:
        path = run / f"CORR-R0238-AGIPD{m:02}-S00000.h5"
        src = xtdf_source(AGIPD, m)
        rows = np.arange(h5py.File(path, "r")[f"INSTRUMENT/{src}/image/data"].shape[0])
        write_random(path, f"INSTRUMENT/{src}/image/data", rows, seed=m)
        write_random(path, f"INSTRUMENT/{src}/image/gain", rows, seed=m + 50,
                     recompress=False, high=3)
        write_random(path, f"INSTRUMENT/{src}/image/mask", rows, seed=m + 100,
                     recompress=False, bands=((100, 104),), low=0, high=8)
    return run


@pytest.fixture(scope="session")
def ed_reduced_raw_filled(ed_mocks: EdMocks) -> Path:
    """Reduced raw AGIPD (fmt 1.2): modules 0 and 3 hold random data in every frame."""
    run = ed_mocks.copy("reduced_raw", "1.2", include="RAW*AGIPD*.h5")
    for m in (0, 3):
        path = run / f"RAW-R0238-AGIPD{m:02}-S00000.h5"
        src = xtdf_source(AGIPD, m)
        rows = np.arange(h5py.File(path, "r")[f"INSTRUMENT/{src}/image/data"].shape[0])
        write_random(path, f"INSTRUMENT/{src}/image/data", rows, seed=20 + m)
    return run


@pytest.fixture(scope="session")
def ed_spb_raw_filled(ed_mocks: EdMocks) -> Path:
    """spb raw AGIPD (fmt 1.2, AGIPD files only): modules 0 and 4 hold random (data, gain)
    values in trains 10000-10003."""
    run = ed_mocks.copy("spb_raw", "1.2", include="*AGIPD*.h5")
    for m in (0, 4):
        fill_xtdf_module(run / f"RAW-R0238-AGIPD{m:02}-S00000.h5", xtdf_source(AGIPD, m),
                         range(4), seed=30 + m)
    return run


@pytest.fixture(scope="session")
def ed_mini_filled(ed_mocks: EdMocks) -> Path:
    """LPD mini run (module 1 misses train 10002): every frame of both modules random,
    whole frames, original (uncompressed) layout."""
    run = ed_mocks.copy("lpd_mini_gap")
    for m in (0, 1):
        path = run / f"RAW-R0450-LPD{m:02}-S00000.h5"
        n = h5py.File(path, "r")[f"INSTRUMENT/{xtdf_source(LPD, m)}/image/data"].shape[0]
        write_random(path, f"INSTRUMENT/{xtdf_source(LPD, m)}/image/data", np.arange(n),
                     seed=40 + m, recompress=False, bands=None)
    return run


@pytest.fixture(scope="session")
def ed_scs_filled(ed_mocks: EdMocks) -> Path:
    """DSSC run: module 3 holds random values in trains 10060-10067, across the boundary
    of its two sequence files; module 11 in trains 10000-10001."""
    run = ed_mocks.copy("scs")
    src3 = xtdf_source("SCS_DET_DSSC1M-1", 3)
    fill_xtdf_module(run / "RAW-R0163-DSSC03-S00000.h5", src3, range(60, 64), seed=50)
    fill_xtdf_module(run / "RAW-R0163-DSSC03-S00001.h5", src3, range(4), seed=51)
    fill_xtdf_module(run / "RAW-R0163-DSSC11-S00000.h5", xtdf_source("SCS_DET_DSSC1M-1", 11),
                     range(2), seed=52)
    return run


@pytest.fixture(scope="session")
def ed_pg_filled(ed_mocks: EdMocks) -> Path:
    """LPD parallel gain (fmt 1.0): modules 0 and 7 random in trains 10000-10001; the
    pulse and cell IDs of the medium and low gain stages are overwritten with junk
    (only the first third is meaningful)."""
    run = ed_mocks.copy("lpd_parallelgain", "1.0")
    for m in (0, 7):
        fill_xtdf_module(run / f"RAW-R0450-LPD{m:02}-S00000.h5", xtdf_source(LPD, m),
                         range(2), seed=60 + m)
    for m in range(16):
        with h5py.File(run / f"RAW-R0450-LPD{m:02}-S00000.h5", "r+") as f:
            base = f"INSTRUMENT/{xtdf_source(LPD, m)}/image/"
            for key in ("pulseId", "cellId"):
                ids = f[base + key][:]
                pos = np.arange(len(ids)) % 300
                ids[pos >= 100] = 1000 + pos[pos >= 100, None]
                f[base + key][:] = ids
    return run


@pytest.fixture(scope="session")
def ed_jf_filled(ed_mocks: EdMocks) -> Path:
    """JUNGFRAU 4M: modules 1 and 5 hold random adc values in trains 10000-10003; every
    module's memoryCell is 15 - cell slot."""
    run = ed_mocks.copy("jungfrau")
    for m in (1, 5):
        src = f"SPB_IRDA_JF4M/DET/JNGFR{m:02}:daqOutput"
        write_random(run / f"RAW-R0012-JNGFR{m:02}-S00000.h5",
                     f"INSTRUMENT/{src}/data/adc", np.arange(4), seed=70 + m)
    for m in range(1, 9):
        with h5py.File(run / f"RAW-R0012-JNGFR{m:02}-S00000.h5", "r+") as f:
            ds = f[f"INSTRUMENT/SPB_IRDA_JF4M/DET/JNGFR{m:02}:daqOutput/data/memoryCell"]
            ds[:] = (15 - np.arange(16, dtype=np.uint8))[None, :]
    return run


@pytest.fixture(scope="session")
def ed_fxe_jf_filled(ed_mocks: EdMocks) -> Path:
    """Two JUNGFRAUs: JF500K (JNGFR03) random adc in trains 10000-10002 and random mask
    bits (0-7) in rows 40-43; it keeps the generator's mask[0, 0, 0, :32] = 0..31."""
    run = ed_mocks.copy("fxe_jungfrau")
    path = run / "RAW-R0052-JNGFR03-S00000.h5"
    src = "FXE_XAD_JF500K/DET/JNGFR03:daqOutput"
    write_random(path, f"INSTRUMENT/{src}/data/adc", np.arange(3), seed=80)
    write_random(path, f"INSTRUMENT/{src}/data/mask", np.arange(3), seed=81,
                 recompress=False, bands=((40, 44),), low=0, high=8)
    return run


# -- files with bad train IDs (EXtra-data's tests/test_bad_trains.py) ---------------------

def _corrupt(mocks: EdMocks, name: str, version: str, dataset: str, position: int,
             value: int, fill_positions: range) -> Path:
    path = mocks.copy(name, version)
    with h5py.File(path, "r+") as f:
        f[dataset][position] = value
        src = next(s for s in f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET"])
    # 64 frames per train, stored in train order from row 0
    rows = np.arange(fill_positions.start * 64, fill_positions.stop * 64)
    write_random(path, f"INSTRUMENT/SPB_DET_AGIPD1M-1/DET/{src}/image/data", rows,
                 seed=position)
    return path


@pytest.fixture(scope="session")
def ed_tid_very_high(ed_mocks: EdMocks) -> Path:
    """Corrected AGIPD file (fmt 0.5, 250 trains): position 10 says 10400; random data in
    the trains at positions 8-12."""
    return _corrupt(ed_mocks, "agipd_example_file", "0.5", "INDEX/trainId", 10, 10400,
                    range(8, 13))


@pytest.fixture(scope="session")
def ed_tid_low(ed_mocks: EdMocks) -> Path:
    """Corrected AGIPD file (fmt 0.5): position 20 says 9000; random data at 18-22."""
    return _corrupt(ed_mocks, "agipd_example_file", "0.5", "INDEX/trainId", 20, 9000,
                    range(18, 23))


@pytest.fixture(scope="session")
def ed_tid_high(ed_mocks: EdMocks) -> Path:
    """Raw AGIPD file (fmt 0.5, 486 trains): position 10 says 10100 (a duplicate);
    random data at positions 8-12."""
    return _corrupt(ed_mocks, "agipd_file", "0.5", "INDEX/trainId", 10, 10100, range(8, 13))


@pytest.fixture(scope="session")
def ed_flag0(ed_mocks: EdMocks) -> Path:
    """Raw AGIPD file (fmt 1.0, 486 trains): INDEX/flag 0 at position 30 (train 10030);
    random data at positions 28-32."""
    return _corrupt(ed_mocks, "agipd_file", "1.0", "INDEX/flag", 30, 0, range(28, 33))
