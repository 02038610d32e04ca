"""Open a view and read it, in a child process: ``python relsuite_open.py VIEW``.
Prints one JSON line: ``{"outcome": "typed"|"untyped"|"ok", "message"}``."""

from __future__ import annotations

import json
import os
import resource
import sys
import warnings

import numpy as np

import detstack
from detstack.errors import DetstackError
from detstack.store.verify import verify_view

if __name__ == "__main__":
    warnings.simplefilter("ignore")
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))   # a bomb fails, not swaps
    try:
        view = detstack.open_view(sys.argv[1])
        det = detstack.AGIPD1M(view, raw=True)
        np.asarray(det.get_array("image.data").values)
        report = verify_view(sys.argv[1], full=True)
        out = {"outcome": "ok" if report.ok else "typed", "message": " | ".join(report.lines())}
    except DetstackError as exc:
        out = {"outcome": "typed", "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - classifying every failure is the point
        out = {"outcome": "untyped", "message": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    os._exit(0)
