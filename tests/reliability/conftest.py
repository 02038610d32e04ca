"""Reliability suite: bad runs, hostile views and injected faults against every entry point.

The closing line (``N bad inputs tried, M faults injected, K attacks refused, 0 silently
wrong``) is printed by ``pytest_terminal_summary``; under xdist each worker hands its
tally to the controller through ``workeroutput``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from relsuite_tally import TALLY, summary

_RAN = {"any": False}


def pytest_runtest_logreport(report: Any) -> None:
    if "reliability" in report.nodeid:
        _RAN["any"] = True


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["detstack_reliability"] = json.dumps(dict(TALLY))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    out = getattr(node, "workeroutput", {}).get("detstack_reliability")
    if out:
        TALLY.update(Counter(json.loads(out)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _RAN["any"] or sum(TALLY.values()):
        terminalreporter.write_line(summary(TALLY))
