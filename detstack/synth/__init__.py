"""Synthetic EuXFEL detector runs in the real file layout, for tests, the demo and benchmarks.

`write_run` writes a run folder that EXtra-data and detstack open like real data (raw or
corrected; AGIPD-1M, AGIPD-500K, LPD-1M, DSSC-1M, JUNGFRAU; file format 0.5 to 1.3), with
the awkward cases real runs have: sequence files that break at different trains per module,
missing and empty trains, variable frame counts, padded indexes, suspect train IDs, legacy
source names, compressed or contiguous layouts. Pixel values are deterministic
(`frame_values`) and written at disk speed, so multi-GB runs are cheap to make.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py

from ._h5 import describe_keys, write_base_index, write_metadata
from ._kinds import FORMAT_VERSIONS, KINDS, LAYOUTS
from ._pixels import frame_values, main_key, pool
from ._plan import FilePlan, Options, make_options, plan_files
from ._writers import write_control, write_jungfrau, write_xtdf

__all__ = ["FORMAT_VERSIONS", "KINDS", "LAYOUTS", "demo_run", "frame_values", "main_key",
           "write_run"]


def _write_file(f: h5py.File, opts: Options, plan: FilePlan) -> None:
    """Fill one open file: base index, its source(s), metadata, links, attributes."""
    write_base_index(f, opts, plan)
    f.create_group("RUN")
    if plan.modno is None:
        source_ids = write_control(f, opts, plan)
    else:
        frames_pool = pool(opts.kind.name, opts.raw, opts.seed, opts.mean_photons)
        writer = write_xtdf if opts.kind.xtdf else write_jungfrau
        src, source_ids = writer(f, opts, plan, frames_pool)
        if opts.legacy:  # 2022+ corrected files keep the raw-style name as soft links
            old = opts.kind.legacy_source(opts.detector, plan.modno)
            f[f"INSTRUMENT/{old}"] = h5py.SoftLink(f"/INSTRUMENT/{src}")
            f[f"INDEX/{old}"] = h5py.SoftLink(f"/INDEX/{src}")
            source_ids += [i.replace(src, old, 1) for i in source_ids]
    write_metadata(f, opts, plan, source_ids)
    if opts.fmt >= (1, 3):
        describe_keys(f)


def write_run(
    path: str | os.PathLike[str],
    kind: str = "AGIPD1M",
    *,
    raw: bool = True,
    legacy: bool = False,
    n_trains: int = 8,
    first_train: int = 10000,
    frames_per_train: int | Sequence[int] = 64,
    modules: Sequence[int] | None = None,
    n_modules: int | None = None,
    n_cells: int = 16,
    detector_name: str | None = None,
    format_version: str = "1.3",
    old_index: bool = False,
    trains_per_file: int | None = None,
    missing_trains: Mapping[int, Sequence[int]] | None = None,
    empty_trains: Mapping[int, Sequence[int]] | None = None,
    layout: str = "chunked",
    frames_per_chunk: int = 1,
    parallel_gain: bool = False,
    pulse_id_step: int = 1,
    index_pad: int = 32,
    bad_train_ids: Mapping[int, int] | None = None,
    bad_flags: Sequence[int] | None = None,
    mean_photons: float = 0.5,
    seed: int = 0,
    run_number: int = 1,
    proposal: int = 700000,
    with_control: bool = True,
    metadata_only: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Write a synthetic run folder in the EuXFEL layout; return every file written, sorted.

    One file per module and sequence, `{RAW|CORR}-R{run:04d}-{AGG}-S{seq:05d}.h5`, plus a
    DA01 control file when `with_control`. Arguments are all checked before anything is
    written; a failure while writing removes the files of this call. The folder must hold no
    `.h5` file unless `overwrite=True`, which deletes every `.h5` file (and EXtra-data's
    `karabo_data_map.json` cache) in it first.

    Options:
    - `kind`: AGIPD1M, AGIPD500K, LPD1M, DSSC1M or JUNGFRAU; `raw` picks `/DET/...:xtdf`
      uint16 sources, else corrected `/CORR/...:output` float32 with gain and mask;
      `legacy` (corrected only) adds soft links and METADATA entries under the old raw names.
    - `frames_per_train`: int or one int per train (0 allowed); with `parallel_gain` (LPD1M)
      it counts frames per gain stage and 3x are stored. JUNGFRAU ignores it: one entry per
      train of `n_cells` memory cells. `modules` defaults to the whole detector; JUNGFRAU's
      `n_modules` (1..8) sets its size.
    - `trains_per_file`: sequence files; module m's first file is `m % trains_per_file`
      trains short, so modules break at different trains.
    - `missing_trains` / `empty_trains`: {module: [train IDs]} absent from that module's
      INDEX/trainId, or present with count 0 in every group.
    - `format_version` "0.5" to "1.3"; `old_index` (0.5 only) writes first/last/status.
      `index_pad`: INDEX/trainId and the METADATA source lists are zero-padded to a multiple.
    - `bad_train_ids` ({position: id}) and `bad_flags` (positions) apply to INDEX/trainId and
      INDEX/flag at those positions of *every* file (format 1.1 stores the flag inverted).
    - `layout` applies to every pixel key (data/adc, gain, mask): "chunked" (uncompressed,
      `frames_per_chunk` frames per chunk; JUNGFRAU: memory cells per chunk), "contiguous",
      "deflate" (gzip 1) or "shuffle-deflate".
    - Values: Poisson(`mean_photons`) counts from `seed`, see `frame_values`;
      pulseId = i * `pulse_id_step`, cellId = i for frame i of a train (per gain stage).
    - `metadata_only` (layout "chunked" only): pixel datasets get every chunk allocated in
      the file but none written, as a real DAQ file's chunk index with no pixel bytes; the
      files are sparse (about 2.5 MB on disk per raw file of 16,000 frames, mostly chunk
      index) and pixel values, like the per-train `detector/data` bytes, read as 0.
      Everything else (INDEX, train/pulse/cell IDs, METADATA) is written as usual.
    """
    opts = make_options(
        kind, raw, legacy, n_trains, first_train, frames_per_train, modules, n_modules, n_cells,
        detector_name, format_version, old_index, trains_per_file, missing_trains,
        empty_trains, layout, frames_per_chunk, parallel_gain, pulse_id_step, index_pad,
        bad_train_ids, bad_flags, mean_photons, seed, run_number, proposal, with_control,
        metadata_only,
    )
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder; pick a run folder path")
    existing = sorted(folder.glob("*.h5")) if folder.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(f"{folder} already holds {len(existing)} .h5 file(s), e.g. "
                              f"{existing[0].name}; pass overwrite=True to replace them")
    plans = plan_files(opts)
    folder.mkdir(parents=True, exist_ok=True)
    for old in existing:
        old.unlink()
    (folder / "karabo_data_map.json").unlink(missing_ok=True)

    written: list[Path] = []
    tmp = folder / ".synth.part"
    try:
        for plan in plans:
            tmp = folder / f".{plan.name}.part"  # not *.h5: readers never see half a file
            with h5py.File(tmp, "w") as f:
                _write_file(f, opts, plan)
            final = folder / plan.name
            os.replace(tmp, final)
            written.append(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return sorted(written)


def demo_run(path: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
    """The small run behind `detstack demo`: raw AGIPD-1M, 16 modules, 4 trains x 32 frames.

    Module 3 misses train 10002, and every module has two sequence files, which break at
    different trains depending on the module, so the demo shows the alignment at work.
    """
    return write_run(path, "AGIPD1M", raw=True, n_trains=4, frames_per_train=32,
                     trains_per_file=3, missing_trains={3: [10002]}, overwrite=overwrite)
