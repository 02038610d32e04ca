"""Train layout vs frame layout on hit-selected data (frame counts varying a lot per train).

For each layout and form: the array size a plain reader allocates, the number of HDF5
mappings, the time to write the view and to read the whole main key with plain tools
(h5py, ``xr.open_zarr``), plus EXtra-data's reduced mock run sizes. Run::

    python benchmarks/bench_layouts.py [--trains 200] [--modules 4] [--out /tmp/bench-layouts]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

import detstack
from detstack import synth
from detstack.convert import to_vds, to_zarr
from detstack.convert.plan import ViewPlan


def hit_counts(n_trains: int, seed: int = 1) -> list[int]:
    """Mostly a few hits per train, sometimes a full train of 64 frames."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3, n_trains)
    counts[rng.random(n_trains) < 0.05] = 64
    return counts.tolist()


def measure(det: object, out: Path, layout: str) -> str:
    """One row of the table: sizes, mappings and timings of one layout."""
    plan = ViewPlan(det, layout=layout)
    gb = np.prod(plan.shape(plan.key("image.data"))) * 4 / 1e9
    t0 = time.perf_counter()
    vds = to_vds(det, out / f"{layout}.h5", layout=layout, keys=["image.data"])
    t_vds = time.perf_counter() - t0
    with h5py.File(vds, "r") as f:
        maps = json.loads(f.attrs["detstack_record"])["mappings"]["image.data"]["count"]
        t0 = time.perf_counter()
        f["image.data"][0]
        t_h5 = time.perf_counter() - t0
    url = str(out / f"{layout}.zarr")
    t0 = time.perf_counter()
    to_zarr(det, url, layout=layout, keys=["image.data"])
    t_zarr = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.asarray(xr.open_zarr(url)["image.data"][0])
    t_xr = time.perf_counter() - t0
    return (f"{layout:7} {gb:9.2f} {maps:9d} {t_vds:6.2f} {t_h5:12.2f} {t_zarr:7.2f} "
            f"{t_xr:17.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trains", type=int, default=100)
    ap.add_argument("--modules", type=int, default=2)
    ap.add_argument("--out", default="/tmp/bench-layouts")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    run_dir = out / "run"
    counts = hit_counts(args.trains)
    synth.write_run(run_dir, "AGIPD1M", raw=False, n_trains=args.trains,
                    frames_per_train=counts, modules=list(range(args.modules)),
                    with_control=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = detstack.AGIPD1M(detstack.RunDirectory(run_dir), raw=False)
    n_frames = sum(counts)
    print(f"AGIPD-1M corrected, {args.modules} modules, {args.trains} trains, {n_frames} "
          f"frames (max {max(counts)} per train); timings on a loaded shared machine")
    print(f"{'layout':7} {'array GB':>9} {'vds maps':>9} {'vds s':>6} {'h5py mod 0 s':>12} "
          f"{'zarr s':>7} {'open_zarr mod 0 s':>17}")
    for layout in ("trains", "frames"):
        print(measure(det, out, layout))
    try:
        from extra_data.tests import make_examples
    except ImportError:
        return
    mock = out / "reduced"
    mock.mkdir()
    make_examples.make_reduced_spb_run(str(mock), raw=False, rng=np.random.RandomState(123),
                                       format_version="1.2")
    red = detstack.AGIPD1M(detstack.RunDirectory(mock), raw=False)
    sizes = {lay: np.prod(ViewPlan(red, layout=lay).shape(ViewPlan(red).key("image.data")))
             * 4 / 1e9 for lay in ("trains", "frames")}
    print(f"EXtra-data reduced mock (corrected, 16 modules): trains layout {sizes['trains']:.2f}"
          f" GB, frames layout {sizes['frames']:.2f} GB ({sizes['trains'] / sizes['frames']:.1f}x)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
