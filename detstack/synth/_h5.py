"""The parts of a EuXFEL HDF5 file that every source shares: INDEX, METADATA, dataset layouts."""

from __future__ import annotations

from collections.abc import Iterable

import h5py
import numpy as np

from ._plan import FilePlan, Options

VLEN_BYTES = h5py.special_dtype(vlen=bytes)
ROW_PAD = 8  # data rows are over-allocated to a multiple of this (at least one spare row)
BASE_TIME_NS = 1_705_312_800 * 10**9  # 2024-01-15T10:00:00Z: train first_train starts here
CREATION_DATE = b"20240115T100000Z"
UPDATE_DATE = b"20240115T100500Z"

# (unitSymbol, description) written on keys in format 1.3, by the last path component
_UNITS = {
    "data": ("N_A", "pixel values of the frame"),
    "adc": ("N_A", "pixel values of each memory cell"),
    "gain": ("N_A", "gain stage per pixel"),
    "mask": ("N_A", "bad-pixel bits (0 = good)"),
    "trainId": ("N_A", "train ID"),
    "pulseId": ("N_A", "pulse ID within the train"),
    "cellId": ("N_A", "memory cell that stored the frame"),
    "timestamp": ("s", "time of the measurement"),
    "intensityTd": ("J", "pulse energy per pulse"),
    "photonFlux": ("J", "photon flux"),
    "ixPos": ("m", "horizontal beam position"),
}


def pad_to(n: int, multiple: int) -> int:
    """n rounded up to a multiple (an empty list still gets one padded block)."""
    return max(multiple, -(-n // multiple) * multiple)


def row_alloc(n_rows: int) -> int:
    """Rows to allocate for n rows of data: the DAQ leaves spare rows at the end."""
    return -(-(n_rows + 1) // ROW_PAD) * ROW_PAD


def write_base_index(f: h5py.File, opts: Options, plan: FilePlan) -> None:
    """INDEX/trainId (zero padded, corrupted where asked), and flag/timestamp/origin per format."""
    n = len(plan.train_ids)
    npad = pad_to(n, opts.index_pad)
    tid = np.zeros(npad, dtype=np.uint64)
    tid[:n] = plan.train_ids
    for pos, value in opts.bad_train_ids.items():
        if pos < n:
            tid[pos] = value
    chunks = (min(npad, 256),)
    f.create_dataset("INDEX/trainId", data=tid, chunks=chunks, maxshape=(None,))
    if opts.fmt < (1, 0):
        return
    bad_pos = [p for p in opts.bad_flags if p < n]
    # Format 1.1 stored the index of the source that sent the train ID: 0 (time server) = good
    good, suspect = (0, 1) if opts.fmt == (1, 1) else (1, 0)
    flag = np.zeros(npad, dtype=np.int32)
    flag[:n] = good
    flag[bad_pos] = suspect
    f.create_dataset("INDEX/flag", data=flag, chunks=chunks, maxshape=(None,))
    ts = np.zeros(npad, dtype=np.uint64)
    offsets = plan.train_ids - opts.train_ids[0]
    ts[:n] = np.uint64(BASE_TIME_NS) + offsets * np.uint64(100_000_000)
    f.create_dataset("INDEX/timestamp", data=ts, chunks=chunks, maxshape=(None,))
    if opts.fmt >= (1, 2):
        origin = np.zeros(npad, dtype=np.int32)
        origin[:n] = -1
        origin[bad_pos] = 0
        f.create_dataset("INDEX/origin", data=origin, chunks=chunks, maxshape=(None,))


def write_source_index(f: h5py.File, opts: Options, path: str, counts: np.ndarray) -> None:
    """INDEX/<source>[/<group>]: first & count (or 0.5's old first/last/status), one per train."""
    counts = np.asarray(counts, dtype=np.uint64)
    first = np.cumsum(counts, dtype=np.uint64) - counts
    grp = f.create_group(path)
    grp.create_dataset("first", data=first)
    if opts.old_index:
        has = counts > 0
        grp.create_dataset("last", data=np.where(has, first + counts - np.uint64(1), first))
        grp.create_dataset("status", data=has.astype(np.uint32))
    else:
        grp.create_dataset("count", data=counts)


def write_metadata(f: h5py.File, opts: Options, plan: FilePlan, source_ids: Iterable[str]) -> None:
    """METADATA: source lists (padded with empty strings) and run metadata per format version."""
    ids = list(source_ids)
    if opts.fmt == (1, 1):
        ids.append("Karabo_TimerServer/SA1_BR_SYS/TSYS/TIMESERVER")  # virtual source of 1.1
    npad = pad_to(len(ids), opts.index_pad)
    grp = f.create_group("METADATA" if opts.fmt < (1, 0) else "METADATA/dataSources")
    for name, values in (("dataSourceId", ids),
                         ("root", [i.partition("/")[0] for i in ids]),
                         ("deviceId", [i.partition("/")[2] for i in ids])):
        arr = np.full(npad, b"", dtype=object)
        arr[:len(values)] = [v.encode() for v in values]
        grp.create_dataset(name, data=arr, dtype=VLEN_BYTES, maxshape=(None,))
    if opts.fmt < (1, 0):
        return
    md = f["METADATA"]
    strings = {
        "dataFormatVersion": opts.format_version.encode(),
        "creationDate": CREATION_DATE, "updateDate": UPDATE_DATE,
        "daqLibrary": b"1.x", "karaboFramework": b"2.x",
        "runType": b"Synthetic (detstack.synth)", "sample": b"No Sample",
    }
    for name, value in strings.items():
        md.create_dataset(name, data=np.array([value], dtype=object), dtype=VLEN_BYTES)
    for name, value in (("proposalNumber", opts.proposal), ("runNumber", opts.run_number),
                        ("sequenceNumber", plan.sequence)):
        md.create_dataset(name, data=np.array([value], dtype=np.uint32))


def describe_keys(f: h5py.File) -> None:
    """Format 1.3: attach unitSymbol/description attributes to every key dataset."""
    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            parts = name.split("/")
            leaf = parts[-2] if parts[-1] == "value" and len(parts) > 1 else parts[-1]
            unit, desc = _UNITS.get(leaf, ("N_A", leaf))
            obj.attrs["unitSymbol"] = unit
            obj.attrs["description"] = desc

    for section in ("INSTRUMENT", "CONTROL", "RUN"):
        if section in f:
            f[section].visititems(visit)


def small_dataset(grp: h5py.Group, name: str, data: np.ndarray, alloc: int, raw: bool,
                  write: bool = True) -> None:
    """An ID/metadata dataset of `alloc` rows holding `data` in its first rows (or, with
    `write=False`, only shaped like it: nothing stored, reads as 0)."""
    data = np.asarray(data)
    shape = (alloc, *data.shape[1:])
    maxshape = (None, *data.shape[1:]) if raw else shape
    chunks = (min(alloc, 1024), *data.shape[1:])
    ds = grp.create_dataset(name, shape=shape, dtype=data.dtype, chunks=chunks, maxshape=maxshape)
    if write and len(data):
        ds[:len(data)] = data


def pixel_dataset(grp: h5py.Group, name: str, alloc: int, frame_shape: tuple[int, ...],
                  dtype: np.dtype, opts: Options, chunk_lead: tuple[int, ...] = ()) -> h5py.Dataset:
    """A per-frame pixel dataset in the requested layout (one frame per chunk by default).

    `chunk_lead` gives the chunk extent of axes between the row axis and the frame axes
    (JUNGFRAU's memory-cell axis), which are part of `frame_shape`.
    """
    shape = (alloc, *frame_shape)
    if opts.layout == "contiguous":
        return grp.create_dataset(name, shape=shape, dtype=dtype)
    inner = frame_shape[len(chunk_lead):]
    rows = 1 if chunk_lead else min(opts.frames_per_chunk, alloc)
    kw: dict[str, object] = {"chunks": (rows, *chunk_lead, *inner)}
    kw["maxshape"] = (None, *frame_shape) if opts.raw else shape
    if opts.layout in ("deflate", "shuffle-deflate"):
        kw.update(compression="gzip", compression_opts=1,
                  shuffle=opts.layout == "shuffle-deflate")
    if opts.metadata_only:
        # Every chunk allocated at creation (so the chunk index is as big as the DAQ's) and
        # never written: the file space stays a hole, the file sparse, values read as 0.
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        kw.update(dcpl=dcpl, fill_time="never")
    return grp.create_dataset(name, shape=shape, dtype=dtype, **kw)
