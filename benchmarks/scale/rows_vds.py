"""Rows: the HDF5 virtual view (5-D and frames layouts): build, open and read with plain h5py,
beside reading the run files directly."""

from __future__ import annotations

import os
import time

from .common import cpu, need, open_det, quiet, start, view
from .registry import FRAMES_PER_TRAIN, Context, measurement


@measurement("vds_build", "to_vds, every key (pixel keys mapping='auto': blocks; "
             "workers=None: 2 processes for long runs)")
def _vds_build(ctx: Context) -> str | None:
    import json

    import h5py

    from detstack.convert import to_vds
    det = open_det(ctx)
    start(ctx)
    out = to_vds(det, view(ctx, "view.h5"), overwrite=True)
    with h5py.File(out) as f:
        maps = json.loads(f.attrs["detstack_record"])["mappings"]
    pixel = {k: v["count"] for k, v in maps.items() if v["form"] == "blocks"}
    return cpu(f"blocked keys and mappings {pixel}, {os.path.getsize(out) / 2**20:.0f} MiB file")


@measurement("vds_build_serial", "to_vds(workers=1), every key (blocks built in one process)")
def _vds_build_serial(ctx: Context) -> str | None:
    from detstack.convert import to_vds
    det = open_det(ctx)
    start(ctx)
    out = to_vds(det, view(ctx, "view-serial.h5"), overwrite=True, workers=1)
    size = os.path.getsize(out) / 2**20
    out.unlink()
    return cpu(f"{size:.0f} MiB file")


@measurement("vds_compact", "to_vds(mapping='compact'), every key")
def _vds_compact(ctx: Context) -> str | None:
    from detstack.convert import to_vds
    det = open_det(ctx)
    start(ctx)
    to_vds(det, view(ctx, "compact.h5"), overwrite=True, mapping="compact")
    return cpu()


@measurement("vds_frames", "to_vds(layout='frames'), every key")
def _vds_frames(ctx: Context) -> str | None:
    from detstack.convert import to_vds
    det = open_det(ctx)
    start(ctx)
    out = to_vds(det, view(ctx, "frames.h5"), overwrite=True, layout="frames")
    return cpu(f"{os.path.getsize(out) / 2**20:.0f} MiB file")


@measurement("vds_open", "plain h5py: `h5py.File(view)['image.data']`",
             prepare=need("vds_build", "view.h5"))
def _vds_open(ctx: Context) -> str | None:
    import h5py
    start(ctx)
    f = h5py.File(view(ctx, "view.h5"), "r")
    ds = f["image.data"]
    assert ds.shape[:2] == (16, ctx.trains), ds.shape
    return cpu()


@measurement("vds_train", "plain h5py: read one train, 16 modules, from the view",
             prepare=need("vds_build", "view.h5"))
def _vds_train(ctx: Context) -> str | None:
    import h5py
    start(ctx)
    with h5py.File(view(ctx, "view.h5"), "r") as f:
        block = f["image.data"][:, ctx.trains // 2]
    assert block.shape[:2] == (16, FRAMES_PER_TRAIN), block.shape
    return cpu()


@measurement("vds_frames_open", "plain h5py: `h5py.File(frames view)['image.data']`",
             prepare=need("vds_frames", "frames.h5"))
def _vds_frames_open(ctx: Context) -> str | None:
    import h5py
    start(ctx)
    f = h5py.File(view(ctx, "frames.h5"), "r")
    ds = f["image.data"]
    assert ds.shape[:2] == (16, ctx.trains * FRAMES_PER_TRAIN), ds.shape
    return cpu()


@measurement("vds_frames_train", "plain h5py: read one train, 16 modules, from the frames view",
             prepare=need("vds_frames", "frames.h5"))
def _vds_frames_train(ctx: Context) -> str | None:
    import h5py
    start(ctx)
    a = ctx.trains // 2 * FRAMES_PER_TRAIN
    with h5py.File(view(ctx, "frames.h5"), "r") as f:
        block = f["image.data"][:, a:a + FRAMES_PER_TRAIN]
    assert block.shape[:2] == (16, FRAMES_PER_TRAIN), block.shape
    return cpu()


@measurement("vds_detstack", "detstack: open_view(view) + AGIPD1M",
             prepare=need("vds_build", "view.h5"))
def _vds_detstack(ctx: Context) -> str | None:
    import detstack
    quiet()
    start(ctx)
    det = detstack.AGIPD1M(detstack.open_view(view(ctx, "view.h5")))
    assert det.n_modules == 16 and len(det.train_ids) == ctx.trains
    return cpu()


# trains of every module per bulk read (corrected: 512 MB). Each bulk row reads its frames
# once before the clock starts: the sparse run files' holes cost the kernel a zero-filled
# page each on first touch, which would charge whichever row reads a region first.
BULK_TRAINS = 2


def _bulk_note(nbytes: int, ctx: Context) -> str:
    return cpu(f"{nbytes / 2**20 / (time.perf_counter() - ctx.t0):.0f} MB/s")


@measurement("vds_bulk", f"plain h5py: bulk read of {BULK_TRAINS} trains x 16 modules "
             "from the view", prepare=need("vds_build", "view.h5"))
def _vds_bulk(ctx: Context) -> str | None:
    import h5py
    t0 = ctx.trains // 3
    with h5py.File(view(ctx, "view.h5"), "r") as f:
        ds = f["image.data"]
        ds[:, t0:t0 + BULK_TRAINS]      # warm the page cache (see BULK_TRAINS)
        start(ctx)
        block = ds[:, t0:t0 + BULK_TRAINS]
    assert block.shape[:3] == (16, BULK_TRAINS, FRAMES_PER_TRAIN), block.shape
    return _bulk_note(block.nbytes, ctx)


@measurement("vds_frames_bulk", f"plain h5py: bulk read of {BULK_TRAINS} trains x 16 modules "
             "from the frames view", prepare=need("vds_frames", "frames.h5"))
def _vds_frames_bulk(ctx: Context) -> str | None:
    import h5py
    a = ctx.trains // 3 * FRAMES_PER_TRAIN
    with h5py.File(view(ctx, "frames.h5"), "r") as f:
        ds = f["image.data"]
        ds[:, a:a + BULK_TRAINS * FRAMES_PER_TRAIN]      # warm the page cache
        start(ctx)
        block = ds[:, a:a + BULK_TRAINS * FRAMES_PER_TRAIN]
    assert block.shape[:2] == (16, BULK_TRAINS * FRAMES_PER_TRAIN), block.shape
    return _bulk_note(block.nbytes, ctx)


@measurement("src_bulk", f"plain h5py: the same {BULK_TRAINS} trains x 16 modules read "
             "from the run files directly")
def _src_bulk(ctx: Context) -> str | None:
    import h5py
    det = open_det(ctx)
    fmap = det.frame_map
    t0 = ctx.trains // 3
    reads = []   # (path, dataset, first row, rows): where the view's frames are stored
    for m in range(fmap.n_modules):
        for t in range(t0, t0 + BULK_TRAINS):
            f = fmap.files[int(fmap.file[m, t])]
            reads.append((str(f.path), f.dataset_path(fmap.sources[m], "image.data"),
                          int(fmap.first[m, t]), int(fmap.counts[m, t])))
    files: dict[str, h5py.File] = {}
    for warm in (True, False):      # the first pass warms the page cache
        nbytes = 0
        if not warm:
            start(ctx)
        for path, dset, first, count in reads:
            if path not in files:
                files[path] = h5py.File(path, "r")
            nbytes += files[path][dset][first:first + count].nbytes
    return _bulk_note(nbytes, ctx)
