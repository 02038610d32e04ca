"""What a row is (a measurement run in a fresh process) and the table's list of rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRAINS_PER_FILE = 250
FRAMES_PER_TRAIN = 64


@dataclass
class Context:
    """What a measurement knows about the run it measures; passed to the child as JSON."""

    run: str          # the run folder
    kind: str         # "raw" or "corrected"
    trains: int
    workdir: str      # scratch space for outputs (views, caches) of this run
    t0: float = 0.0
    rss0: float = 0.0   # MB resident when the clock started (the opened run, imports)

    def start(self) -> None:
        """Start the clock (call after imports)."""
        self.rss0 = current_rss_mb()
        self.t0 = time.perf_counter()

    @property
    def scratch(self) -> Path:
        path = Path(self.workdir) / "scratch" / f"{self.kind}-{self.trains}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def current_rss_mb() -> float:
    """This process's resident memory now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


@dataclass(frozen=True)
class Measurement:
    id: str       # short name for --rows
    name: str     # the row label
    func: Callable[[Context], str | None]
    prepare: Callable[[Context], None] | None = None
    env: Callable[[Context], dict[str, str]] | None = None
    max_trains: int | None = None   # longer runs are skipped (say why in the row label)


MEASUREMENTS: dict[str, Measurement] = {}


def measurement(id_: str, name: str, *, prepare: Callable[[Context], None] | None = None,
                env: Callable[[Context], dict[str, str]] | None = None,
                max_trains: int | None = None,
                ) -> Callable[[Callable[[Context], str | None]], Callable[[Context], str | None]]:
    """Register a row of the table (rows appear in registration order)."""
    def deco(func: Callable[[Context], str | None]) -> Callable[[Context], str | None]:
        MEASUREMENTS[id_] = Measurement(id_, name, func, prepare, env, max_trains)
        return func
    return deco
