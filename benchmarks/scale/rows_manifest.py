"""Rows: the zarr manifest (references; Parquet and JSON): build, open with plain zarr and
with detstack, read one frame."""

from __future__ import annotations

import json
import os
import shutil
import time

from .common import cpu, need, open_det, quiet, start, view
from .registry import Context, measurement


@measurement("man_build", "to_manifest, Parquet (.parq), every key")
def _man_build(ctx: Context) -> str | None:
    import resource

    from detstack.convert import to_manifest
    det = open_det(ctx)
    shutil.rmtree(view(ctx, "view.parq"), ignore_errors=True)   # not part of the build
    start(ctx)
    out = to_manifest(det, view(ctx, "view.parq"))
    mib = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)   # modules are built in workers
    return cpu(f"workers {kids.ru_utime + kids.ru_stime:.1f} s CPU; {mib:.1f} MiB of "
                f"references; load average {os.getloadavg()[0]:.1f}")


JSON_MAX_TRAINS = 3000   # ~100 bytes of JSON per chunk: 30,000 corrected trains is 10 GB


@measurement("man_json", f"to_manifest, JSON, every key (up to {JSON_MAX_TRAINS:,} trains)",
             max_trains=JSON_MAX_TRAINS)
def _man_json(ctx: Context) -> str | None:
    from detstack.convert import to_manifest
    det = open_det(ctx)
    start(ctx)
    out = to_manifest(det, view(ctx, "view.json"), overwrite=True)
    mib = out.stat().st_size / 2**20
    out.unlink()
    return cpu(f"{mib:.0f} MiB of JSON")


@measurement("man_open", "plain zarr: open manifest `image.data`",
             prepare=need("man_build", "view.parq"))
def _man_open(ctx: Context) -> str | None:
    import zarr
    quiet()
    os.chdir(ctx.scratch)   # relative Parquet references resolve against the working folder
    start(ctx)
    group = zarr.open_group("reference://", mode="r", storage_options={
        "fo": str(view(ctx, "view.parq")), "remote_protocol": "file"})
    assert group["image.data"].shape[:2] == (16, ctx.trains)
    return cpu()


@measurement("man_frame", "plain zarr: open manifest + read one frame",
             prepare=need("man_build", "view.parq"))
def _man_frame(ctx: Context) -> str | None:
    import zarr
    quiet()
    os.chdir(ctx.scratch)
    start(ctx)
    group = zarr.open_group("reference://", mode="r", storage_options={
        "fo": str(view(ctx, "view.parq")), "remote_protocol": "file"})
    opened = time.perf_counter()
    import pandas  # noqa: F401 - fsspec reads the records with it: timed apart
    imported = time.perf_counter()
    frame = group["image.data"][5, ctx.trains // 2, 7]
    assert frame.shape[-2:] == (512, 128)
    return cpu(f"open {opened - ctx.t0:.2f} s, pandas import {imported - opened:.2f} s, "
                f"frame {time.perf_counter() - imported:.2f} s; {_records(ctx)}")


def _records(ctx: Context) -> str:
    """The record size and file count of the measured manifest."""
    meta = json.loads((view(ctx, "view.parq") / ".zmetadata").read_text())
    files = sum(1 for p in view(ctx, "view.parq").rglob("refs.*.parq"))
    return f"{meta.get('record_size', '?'):,} references per record file, {files:,} files"


@measurement("man_view", "detstack open_view of the Parquet manifest + one frame",
             prepare=need("man_build", "view.parq"))
def _man_view(ctx: Context, imported: str = "first imports of zarr, pandas, xarray, dask "
              "included") -> str | None:
    import numpy as np

    import detstack
    from detstack.store import open_view
    quiet()
    start(ctx)
    det = detstack.AGIPD1M(open_view(view(ctx, "view.parq")))
    opened, cpu_opened = time.perf_counter() - ctx.t0, time.process_time()
    tid = int(det.train_ids[ctx.trains // 2])
    frame = det.select_trains(detstack.by_id[[tid]]).get_array("image.data", pulses=np.s_[7:8])
    assert frame.shape[-2:] == (512, 128)
    return cpu(f"open {opened:.2f} s, frame {time.perf_counter() - ctx.t0 - opened:.3f} s "
                f"(CPU {time.process_time() - cpu_opened:.3f} s; {imported}); load average "
                f"{os.getloadavg()[0]:.1f}")


@measurement("man_view_imported", "detstack open_view of the Parquet manifest + one frame, "
             "libraries imported first (as the plain zarr rows import zarr)",
             prepare=need("man_build", "view.parq"))
def _man_view_imported(ctx: Context) -> str | None:
    import dask.array  # noqa: F401 - xarray imports it when it makes the first DataArray
    import pandas  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import detstack.detectors  # noqa: F401
    import detstack.store.manifest  # noqa: F401
    return _man_view(ctx, "libraries imported before the clock")


@measurement("man_view_uncached", "detstack open_view of the Parquet manifest + one frame, "
             "libraries imported first, no caches (a machine that never saw the run: every "
             "source file opened and hashed)", prepare=need("man_build", "view.parq"))
def _man_view_uncached(ctx: Context) -> str | None:
    os.environ["DETSTACK_NO_CACHE"] = "1"   # this row's own process
    return _man_view_imported(ctx)
