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
from ._pixels import VALUE_MODELS, frame_values, main_key, pool
from ._plan import FilePlan, Options, make_options, plan_files
from ._values import photon_energy
from ._writers import write_control, write_jungfrau, write_xtdf

__all__ = ["FORMAT_VERSIONS", "KINDS", "LAYOUTS", "VALUE_MODELS", "demo_run", "frame_values",
           "main_key", "photon_energy", "write_run"]


def _write_file(f: h5py.File, opts: Options, plan: FilePlan) -> None:
    """Fill one open file: base index, its source(s), metadata, links, attributes."""
    write_base_index(f, opts, plan)
    f.create_group("RUN")
    if plan.modno is None:
        source_ids = write_control(f, opts, plan)
    else:
        frames_pool = pool(opts.kind.name, opts.raw, opts.seed, opts.mean_photons, opts.values)
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
    values: str = "realistic",
    mean_photons: float | None = None,
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
    written; a failure while writing removes the files of this call.

    Parameters
    ----------
    path : str or path-like
        The run folder; it must hold no `.h5` file unless `overwrite`.
    kind : str, default 'AGIPD1M'
        AGIPD1M, AGIPD500K, LPD1M, DSSC1M or JUNGFRAU.
    raw : bool, default True
        Raw `/DET/...:xtdf` uint16 sources; False: corrected `/CORR/...:output`
        float32 with gain and mask.
    legacy : bool, default False
        Corrected only: add soft links and METADATA entries under the old raw names.
    n_trains : int, default 8
        Number of trains.
    first_train : int, default 10000
        The first train ID.
    frames_per_train : int or sequence of int, default 64
        Frames per train, or one count per train (0 allowed); with `parallel_gain`
        (LPD1M) per gain stage (3x are stored). JUNGFRAU ignores it.
    modules : sequence of int, optional
        Module numbers to write (default the whole detector).
    n_modules : int, optional
        JUNGFRAU only: the detector's size (1..8).
    n_cells : int, default 16
        JUNGFRAU only: memory cells per train (one entry per train).
    detector_name : str, optional
        Detector name (default the kind's usual name, e.g. 'SPB_DET_AGIPD1M-1').
    format_version : str, default '1.3'
        File format version, "0.5" to "1.3".
    old_index : bool, default False
        Format 0.5 only: write INDEX first/last/status instead of first/count.
    trains_per_file : int, optional
        Sequence files of this many trains; module m's first file is
        `m % trains_per_file` trains short, so modules break at different trains.
    missing_trains : mapping of int to sequence of int, optional
        `{module: [train IDs]}` absent from that module's INDEX/trainId.
    empty_trains : mapping of int to sequence of int, optional
        `{module: [train IDs]}` present with count 0 in every index group.
    layout : str, default 'chunked'
        Every pixel key's storage: "chunked" (uncompressed, `frames_per_chunk`
        frames per chunk), "contiguous", "deflate" (gzip 1) or "shuffle-deflate".
    frames_per_chunk : int, default 1
        Frames per chunk of the "chunked" layout (JUNGFRAU: memory cells).
    parallel_gain : bool, default False
        LPD1M only: store each train's frames three times (high, medium, low gain).
    pulse_id_step : int, default 1
        pulseId = i * `pulse_id_step` for frame i of a train (cellId = i).
    index_pad : int, default 32
        INDEX/trainId and the METADATA source lists are zero-padded to a multiple.
    bad_train_ids : mapping of int to int, optional
        `{position: train ID}` written into INDEX/trainId of every file.
    bad_flags : sequence of int, optional
        Positions flagged as suspect in INDEX/flag of every file (format 1.1 stores
        the flag inverted).
    values : str, default 'realistic'
        The value model (see `frame_values`): "realistic" raw frames are ADC values
        (per-pixel, per-cell pedestal + noise + photons in ADU, gain switching for
        bright pixels; raw AGIPD's gain plane holds gain-ADC values; JUNGFRAU/LPD
        keep the gain code in the top bits), realistic corrected frames float32 keV
        with noise; "photons": Poisson photon counts (raw and corrected).
    mean_photons : float, optional
        Photons per pixel per frame (default 0.1 realistic, 0.5 photons).
    seed : int, default 0
        Seed of every random value.
    run_number : int, default 1
        The run number in file names and METADATA.
    proposal : int, default 700000
        The proposal number in METADATA.
    with_control : bool, default True
        Also write a DA01 control file (slow data).
    metadata_only : bool, default False
        Layout "chunked" only: allocate every chunk of the pixel datasets but write
        none, as a real DAQ file's chunk index with no pixel bytes (sparse files of
        about 2.5 MB per raw file of 16,000 frames; pixels read as 0). Everything
        else (INDEX, train/pulse/cell IDs, METADATA) is written as usual.
    overwrite : bool, default False
        First delete every `.h5` file (and EXtra-data's `karabo_data_map.json`
        cache) in the folder.

    Returns
    -------
    list of pathlib.Path
        The files written, sorted by name.

    Raises
    ------
    ValueError
        An argument out of range or a combination that cannot be written.
    NotADirectoryError
        `path` exists and is not a folder.
    FileExistsError
        The folder already holds `.h5` files and `overwrite` is False.
    """
    opts = make_options(
        kind, raw, legacy, n_trains, first_train, frames_per_train, modules, n_modules, n_cells,
        detector_name, format_version, old_index, trains_per_file, missing_trains,
        empty_trains, layout, frames_per_chunk, parallel_gain, pulse_id_step, index_pad,
        bad_train_ids, bad_flags, mean_photons, seed, run_number, proposal, with_control,
        metadata_only,
        values=values,
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

    Parameters
    ----------
    path : str or path-like
        The run folder to write.
    overwrite : bool, default False
        Replace the `.h5` files of an earlier run there.

    Returns
    -------
    list of pathlib.Path
        The files written, sorted by name.

    Raises
    ------
    FileExistsError
        The folder already holds `.h5` files and `overwrite` is False.
    """
    return write_run(path, "AGIPD1M", raw=True, n_trains=4, frames_per_train=32,
                     trains_per_file=3, missing_trains={3: [10002]}, overwrite=overwrite)
