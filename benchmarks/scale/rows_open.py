"""Rows: opening the run (RunDirectory, the detector), detstack beside EXtra-data."""

from __future__ import annotations

from .common import clear_detstack_cache, clear_extra_data_cache, detstack_env, quiet
from .process import run_child
from .registry import Context, measurement


@measurement("baseline", "python + imports (baseline)")
def _baseline(ctx: Context) -> str | None:
    import extra_data  # noqa: F401
    import h5py  # noqa: F401
    import numpy  # noqa: F401
    import xarray  # noqa: F401

    import detstack  # noqa: F401
    ctx.start()
    return None


@measurement("ds_open", "detstack RunDirectory, first open", prepare=clear_detstack_cache,
             env=detstack_env)
def _ds_open(ctx: Context) -> str | None:
    import detstack
    quiet()
    ctx.start()
    run = detstack.RunDirectory(ctx.run)
    assert len(run.train_ids) == ctx.trains, len(run.train_ids)
    return f"{len(run.files)} files"


def _ds_warm(ctx: Context) -> None:
    clear_detstack_cache(ctx)
    run_child("ds_open", ctx)


@measurement("ds_open_cached", "detstack RunDirectory, second open (cache)", prepare=_ds_warm, env=detstack_env)
def _ds_open_cached(ctx: Context) -> str | None:
    return _ds_open(ctx)


@measurement("ed_open", "EXtra-data 1.25 RunDirectory, first open", prepare=clear_extra_data_cache)
def _ed_open(ctx: Context) -> str | None:
    import extra_data
    quiet()
    ctx.start()
    run = extra_data.RunDirectory(ctx.run)
    assert len(run.train_ids) == ctx.trains, len(run.train_ids)
    return None


def _ed_warm(ctx: Context) -> None:
    clear_extra_data_cache(ctx)
    run_child("ed_open", ctx)


@measurement("ed_open_cached", "EXtra-data 1.25 RunDirectory, second open (cache)", prepare=_ed_warm)
def _ed_open_cached(ctx: Context) -> str | None:
    try:
        return _ed_open(ctx)
    finally:
        clear_extra_data_cache(ctx)  # EXtra-data wrote it into the run folder; detstack never does


@measurement("ds_det", "detstack RunDirectory (cache) + AGIPD1M(run), index not cached",
             prepare=_ds_warm, env=detstack_env)
def _ds_detector(ctx: Context) -> str | None:
    import detstack
    quiet()
    ctx.start()
    det = detstack.AGIPD1M(detstack.RunDirectory(ctx.run))
    assert det.n_modules == 16, det.n_modules
    return None


def _ds_det_warm(ctx: Context) -> None:
    _ds_warm(ctx)
    run_child("ds_det", ctx)   # reads every index group once and caches it


@measurement("ds_det_cached", "detstack RunDirectory + AGIPD1M(run), both caches warm",
             prepare=_ds_det_warm, env=detstack_env)
def _ds_detector_cached(ctx: Context) -> str | None:
    return _ds_detector(ctx)


@measurement("ed_det", "EXtra-data RunDirectory (cache) + AGIPD1M(run)", prepare=_ed_warm)
def _ed_detector(ctx: Context) -> str | None:
    import extra_data
    from extra_data.components import AGIPD1M
    quiet()
    try:
        ctx.start()
        det = AGIPD1M(extra_data.RunDirectory(ctx.run))
        assert det.n_modules == 16, det.n_modules
    finally:
        clear_extra_data_cache(ctx)
    return None
