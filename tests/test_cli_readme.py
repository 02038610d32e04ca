"""The README from the top, pasted line by line as a newcomer would: in a fresh copy of
the repository and a fresh venv that the commands themselves create (pip's cache makes
the install quick once the test venv has the same packages)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
NOT_COPIED = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build",
                                    "dist", ".pytest_cache", ".ruff_cache", "tour")
MARK = "@@ line "


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


def fresh_machine_env(tmp_path: Path) -> dict[str, str]:
    """This environment without the test venv: no VIRTUAL_ENV, its bin off PATH, temporary
    files (the demo's default folder) inside ``tmp_path``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    path = [p for p in env["PATH"].split(os.pathsep) if Path(p).resolve() != BIN.resolve()]
    (tmp_path / "tmp").mkdir()
    return {**env, "PATH": os.pathsep.join(path), "TMPDIR": str(tmp_path / "tmp")}


def paste(lines: list[str], cwd: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """Run shell lines one after another in one bash session (so ``cd`` and ``. activate``
    carry over), stopping at the first line that fails: [(line, its stdout, its stderr)]."""
    script = "".join(f"echo '{MARK}{i}'; echo '{MARK}{i}' >&2\n{{ {line}\n}} || exit $?\n"
                     for i, line in enumerate(lines))
    res = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=900)
    outs, errs = (re.split(rf"^{MARK}\d+\n", text, flags=re.M)[1:]
                  for text in (res.stdout, res.stderr))
    ran = list(zip(lines, outs, errs, strict=False))
    assert res.returncode == 0 and len(ran) == len(lines), (
        f"{ran[-1][0] if ran else lines[0]!r} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return ran


def test_readme_from_the_top_in_a_fresh_venv(tmp_path: Path) -> None:
    repo = tmp_path / "detstack"
    shutil.copytree(ROOT, repo, ignore=NOT_COPIED)
    env = fresh_machine_env(tmp_path)
    top = README.read_text().split("\n---\n", 1)[0]
    first = re.search(r"Try it:.*?```\n(.*?)\n```", top, re.S)
    assert first and first.group(1).endswith("detstack demo"), top
    lines = [first.group(1), *tour_block("sh")]
    assert lines[1].startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert lines[2] == ". .venv/bin/activate"
    ran = paste([line.split("  #")[0].strip() for line in lines], repo, env)
    assert "Demo done: run in" in ran[0][1] and "identical" in ran[0][1], ran[0]
    for line, _, err in ran:
        if not line.startswith("python3 -m venv"):    # pip's own notes may be there
            assert "Traceback" not in err and "Warning:" not in err, (line, err)
    tour = repo / "tour"
    assert (tour / "preview.png").stat().st_size > 10_000
    assert {p.name for p in tour.glob("view.*")} == {"view.h5", "view.cxi", "view.json",
                                                     "view.arrays.h5", "view.zarr"}
    python = repo / ".venv" / "bin" / "python"
    cwd = tour
    env = {**env, "PATH": f"{python.parent}{os.pathsep}{env['PATH']}"}
    # the python part, pasted into an interactive interpreter
    code = "\n".join(tour_block("python")) + "\n"
    res = subprocess.run([python, "-q", "-i"], input=code, cwd=cwd, env=env,
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
