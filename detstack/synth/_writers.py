"""Write the sources of one file: an XTDF module, a JUNGFRAU module, or the control (DA) file.

Each writer fills INSTRUMENT/CONTROL/RUN and INDEX for its source and returns the
METADATA data-source IDs it created. Pixel data are streamed in blocks of rows taken from
the pixel pool, so memory stays bounded however big the run is.
"""

from __future__ import annotations

import h5py
import numpy as np

from ._h5 import BASE_TIME_NS, pixel_dataset, row_alloc, small_dataset, write_source_index
from ._pixels import fill, pixel_keys
from ._plan import FilePlan, Options

BLOCK_BYTES = 32 * 2**20  # pixel bytes assembled per write
XTDF_GROUPS = ("detector", "header", "image", "trailer")
XGM_DEVICE = "SA1_XTD2_XGM/XGM/DOOCS"


def _block_rows(row_bytes: int, multiple: int) -> int:
    """Rows per write: about BLOCK_BYTES, a whole number of chunks."""
    rows = max(1, BLOCK_BYTES // max(row_bytes, 1))
    return max(multiple, rows // multiple * multiple)


def _stream_pixels(opts: Options, grp: h5py.Group, pool: dict[str, np.ndarray], modno: int,
                   row_tids: np.ndarray, row_frames: np.ndarray, alloc: int,
                   per_row: int = 0) -> None:
    """Create every pixel dataset of a source and fill it, one block of rows at a time.

    XTDF: one frame per row (per_row=0). JUNGFRAU: `per_row` memory cells per row; the
    row/frame arrays then list every (row, cell) pair, row-major.
    """
    keys = pixel_keys(opts.kind, opts.raw)
    lead = (per_row,) if per_row else ()
    cells = per_row or 1
    frame_bytes = sum(int(np.prod(pool[k].shape[1:])) * pool[k].dtype.itemsize for k in keys)
    rows = _block_rows(frame_bytes * cells, 1 if per_row else opts.frames_per_chunk)
    chunk_lead = (min(opts.frames_per_chunk, per_row),) if per_row else ()
    n_rows = len(row_frames) // cells
    for key in keys:
        shape = pool[key].shape[1:]
        dset = pixel_dataset(grp, key.split(".", 1)[1], alloc, (*lead, *shape),
                             pool[key].dtype, opts, chunk_lead)
        if opts.metadata_only:
            continue
        buf = np.empty((rows * cells, *shape), dtype=pool[key].dtype)
        for r0 in range(0, n_rows, rows):
            r1 = min(r0 + rows, n_rows)
            sel = slice(r0 * cells, r1 * cells)
            block = fill(opts.kind, pool, key, modno, row_tids[sel], row_frames[sel], buf)
            dset[r0:r1] = block.reshape((r1 - r0, *lead, *shape))


def write_xtdf(f: h5py.File, opts: Options, plan: FilePlan,
               pool: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    """One AGIPD/LPD/DSSC module: groups image (per frame), header/trailer/detector (per train)."""
    assert plan.modno is not None
    kind, raw = opts.kind, opts.raw
    src = kind.source(opts.detector, plan.modno, raw)
    counts = plan.counts
    n_rows = int(counts.sum())
    firsts = np.cumsum(counts) - counts
    row_tids = np.repeat(plan.train_ids, counts)
    row_frames = np.arange(n_rows) - np.repeat(firsts, counts)
    row_pulse = row_frames
    if opts.parallel_gain:  # 3 gain stages one after the other; IDs repeat per stage
        row_pulse = row_frames % np.maximum(np.repeat(counts // 3, counts), 1)

    def col(a: np.ndarray) -> np.ndarray:  # raw IDs have a trailing length-1 axis
        return a[:, None] if raw else a

    img = f.create_group(f"INSTRUMENT/{src}/image")
    alloc = row_alloc(n_rows)
    frame_bytes = int(np.prod(kind.frame_shape(True))) * 2
    small_dataset(img, "trainId", col(row_tids), alloc, raw)
    small_dataset(img, "pulseId", col((row_pulse * opts.pulse_id_step).astype(np.uint64)), alloc, raw)
    small_dataset(img, "cellId", col(row_pulse.astype(np.uint16)), alloc, raw)
    small_dataset(img, "length", col(np.full(n_rows, frame_bytes, dtype=np.uint32)), alloc, raw)
    small_dataset(img, "status", col(np.zeros(n_rows, dtype=np.uint16)), alloc, raw)
    _stream_pixels(opts, img, pool, plan.modno, row_tids, row_frames, alloc)

    per_train = ~plan.empty
    tids = plan.train_ids[per_train]
    n = len(tids)
    talloc = row_alloc(n)
    base = f"INSTRUMENT/{src}"
    header = f.create_group(f"{base}/header")
    small_dataset(header, "trainId", tids, talloc, raw)
    small_dataset(header, "pulseCount", counts[per_train].astype(np.uint64), talloc, raw)
    small_dataset(header, "dataId", np.zeros(n, dtype=np.uint64), talloc, raw)
    small_dataset(header, "linkId", np.full(n, plan.modno, dtype=np.uint64), talloc, raw)
    small_dataset(header, "majorTrainFormatVersion", np.full(n, 2, dtype=np.uint32), talloc, raw)
    small_dataset(header, "minorTrainFormatVersion", np.ones(n, dtype=np.uint32), talloc, raw)
    magic = np.frombuffer(b"XTDF\0\0\0\0", dtype=np.int8)
    small_dataset(header, "magicNumberBegin", np.tile(magic, (n, 1)), talloc, raw)
    trailer = f.create_group(f"{base}/trailer")
    small_dataset(trailer, "trainId", tids, talloc, raw)
    small_dataset(trailer, "status", np.zeros(n, dtype=np.uint64), talloc, raw)
    small_dataset(trailer, "magicNumberEnd", np.tile(magic[::-1], (n, 1)), talloc, raw)
    det = f.create_group(f"{base}/detector")
    small_dataset(det, "trainId", tids, talloc, raw)
    det_bytes = np.broadcast_to((tids % 256).astype(np.uint8)[:, None], (n, kind.detector_data_size))
    small_dataset(det, "data", det_bytes, talloc, raw, write=not opts.metadata_only)

    for group in XTDF_GROUPS:
        write_source_index(f, opts, f"INDEX/{src}/{group}",
                           counts if group == "image" else per_train.astype(np.uint64))
    return src, [f"INSTRUMENT/{src}/{g}" for g in XTDF_GROUPS]


def write_jungfrau(f: h5py.File, opts: Options, plan: FilePlan,
                   pool: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    """One JUNGFRAU module: group `data`, one entry per train holding every memory cell."""
    assert plan.modno is not None
    src = opts.kind.source(opts.detector, plan.modno, opts.raw)
    cells = opts.n_cells
    present = ~plan.empty
    tids = plan.train_ids[present]
    n = len(tids)
    alloc = row_alloc(n)
    grp = f.create_group(f"INSTRUMENT/{src}/data")
    small_dataset(grp, "trainId", tids, alloc, opts.raw)
    cell_pos = np.tile(np.arange(cells), n)
    memory_cell = (cells - 1 - np.arange(cells)).astype(np.uint8)  # burst mode counts down
    small_dataset(grp, "memoryCell", np.tile(memory_cell, (n, 1)), alloc, opts.raw)
    frame_no = (tids - opts.train_ids[0])[:, None] * np.uint64(cells) + np.arange(1, cells + 1,
                                                                                  dtype=np.uint64)
    small_dataset(grp, "frameNumber", frame_no.astype(np.uint64), alloc, opts.raw)
    t_s = BASE_TIME_NS / 1e9 + (tids - opts.train_ids[0]).astype(np.float64) * 0.1
    small_dataset(grp, "timestamp", t_s[:, None] + np.arange(cells) * 1e-6, alloc, opts.raw)
    _stream_pixels(opts, grp, pool, plan.modno, np.repeat(tids, cells), cell_pos, alloc,
                   per_row=cells)
    write_source_index(f, opts, f"INDEX/{src}/data", present.astype(np.uint64))
    return src, [f"INSTRUMENT/{src}/data"]


def write_control(f: h5py.File, opts: Options, plan: FilePlan) -> list[str]:
    """The DA file: an XGM-like CONTROL source (plus its RUN values) and fast output."""
    tids = plan.train_ids
    n = len(tids)
    ts = np.uint64(BASE_TIME_NS) + (tids - opts.train_ids[0]) * np.uint64(100_000_000)
    pos = np.concatenate([[0.0], (tids - opts.train_ids[0]).astype(np.float64)])
    props = {  # element 0 is the run start, what every file's RUN section holds
        "pulseEnergy/photonFlux": (1000.0 + 10.0 * np.sin(pos / 5.0)).astype(np.float32),
        "beamPosition/ixPos": (0.1 * np.cos(pos / 7.0)).astype(np.float32),
    }
    for prop, values in props.items():
        ctrl = f.create_group(f"CONTROL/{XGM_DEVICE}/{prop}")
        ctrl.create_dataset("value", data=values[1:])
        ctrl.create_dataset("timestamp", data=ts)
        run = f.create_group(f"RUN/{XGM_DEVICE}/{prop}")
        run.create_dataset("value", data=values[:1])
        run.create_dataset("timestamp", data=np.array([BASE_TIME_NS], dtype=np.uint64))
    write_source_index(f, opts, f"INDEX/{XGM_DEVICE}", np.ones(n, dtype=np.uint64))

    out = f"{XGM_DEVICE}:output"
    grp = f.create_group(f"INSTRUMENT/{out}/data")
    alloc = row_alloc(n)
    small_dataset(grp, "trainId", tids, alloc, True)
    intensity = np.zeros((n, 1000), dtype=np.float32)
    n_pulses = int(opts.frames.max()) or 1
    intensity[:, :min(n_pulses, 1000)] = props["pulseEnergy/photonFlux"][1:, None] / n_pulses
    small_dataset(grp, "intensityTd", intensity, alloc, True)
    write_source_index(f, opts, f"INDEX/{out}/data", np.ones(n, dtype=np.uint64))
    return [f"CONTROL/{XGM_DEVICE}", f"INSTRUMENT/{out}/data"]
