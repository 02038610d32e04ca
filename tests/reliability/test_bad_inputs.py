"""Every entry point on every bad run of the corpus: a typed error naming the culprit,
or the documented recovery with the right values; never a silent wrong value, a hang
or a crash (each case runs in a child process with a timeout)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from relsuite_child import HERE, run_child
from relsuite_corpus import CASES, RUN, SRC, BadRun
from relsuite_tally import count

from detstack import synth

TIMEOUT = 120


def _params() -> list[object]:
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] \
            if c.xfail else []
        out.append(pytest.param(c, id=c.name, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_run(case: BadRun, tmp_path: Path) -> None:
    run = tmp_path / "run"
    culprit = case.build(run)
    ref = "-"
    if case.reference is not None:
        ref_dir = tmp_path / "reference"
        synth.write_run(ref_dir, **RUN)
        case.reference(ref_dir)
        ref = str(ref_dir)
    lines, ended = run_child([str(HERE / "relsuite_driver.py"), str(run), ref,
                              str(tmp_path / "out")], TIMEOUT)
    results = {d["entry"]: d for d in lines if d["outcome"] != "started"}
    started = [d["entry"] for d in lines if d["outcome"] == "started"]
    names = {culprit}
    if "AGIPD" in culprit:      # a module's file: naming its source is as good
        names.add(SRC.format(int(culprit.split("AGIPD")[1][:2])))
    failures: list[str] = []
    bad = "known wrong" if case.xfail else None
    if ended != "exit":
        last = started[-1] if started else "startup"
        kind = "hangs" if ended == "hang" else "crashes"
        count(bad or kind)
        failures.append(f"{last}: {ended}")
    for name, d in results.items():
        count("bad inputs")
        outcome, msg = d["outcome"], d["message"]
        if outcome == "typed" and not any(n in msg for n in names):
            failures.append(f"{name}: typed error does not name {culprit}: {msg}")
        elif outcome.startswith("exit"):           # the CLI: a status and a line
            if name == "cli_validate" and case.validate_sees and outcome == "exit 0":
                count(bad or "silently wrong")
                failures.append(f"{name}: SILENTLY WRONG: reports no problem: {msg}")
            elif outcome != "exit 0" and not any(n in msg for n in names):
                failures.append(f"{name}: {outcome} without naming {culprit}: {msg}")
        elif outcome == "wrong":
            count(bad or "silently wrong")
            failures.append(f"{name}: SILENTLY WRONG: {msg}")
        elif outcome == "untyped":
            failures.append(f"{name}: untyped error: {msg}")
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    assert not failures, "\n".join(failures)
