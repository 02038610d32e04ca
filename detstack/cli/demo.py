"""``detstack demo``: a synthetic AGIPD-1M run, read, converted to every form, read back."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from .output import Output

HELP = "write a small synthetic AGIPD-1M run, read it, convert it to every view form"
EXAMPLES = """\
examples:
  detstack demo                      # into a new temporary folder
  detstack demo --out demo           # demo/run (the run), demo/view.* (its views)
  detstack demo --out demo --no-convert
"""
FORMS = [("HDF5 virtual view", "to_vds", "view.h5"),
         ("virtual CXI", "to_cxi", "view.cxi"),
         ("zarr manifest", "to_manifest", "view.json"),
         ("zarr store", "to_zarr", "view.zarr")]


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP.capitalize() + ".", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter, parents=common)
    p.add_argument("--out", metavar="DIR",
                   help="folder for the run (DIR/run) and its views (default: a new temp folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo there")
    p.add_argument("--no-convert", action="store_true",
                   help="only write and read the run, skip converting it to views")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="detstack-demo-"))
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out {folder} is a file; name a folder (it is created "
                                 "if needed)")
    import numpy as np

    from .. import synth
    from ..detectors import AGIPD1M
    from ..run.collection import RunDirectory

    run_dir = folder / "run"
    t0 = time.perf_counter()
    files = synth.demo_run(run_dir, overwrite=args.overwrite)
    out.say(f"Wrote a synthetic AGIPD-1M run: {len(files)} files in {run_dir} "
            f"({time.perf_counter() - t0:.1f} s)")
    det = AGIPD1M(RunDirectory(run_dir), raw=True)
    out.say(f"Opened it: {det!r}, {len(det.train_ids)} trains, "
            f"frames per train {det.frames_per_train}")
    t0 = time.perf_counter()
    arr = det.get_array("image.data", pulses=np.s_[:4])
    out.say(f"get_array('image.data', pulses=np.s_[:4]): {dict(arr.sizes)} {arr.dtype} "
            f"in {time.perf_counter() - t0:.2f} s")
    data = arr.sel(data_gain=0)
    out.say(f"  mean photon count {float(data.mean()):.3f}; module {det.modules[0]} train "
            f"{det.train_ids[0]} pulse {int(arr.pulse[0])} sum {int(data[0, 0, 0].sum())}")
    if not args.no_convert:
        with out.progress():
            convert_all(det, folder, arr, out)
    out.result(f"Demo done: run in {run_dir}" + ("" if args.no_convert else
                                                 f", views in {folder}"))
    out.say(f"Next: detstack info {run_dir}; detstack preview {folder / 'view.h5'} "
            f"-o preview.png")
    return 0


def convert_all(det: Any, folder: Path, expected: Any, out: Output) -> None:
    """Write every view form beside the run and read each back through the same API."""
    from .. import convert
    from ..detectors import AGIPD1M
    from ..errors import DetstackError
    from ..store import open_view

    for label, writer, name in FORMS:
        target = folder / name
        t0 = time.perf_counter()
        getattr(convert, writer)(det, target, overwrite=True)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        view_det = AGIPD1M(open_view(target), raw=True)
        import numpy as np
        got = view_det.get_array("image.data", pulses=np.s_[:4])
        same = bool((got.values == expected.values).all()) and got.dims == expected.dims
        out.say(f"{label:18} {name:10} written in {t_write:5.2f} s, read back in "
                f"{time.perf_counter() - t0:5.2f} s: {'identical' if same else 'DIFFERENT'}")
        if not same:
            raise DetstackError(f"the {label} {target} read back different data: "
                                "please report this")
