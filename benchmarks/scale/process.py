"""Running one row in a fresh process (the parent side) and measuring it (the child side)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .registry import MEASUREMENTS, Context

RUNNER = Path(__file__).resolve().parents[1] / "bench_scale.py"   # the child's entry point


def run_child(name: str, ctx: Context) -> dict[str, object]:
    """Run one measurement in a fresh process: {'seconds', 'rss_mb', 'note'} or {'error'}."""
    m = MEASUREMENTS[name]
    env = dict(os.environ)
    if m.env:
        env.update(m.env(ctx))
    payload = json.dumps({"name": name, "ctx": asdict(ctx)})
    proc = subprocess.run([sys.executable, str(RUNNER), "--child", payload], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child(payload: str) -> None:
    """The child's side: run the row, print its time, peak RSS and note as one JSON line."""
    import resource
    spec = json.loads(payload)
    ctx = Context(**spec["ctx"])
    note = MEASUREMENTS[spec["name"]].func(ctx)
    seconds = time.perf_counter() - ctx.t0
    # the largest process: this one, or a worker it started and waited for (EXtra-data's pool)
    rss = max(resource.getrusage(who).ru_maxrss
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "start_mb": ctx.rss0, "note": note}))
