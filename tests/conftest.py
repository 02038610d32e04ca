"""Shared fixtures: EXtra-data's mock runs, generated once per test session.

EXtra-data (the reference library) is used here only as a test oracle: its mock-data
generators make small sparse runs (pixel chunks are never allocated, so they take a
few MB on disk), and ``ed_open`` opens a path with it for comparison.

Every ``mock_*`` fixture returns a ``str`` path (a run folder, or one file for
``mock_*_file``) inside a session temporary folder. Each mock is made on first use,
once per ``pytest`` run: with pytest-xdist the workers share one folder and a file lock
makes sure only one of them generates a given mock. The mocks are shared by every test:
tests that modify data must work on ``writable_copy(path)``.

The fixtures taking ``format_version`` are generated for file format 0.5, 1.0 and 1.2.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from extra_data.tests import make_examples

FORMAT_VERSIONS = ["0.5", "1.0", "1.2"]


_OWN_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """The tests' RunDirectory metadata cache lives in a temporary folder, not ~/.cache."""
    if "DETSTACK_CACHE_DIR" not in os.environ:
        import tempfile
        os.environ["DETSTACK_CACHE_DIR"] = tempfile.mkdtemp(prefix="detstack-test-cache-")
        _OWN_CACHE.append(os.environ["DETSTACK_CACHE_DIR"])


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the cache folder this session made (one per session and xdist worker)."""
    for folder in _OWN_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", params=FORMAT_VERSIONS)
def format_version(request: pytest.FixtureRequest) -> str:
    return request.param


# name -> (generator, keyword arguments, file name for single-file generators)
_GENERATORS: dict[str, tuple[Callable[..., object], dict[str, object], str | None]] = {
    "spb_raw": (make_examples.make_spb_run, {}, None),
    "spb_proc": (make_examples.make_spb_run, {"raw": False}, None),
    "fxe_raw": (make_examples.make_fxe_run, {}, None),
    "reduced_spb_proc": (make_examples.make_reduced_spb_run, {"raw": False}, None),
    "reduced_spb_raw": (make_examples.make_reduced_spb_run, {"raw": True}, None),
    "lpd_parallelgain": (make_examples.make_lpd_parallelgain_run, {}, None),
    "lpd_mini_gap": (make_examples.make_lpd_run_mini_missed_train, {}, None),
    "modern_spb_proc": (make_examples.make_modern_spb_proc_run, {}, None),
    "scs": (make_examples.make_scs_run, {}, None),
    "jungfrau": (make_examples.make_jungfrau_run, {}, None),
    "fxe_jungfrau": (make_examples.make_fxe_jungfrau_run, {}, None),
    "agipd500k": (make_examples.make_agipd500k_run, {}, None),
    "agipd1m": (make_examples.make_agipd1m_run, {}, None),
    "agipd_file": (make_examples.make_agipd_file, {}, "RAW-R9999-AGIPD00-S00000.h5"),
    "agipd_example_file": (make_examples.make_agipd_example_file, {},
                           "CORR-R9999-AGIPD07-S00000.h5"),
    "lpd_file": (make_examples.make_lpd_file, {}, "RAW-R9999-LPD00-S00000.h5"),
}
# generators that take no format_version argument (their version is fixed)
_FIXED_VERSION = {"lpd_mini_gap": "1.0", "modern_spb_proc": "1.2", "scs": "1.0",
                  "jungfrau": "1.0", "fxe_jungfrau": "1.0", "agipd500k": "1.0",
                  "agipd1m": "1.0"}
_SEEDED = {"reduced_spb_proc", "reduced_spb_raw"}


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by all xdist workers of this pytest run (else the session's own)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent          # .../pytest-N/popen-gw0 -> .../pytest-N
    root = base / "mocks"
    root.mkdir(exist_ok=True)
    return root


def make_once(root: Path, tag: str, build: Callable[[Path], Path]) -> str:
    """Run ``build(folder)`` once for ``tag`` across processes; return what it returned."""
    folder = root / tag
    done = root / f"{tag}.done"
    with open(root / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if folder.exists():     # left half-made by an interrupted worker
                shutil.rmtree(folder)
            folder.mkdir()
            result = build(folder)
            done.write_text(str(result.relative_to(root)))
    return str(root / done.read_text())


class MockData:
    """Makes each (mock name, format version) once per pytest run, on first use."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.root = _shared_root(tmp_path_factory)

    def __call__(self, name: str, format_version: str | None = None) -> str:
        """Path of mock ``name`` (a folder, or a file for ``*_file``) in that version."""
        if name in _FIXED_VERSION:
            format_version = None
        make, kwargs, filename = _GENERATORS[name]
        kwargs = dict(kwargs)
        if format_version is not None:
            kwargs["format_version"] = format_version
        if name in _SEEDED:
            kwargs["rng"] = np.random.RandomState(123)

        def build(folder: Path) -> Path:
            path = folder / filename if filename else folder
            make(str(path), **kwargs)
            return path

        return make_once(self.root, f"{name}_{format_version or 'fixed'}", build)

    def corrupted(self, name: str, format_version: str, dataset: str, position: int,
                  value: int) -> str:
        """A single-file mock with ``dataset[position] = value`` written into it."""
        make, _, filename = _GENERATORS[name]

        def build(folder: Path) -> Path:
            path = folder / filename
            make(str(path), format_version=format_version)
            with h5py.File(path, "r+") as f:
                f[dataset][position] = value
            return path

        tag = f"{name}_{format_version}_{dataset.replace('/', '_')}_{position}_{value}"
        return make_once(self.root, tag, build)


@pytest.fixture(scope="session")
def mock_data(tmp_path_factory) -> MockData:
    """``mock_data(name, format_version)``: any mock by name, made once per session."""
    return MockData(tmp_path_factory)


# -- runs, parametrised over the format version ---------------------------------------

@pytest.fixture(scope="session")
def mock_spb_raw_run(mock_data, format_version) -> str:
    """16 raw AGIPD modules (64 trains x 64 frames) + 2 DA files (XGMs, a camera)."""
    return mock_data("spb_raw", format_version)


@pytest.fixture(scope="session")
def mock_spb_proc_run(mock_data, format_version) -> str:
    """16 corrected AGIPD modules (float32 data, mask, gain), no DA files."""
    return mock_data("spb_proc", format_version)


@pytest.fixture(scope="session")
def mock_fxe_raw_run(mock_data, format_version) -> str:
    """16 raw LPD modules (480 trains x 128 frames) + DA files in two sequences."""
    return mock_data("fxe_raw", format_version)


@pytest.fixture(scope="session")
def mock_reduced_spb_proc_run(mock_data, format_version) -> str:
    """Corrected AGIPD with 0-19 frames per train (RandomState(123)), REDUCTION/ERRATA."""
    return mock_data("reduced_spb_proc", format_version)


# -- runs of one format version ---------------------------------------------------------

@pytest.fixture(scope="session")
def mock_reduced_spb_raw_run(mock_data) -> str:
    return mock_data("reduced_spb_raw", "1.2")


@pytest.fixture(scope="session")
def mock_spb_raw_run_fmt1(mock_data) -> str:
    return mock_data("spb_raw", "1.2")


@pytest.fixture(scope="session")
def mock_lpd_mini_gap_run(mock_data) -> str:
    """LPD modules 0 and 1, 5 trains x 10 frames; module 1 misses train 10002."""
    return mock_data("lpd_mini_gap")


@pytest.fixture(scope="session")
def mock_lpd_parallelgain_run(mock_data) -> str:
    """16 LPD modules, 100 trains x 300 frames (3 gains x 100 pulses), format 1.0."""
    return mock_data("lpd_parallelgain", "1.0")


@pytest.fixture(scope="session")
def mock_modern_spb_proc_run(mock_data) -> str:
    """CORR/{m}CH0:output sources with legacy DET/{m}CH0:xtdf soft links (format 1.2)."""
    return mock_data("modern_spb_proc")


@pytest.fixture(scope="session")
def mock_scs_run(mock_data) -> str:
    """16 DSSC modules, each in two sequence files (64 + 64 trains)."""
    return mock_data("scs")


@pytest.fixture(scope="session")
def mock_jungfrau_run(mock_data) -> str:
    """JUNGFRAU 4M: 8 modules, 100 trains x 16 memory cells, + control file."""
    return mock_data("jungfrau")


@pytest.fixture(scope="session")
def mock_fxe_jungfrau_run(mock_data) -> str:
    """Two JUNGFRAU detectors (JF1M: 2 modules, JF500K: 1 module) in one folder."""
    return mock_data("fxe_jungfrau")


@pytest.fixture(scope="session")
def mock_agipd500k_run(mock_data) -> str:
    return mock_data("agipd500k")


@pytest.fixture(scope="session")
def mock_agipd1m_run(mock_data) -> str:
    return mock_data("agipd1m")


# -- single files -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def mock_agipd_file(mock_data, format_version) -> str:
    """One raw AGIPD module file: 486 trains (trainId padded to 512) x 64 frames."""
    return mock_data("agipd_file", format_version)


@pytest.fixture(scope="session")
def mock_agipd_example_file(mock_data, format_version) -> str:
    """One corrected AGIPD file, 250 trains, with the old first/last/status index."""
    return mock_data("agipd_example_file", format_version)


@pytest.fixture(scope="session")
def mock_lpd_file(mock_data, format_version) -> str:
    return mock_data("lpd_file", format_version)


# -- files with bad train IDs (as in EXtra-data's test_bad_trains.py) --------------------

@pytest.fixture(scope="session")
def mock_agipd_file_tid_very_high(mock_data) -> str:
    """Format 0.5, 250 trains 10000-10249; the ID at position 10 is 10400."""
    return mock_data.corrupted("agipd_example_file", "0.5", "INDEX/trainId", 10, 10400)


@pytest.fixture(scope="session")
def mock_agipd_file_tid_high(mock_data) -> str:
    """Format 0.5, 486 trains 10000-10485; position 10 says 10100, a duplicate."""
    return mock_data.corrupted("agipd_file", "0.5", "INDEX/trainId", 10, 10100)


@pytest.fixture(scope="session")
def mock_agipd_file_tid_low(mock_data) -> str:
    """Format 0.5, 250 trains 10000-10249; the ID at position 20 is 9000."""
    return mock_data.corrupted("agipd_example_file", "0.5", "INDEX/trainId", 20, 9000)


@pytest.fixture(scope="session")
def mock_agipd_file_flag0(mock_data) -> str:
    """Format 1.0, 486 trains; INDEX/flag is 0 (suspect) at position 30 (train 10030)."""
    return mock_data.corrupted("agipd_file", "1.0", "INDEX/flag", 30, 0)


# -- helpers ----------------------------------------------------------------------------

@pytest.fixture
def writable_copy(tmp_path) -> Callable[[str], str]:
    """copy(path) -> a private copy (of a file or a run folder) that a test may modify."""
    def copy(path: str | os.PathLike[str]) -> str:
        src = Path(path)
        dest = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.json"))
            return str(dest)
        dest.mkdir()
        return str(shutil.copy2(src, dest / src.name))
    return copy


def open_with_extra_data(path: str | os.PathLike[str], *, inc_suspect_trains: bool = True):
    """Open a file or run folder with EXtra-data without writing its map cache.

    ``extra_data.RunDirectory`` writes ``karabo_data_map.json`` into the folder; this
    opens the same sorted list of files serially and writes nothing.
    """
    from extra_data import H5File
    from extra_data.reader import DataCollection

    path = Path(path)
    if path.is_file():
        return H5File(str(path), inc_suspect_trains=inc_suspect_trains)
    names = sorted(n for n in os.listdir(path) if n.endswith(".h5") and n.lower() != "overview.h5")
    return DataCollection.from_paths([str(path / n) for n in names], is_single_run=True,
                                     inc_suspect_trains=inc_suspect_trains, parallelize=False)


@pytest.fixture(scope="session")
def ed_open() -> Callable[..., object]:
    """The oracle: ``ed_open(path, inc_suspect_trains=True)`` -> an EXtra-data collection."""
    return open_with_extra_data
