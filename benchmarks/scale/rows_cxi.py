"""Rows: the virtual CXI layout (CrystFEL), detstack beside EXtra-data's write_virtual_cxi."""

from __future__ import annotations

from .common import clear_extra_data_cache, cpu, need, open_det, quiet, start, view
from .registry import FRAMES_PER_TRAIN, Context, measurement


@measurement("cxi_build", "to_cxi (CXI frames-first + by_module)")
def _cxi_build(ctx: Context) -> str | None:
    from detstack.convert import to_cxi
    det = open_det(ctx)
    start(ctx)
    to_cxi(det, view(ctx, "view.cxi"), overwrite=True)
    return cpu()


@measurement("ed_cxi", "EXtra-data AGIPD1M(run).write_virtual_cxi")
def _ed_cxi(ctx: Context) -> str | None:
    import extra_data
    from extra_data.components import AGIPD1M
    quiet()
    det = AGIPD1M(extra_data.RunDirectory(ctx.run))
    start(ctx)
    try:
        det.write_virtual_cxi(str(view(ctx, "ed.cxi")))
    finally:
        clear_extra_data_cache(ctx)
        view(ctx, "ed.cxi").unlink(missing_ok=True)
    return cpu()


@measurement("cxi_open", "plain h5py: open CXI `entry_1/data_1/data`",
             prepare=need("cxi_build", "view.cxi"))
def _cxi_open(ctx: Context) -> str | None:
    import h5py
    start(ctx)
    f = h5py.File(view(ctx, "view.cxi"), "r")
    assert f["entry_1/data_1/data"].shape[0] == ctx.trains * FRAMES_PER_TRAIN
    return cpu()
