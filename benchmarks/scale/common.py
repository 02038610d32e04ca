"""Helpers the rows share: caches and environment, the CPU clock, the detector, the views."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .process import run_child
from .registry import Context

# -- environment helpers ------------------------------------------------------------------


def detstack_cache(ctx: Context) -> Path:
    """The detstack metadata cache of this benchmark (XDG_CACHE_HOME of the children)."""
    return Path(ctx.workdir) / "xdg-cache" / f"{ctx.kind}-{ctx.trains}"   # one per column


def detstack_env(ctx: Context) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(detstack_cache(ctx))}


def clear_detstack_cache(ctx: Context) -> None:
    shutil.rmtree(detstack_cache(ctx) / "detstack", ignore_errors=True)


def clear_extra_data_cache(ctx: Context) -> None:
    """EXtra-data keeps its cache in the run folder (karabo_data_map.json)."""
    (Path(ctx.run) / "karabo_data_map.json").unlink(missing_ok=True)


def quiet() -> None:
    import logging
    import warnings
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


# -- the CPU clock ------------------------------------------------------------------------
# The detector is opened before the clock starts (its open is the open rows); the peak RSS
# is the whole process's, so it includes the opened run.

_CPU0 = [0.0, 0.0]


def _cpu_seconds() -> tuple[float, float]:
    """CPU time of this process and of the worker processes it has waited for."""
    import resource
    return tuple(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def start(ctx: Context) -> None:
    """Start the clock, and the CPU clock: on a shared machine CPU time is the steadier figure."""
    _CPU0[:] = _cpu_seconds()
    ctx.start()


def cpu(note: str | None = None) -> str:
    """The CPU seconds since `start`, before the row's own note."""
    own, workers = (now - then for now, then in zip(_cpu_seconds(), _CPU0, strict=True))
    text = f"CPU {own:.1f} s" + (f" + {workers:.1f} s in worker processes" if workers >= 0.05
                                 else "")
    return f"{text}; {note}" if note else text


# -- the measured detector and its views --------------------------------------------------

def open_det(ctx: Context):  # noqa: ANN201
    """detstack's AGIPD1M of the run (opened before the clock starts)."""
    import detstack
    quiet()
    return detstack.AGIPD1M(detstack.RunDirectory(ctx.run))


def view(ctx: Context, name: str) -> Path:
    return ctx.scratch / name


def need(row: str, out: str) -> Callable[[Context], None]:
    """prepare=: write the view with the row ``row`` unless it exists."""
    def prepare(ctx: Context) -> None:
        if not view(ctx, out).exists():
            run_child(row, ctx)
    return prepare
