"""How far an interrupted ``to_zarr`` conversion got, from the ledger it leaves behind."""

from __future__ import annotations

import json
import math
import os
from typing import Any


def incomplete_facts(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Blocks written and planned of an interrupted store, and the command that resumes it."""
    from ..convert.zarr.target import DONE_DIR, Target
    from ..store.zarr_store import PLAN_FILE

    target = Target(url, storage_options)
    plan = json.loads(target.get(PLAN_FILE) or b"{}")
    done = len(target.names(DONE_DIR))
    total = plan.get("n_tasks")
    if total is None:       # a ledger from before n_tasks was recorded: an upper bound
        fp = plan.get("fingerprint", {})
        n_trains = plan.get("record", {}).get("n_trains", 0)
        total = len(fp.get("slots", [])) * math.ceil(n_trains / max(fp.get("train_block", 1), 1))
    files = [e["path"] for e in plan.get("record", {}).get("source_files", [])]
    run = _run_folder(url, files)
    return {"path": url, "kind": "view", "form": "zarr", "complete": False,
            "blocks_written": done, "blocks": total,
            "resume": f"detstack convert {run} {url} --to zarr --resume"}


def _run_folder(url: str, files: list[str]) -> str:
    """The folder of the run the conversion read (as the record names it), or RUN."""
    if not files:
        return "RUN"
    base = os.path.dirname(os.path.abspath(url.rstrip("/")))
    full = [f if os.path.isabs(f) else os.path.normpath(os.path.join(base, f)) for f in files]
    return os.path.commonpath(full) if len(full) > 1 else os.path.dirname(full[0])
