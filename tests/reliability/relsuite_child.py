"""Run a child Python process with a timeout and classify how it ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def run_child(args: list[str], timeout: float, env: dict[str, str] | None = None
              ) -> tuple[list[dict[str, str]], str]:
    """Run ``python *args``; return its JSON lines and how it ended: 'exit', 'hang'
    (killed after ``timeout`` s) or 'crash' (killed by a signal)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        ended = "crash" if proc.returncode < 0 else "exit"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        ended = "hang"
    lines = []
    for line in out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines, ended if ended != "exit" or proc.returncode == 0 else f"exit {proc.returncode}: {err[-2000:]}"
