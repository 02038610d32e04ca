"""``detstack preview``: a PNG of one frame in detector layout, beside a map of which
modules have which trains and the frames per train."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .output import Output
from .targets import add_allow_option

HELP = "draw one frame (modules in place), the data availability and frames per train"
EXAMPLES = """\
examples:
  detstack preview r0238 -o r0238.png                     # first train, first frame
  detstack preview view.h5 --train 10003 --pulse 5 -o frame.png
needs: pip install 'detstack[plot]' (and 'detstack[geom]' for real detector geometry)
"""
WIDTH, HEIGHT, DPI = 14, 6, 100          # 1400 x 600 pixels


def register(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("preview", help=HELP, description=HELP.capitalize() + ".",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       parents=common)
    p.add_argument("target", metavar="RUN|VIEW", help="run folder, run file or view")
    p.add_argument("-o", "--out", default="preview.png", metavar="PNG",
                   help="image to write (default preview.png)")
    p.add_argument("--train", type=int, metavar="ID",
                   help="train ID (default: the first train with the most modules)")
    p.add_argument("--pulse", type=int, default=0, metavar="P",
                   help="frame within the train, by position (default 0)")
    p.add_argument("--detector", metavar="NAME", help="detector name, if there are several")
    add_allow_option(p)
    p.set_defaults(func=run)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        from ..errors import MissingDependencyError
        raise MissingDependencyError("matplotlib", "plot", "detstack preview") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def run(args: argparse.Namespace, out: Output) -> int:
    from ..convert.plan import as_detector
    from .geometry import assemble, frame_of
    from .targets import VIEW, classify, open_target, trust_options

    plt = _pyplot()
    if args.pulse < 0:
        raise ValueError(f"--pulse {args.pulse} is negative; frames count from 0")
    kwargs = trust_options(args.target, args.allow) if classify(args.target) == VIEW else {}
    opened = open_target(args.target, **kwargs)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the raw-data fallback note
        det = as_detector(opened.data, args.detector)
    present = det.frame_map.present
    train = args.train if args.train is not None else \
        int(det.frame_map.train_ids[int(np.argmax(present.sum(axis=0)))])
    frames, label = frame_of(det, train, args.pulse)
    image, placed = assemble(det.kind.name, frames)

    fig = plt.figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    grid = fig.add_gridspec(2, 2, width_ratios=[1.1, 1], height_ratios=[2, 1])
    ax = fig.add_subplot(grid[:, 0])
    finite = image[np.isfinite(image)]
    lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0, 1))
    shown = ax.imshow(image, origin="lower", cmap="viridis", vmin=lo, vmax=max(hi, lo + 1),
                      interpolation="nearest")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    pid = f" (pulse ID {label['pulse_id']})" if "pulse_id" in label else ""
    ax.set_title(f"{det.detector_name} train {train} frame {args.pulse}{pid}\n"
                 f"{label['key']}, {placed}", fontsize=9)
    ax.set_axis_off()
    _availability(fig.add_subplot(grid[0, 1]), det)
    _frames_per_train(fig.add_subplot(grid[1, 1]), det)
    fig.savefig(args.out, dpi=DPI)
    plt.close(fig)
    out.result(f"Wrote {args.out}: {det.detector_name} train {train} frame {args.pulse}, "
               f"{len(det.modules)} of {det.n_modules} modules, {placed.split(' (')[0]}")
    return 0


def _availability(ax: Any, det: Any) -> None:
    """Modules x trains: which module has data for which train (gaps in red)."""
    from matplotlib.colors import ListedColormap

    fmap = det.frame_map
    grid = np.zeros((det.n_modules, len(fmap.train_ids)))
    for row, m in enumerate(det.modules):
        grid[det.module_slot(m)] = np.where(fmap.present[row], 1, 0.5)
    cmap = ListedColormap(["#dddddd", "#d62728", "#2ca02c"])   # absent, gap, data
    tids = fmap.train_ids.astype(np.int64)
    base = det.kind.modno_base
    extent = (tids[0] - 0.5, tids[-1] + 0.5, base - 0.5, base + det.n_modules - 0.5) \
        if len(tids) else None
    ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0, vmax=1, origin="lower",
              interpolation="nearest", extent=extent)
    missing = int((~fmap.present).sum())
    ax.set_title(f"data availability: {len(det.modules)} of {det.n_modules} modules, "
                 f"{missing} (module, train) gaps (red), absent modules grey", fontsize=9)
    ax.set_ylabel("module")
    _integer_axes(ax)


def _frames_per_train(ax: Any, det: Any) -> None:
    fmap = det.frame_map
    counts = fmap.train_counts() * det._frames_per_entry
    ax.step(fmap.train_ids.astype(np.int64), counts, where="mid", color="#1f77b4")
    ax.set_ylim(0, max(1, int(counts.max()) if len(counts) else 1) * 1.15)
    ax.set_xlabel("train ID")
    ax.set_ylabel("frames")
    ax.set_title("frames per train", fontsize=9)
    _integer_axes(ax)


def _integer_axes(ax: Any) -> None:
    """Whole train IDs and module numbers on the axes, no '+1e4' offsets."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_scientific(False)
        axis.set_major_formatter(fmt)
