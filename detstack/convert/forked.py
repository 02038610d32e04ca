"""Results of tasks run in forked worker processes, errors included.

A worker's exception must reach the parent as the same typed error (a ``DetstackError``
naming file and key, not a pool's generic failure). Exceptions that cannot be pickled
travel as their message.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from ..errors import DetstackError

Reported = tuple[str, Any, str]   # ("ok", result, "") or ("error", pickled exception, text)


def run_reporting(task: Callable[[int], Any], i: int) -> Reported:
    """``task(i)`` in a worker: its result, or its exception packed for the parent."""
    try:
        return "ok", task(i), ""
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent
        try:
            blob: bytes | None = pickle.dumps(exc)
            pickle.loads(blob)
        except Exception:  # noqa: BLE001 - unpicklable: its message travels
            blob = None
        return "error", blob, f"{type(exc).__name__}: {exc}"


def unpack(reported: Reported) -> Any:
    """The result of a ``run_reporting`` call, or its exception raised here."""
    status, value, message = reported
    if status == "error":
        if value is not None:
            raise pickle.loads(value)
        raise DetstackError(message)
    return value
