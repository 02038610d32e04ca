"""The README's tour, pasted line by line as a newcomer would, in a temporary folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent


def tour_block(kind: str) -> list[str]:
    """The lines of the fenced block after ``<!-- tour:KIND -->`` in the README."""
    text = README.read_text()
    m = re.search(rf"<!-- tour:{kind} -->\n```{kind}\n(.*?)\n```", text, re.S)
    assert m, f"no tour:{kind} block in README.md"
    return m.group(1).splitlines()


def test_readme_top_keeps_the_ci_test_command() -> None:
    text = README.read_text()
    top = text.split("\n---\n", 1)[0]
    assert top.count("```\npython3 -m venv .venv") == 2
    after = text.split("<!-- test-command -->\n```\n", 1)[1].splitlines()[0]
    assert after.startswith("python3 -m venv .venv && .venv/bin/pip install -q '.[test]'")


def test_tour_runs_line_by_line(tmp_path: Path) -> None:
    lines = tour_block("sh")
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert lines[1] == ". .venv/bin/activate"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cwd = tmp_path
    for line in lines[2:]:                  # this venv is the installed one
        command = line.split("  #")[0].strip()
        if command.startswith("mkdir -p tour && cd tour"):
            cwd = tmp_path / "tour"
            cwd.mkdir()
            continue
        res = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, (command, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr and "Warning:" not in res.stderr, res.stderr
    assert (cwd / "preview.png").stat().st_size > 10_000
    assert {p.name for p in cwd.glob("view.*")} == {"view.h5", "view.cxi", "view.json",
                                                    "view.arrays.h5", "view.zarr"}

    # the python part, pasted into an interactive interpreter
    code = "\n".join(tour_block("python")) + "\n"
    res = subprocess.run([sys.executable, "-q", "-i"], input=code, cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    shown = res.stdout.splitlines()
    assert "Error" not in res.stderr, res.stderr
    assert shown[0] == "(16, 4, 32, 2, 512, 128)"
    assert int(shown[1]) > 0
    assert shown[2] == ("{'module': 16, 'train': 4, 'pulse': 32, 'data_gain': 2, "
                        "'slow_scan': 512, 'fast_scan': 128}")
    assert shown[3] == "(16, 4, 32, 2, 512, 128)"
    assert shown[4] == ("{'module': 16, 'train': 4, 'pulse': 4, 'data_gain': 2, "
                        "'slow_scan': 512, 'fast_scan': 128}")
    assert shown[5] == "True"
