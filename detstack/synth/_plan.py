"""Check the write_run arguments and plan which trains and frames go in which file.

All validation happens here, before a single byte is written, so a bad argument never
leaves a half-written run behind.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._kinds import FORMAT_VERSIONS, KINDS, LAYOUTS, Kind


@dataclass(frozen=True)
class Options:
    """The validated, normalised arguments of one write_run call."""

    kind: Kind
    raw: bool
    legacy: bool
    detector: str
    train_ids: np.ndarray  # (n_trains,) uint64, the run's trains
    frames: np.ndarray  # (n_trains,) int64, frames per train as stored (LPD parallel gain: x3)
    modules: tuple[int, ...]
    n_cells: int
    format_version: str
    old_index: bool
    trains_per_file: int | None
    missing: dict[int, frozenset[int]]
    empty: dict[int, frozenset[int]]
    layout: str
    frames_per_chunk: int
    parallel_gain: bool
    pulse_id_step: int
    index_pad: int
    bad_train_ids: dict[int, int]
    bad_flags: frozenset[int]
    mean_photons: float
    seed: int
    run_number: int
    proposal: int
    with_control: bool
    metadata_only: bool = False

    @property
    def prefix(self) -> str:
        """File name prefix: RAW for raw data, CORR for corrected."""
        return "RAW" if self.raw else "CORR"

    @property
    def fmt(self) -> tuple[int, int]:
        """The format version as a comparable tuple."""
        major, minor = self.format_version.split(".")
        return int(major), int(minor)


@dataclass
class FilePlan:
    """One file to write: its name and the trains it holds, in file order."""

    name: str
    aggregator: str
    sequence: int
    modno: int | None  # None for the control (DA) file
    train_ids: np.ndarray  # uint64, trains listed in INDEX/trainId
    counts: np.ndarray  # int64, main-group entries per train (0 for empty trains)
    empty: np.ndarray  # bool per train: in INDEX/trainId but with no data in any group


def _int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def _train_sets(name: str, value: Mapping[int, Sequence[int]] | None, modules: Sequence[int],
                train_ids: np.ndarray) -> dict[int, frozenset[int]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping {{module: [train ids]}}, not {value!r}")
    known = set(train_ids.tolist())
    out: dict[int, frozenset[int]] = {}
    for mod, tids in value.items():
        m = _int(f"{name} module", mod)
        if m not in modules:
            raise ValueError(f"{name}: module {m} is not among the modules written {list(modules)}")
        ids = frozenset(_int(f"{name}[{m}] train id", t) for t in tids)
        unknown = sorted(ids - known)
        if unknown:
            raise ValueError(f"{name}[{m}]: train IDs {unknown} are not in the run "
                             f"({int(train_ids[0])}..{int(train_ids[-1])})")
        out[m] = ids
    return out


def make_options(kind: str, raw: bool, legacy: bool, n_trains: int, first_train: int,
                 frames_per_train: int | Sequence[int], modules: Sequence[int] | None,
                 n_modules: int | None, n_cells: int, detector_name: str | None,
                 format_version: str, old_index: bool, trains_per_file: int | None,
                 missing_trains: Mapping[int, Sequence[int]] | None,
                 empty_trains: Mapping[int, Sequence[int]] | None, layout: str,
                 frames_per_chunk: int, parallel_gain: bool, pulse_id_step: int,
                 index_pad: int, bad_train_ids: Mapping[int, int] | None,
                 bad_flags: Sequence[int] | None, mean_photons: float, seed: int,
                 run_number: int, proposal: int, with_control: bool,
                 metadata_only: bool = False) -> Options:
    """Validate every argument of write_run; raise TypeError/ValueError naming the culprit."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    k = KINDS[kind]
    if legacy and raw:
        raise ValueError("legacy=True adds old /DET/ names to corrected data: pass raw=False too")
    n_trains = _int("n_trains", n_trains, 1)
    first_train = _int("first_train", first_train, 1)
    train_ids = np.arange(first_train, first_train + n_trains, dtype=np.uint64)

    if n_modules is not None and k.xtdf:
        raise ValueError(f"n_modules is only for JUNGFRAU; {kind} always has {k.n_modules}")
    n_mod = k.n_modules if n_modules is None else _int("n_modules", n_modules, 1, 8)
    all_mods = k.modnos(n_mod)
    if modules is None:
        mods = tuple(all_mods)
    else:
        mods = tuple(sorted({_int("module number", m) for m in modules}))
        bad = [m for m in mods if m not in all_mods]
        if bad or not mods:
            raise ValueError(f"modules must be a non-empty subset of {all_mods}, got {list(modules)}")

    if not k.xtdf:
        frames = np.ones(n_trains, dtype=np.int64)
    elif isinstance(frames_per_train, numbers.Integral) and not isinstance(frames_per_train, bool):
        frames = np.full(n_trains, _int("frames_per_train", frames_per_train, 0), dtype=np.int64)
    else:
        fpt = [_int("frames_per_train entry", f, 0) for f in frames_per_train]
        if len(fpt) != n_trains:
            raise ValueError(f"frames_per_train has {len(fpt)} entries for {n_trains} trains")
        frames = np.array(fpt, dtype=np.int64)
    if parallel_gain:
        if kind != "LPD1M":
            raise ValueError("parallel_gain is an LPD1M mode")
        frames = frames * 3
    if k.xtdf and frames.max() > 65535:
        raise ValueError("frames_per_train must stay below 65536 (cellId is uint16)")

    if format_version not in FORMAT_VERSIONS:
        raise ValueError(f"format_version must be one of {FORMAT_VERSIONS}, got {format_version!r}")
    if old_index and format_version != "0.5":
        raise ValueError("old_index (first/last/status) only exists in format 0.5")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    fpc = _int("frames_per_chunk", frames_per_chunk, 1)
    if layout == "contiguous" and fpc != 1:
        raise ValueError("frames_per_chunk does not apply to the contiguous layout")
    if metadata_only and layout != "chunked":
        raise ValueError("metadata_only=True allocates uncompressed chunks without writing "
                         f"them: it needs layout='chunked', not {layout!r}")

    tpf = None if trains_per_file is None else _int("trains_per_file", trains_per_file, 1)
    missing = _train_sets("missing_trains", missing_trains, mods, train_ids)
    empty = _train_sets("empty_trains", empty_trains, mods, train_ids)
    for m in set(missing) & set(empty):
        both = sorted(missing[m] & empty[m])
        if both:
            raise ValueError(f"module {m}: trains {both} are both missing and empty")
    for m in mods:
        if len(missing.get(m, ())) == n_trains:
            raise ValueError(f"module {m} would have no trains at all; leave it out of modules")

    bad_ids = {_int("bad_train_ids position", p, 0): _int("bad_train_ids value", v, 0)
               for p, v in (bad_train_ids or {}).items()}
    flags = frozenset(_int("bad_flags position", p, 0) for p in (bad_flags or ()))
    if flags and format_version == "0.5":
        raise ValueError("format 0.5 has no INDEX/flag: bad_flags needs format_version >= 1.0")

    if not isinstance(mean_photons, numbers.Real) or not 0 <= mean_photons <= 1000:
        raise ValueError(f"mean_photons must be a number in 0..1000, got {mean_photons!r}")
    return Options(
        kind=k, raw=bool(raw), legacy=bool(legacy),
        detector=detector_name or k.default_detector,
        train_ids=train_ids, frames=frames, modules=mods,
        n_cells=_int("n_cells", n_cells, 1, 16), format_version=format_version,
        old_index=bool(old_index), trains_per_file=tpf, missing=missing, empty=empty,
        layout=layout, frames_per_chunk=fpc, parallel_gain=bool(parallel_gain),
        pulse_id_step=_int("pulse_id_step", pulse_id_step, 1),
        index_pad=_int("index_pad", index_pad, 1), bad_train_ids=bad_ids, bad_flags=flags,
        mean_photons=float(mean_photons), seed=_int("seed", seed, 0),
        run_number=_int("run_number", run_number, 0, 9999),
        proposal=_int("proposal", proposal, 0, 2**32 - 1), with_control=bool(with_control),
        metadata_only=bool(metadata_only),
    )


def _splits(n_trains: int, tpf: int | None, offset: int) -> list[tuple[int, int]]:
    """Run-position ranges of the sequence files; the first file is `offset` trains short."""
    if tpf is None:
        return [(0, n_trains)]
    edges = [0, *range(tpf - offset, n_trains, tpf), n_trains]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def plan_files(opts: Options) -> list[FilePlan]:
    """Every detector and control file of the run, with the trains each one holds."""
    plans: list[FilePlan] = []
    tids = opts.train_ids
    tpf = opts.trains_per_file
    for m in opts.modules:
        missing = opts.missing.get(m, frozenset())
        empty = opts.empty.get(m, frozenset())
        offset = (m % tpf) if tpf else 0
        agg = f"{opts.kind.aggregator}{m:02d}"
        seq = 0
        for a, b in _splits(len(tids), tpf, offset):
            keep = np.array([int(t) not in missing for t in tids[a:b]], dtype=bool)
            if not keep.any():
                continue
            file_tids = tids[a:b][keep]
            is_empty = np.array([int(t) in empty for t in file_tids], dtype=bool)
            counts = np.where(is_empty, 0, opts.frames[a:b][keep])
            name = f"{opts.prefix}-R{opts.run_number:04d}-{agg}-S{seq:05d}.h5"
            plans.append(FilePlan(name, agg, seq, m, file_tids, counts, is_empty))
            seq += 1
    if opts.with_control:
        for seq, (a, b) in enumerate(_splits(len(tids), tpf, 0)):
            name = f"{opts.prefix}-R{opts.run_number:04d}-DA01-S{seq:05d}.h5"
            plans.append(FilePlan(name, "DA01", seq, None, tids[a:b],
                                  np.ones(b - a, dtype=np.int64), np.zeros(b - a, dtype=bool)))
    return plans
