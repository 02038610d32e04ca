"""Driving the installed ``detstack`` console script in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DETSTACK = Path(sys.executable).with_name("detstack")


def cli(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``detstack ARGS...`` (the console script of this venv) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(DETSTACK), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def cli_json(*args: object, status: int = 0, **kwargs: Any) -> Any:
    """Run a command with ``--json`` and parse what it prints."""
    res = cli(*args, "--json", **kwargs)
    assert res.returncode == status, res.stderr
    return json.loads(res.stdout)


def one_line_error(res: subprocess.CompletedProcess[str], *fragments: str,
                   status: int = 2) -> str:
    """Assert the command failed with one ``detstack: error:`` line holding ``fragments``."""
    assert res.returncode == status, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("detstack: error:")]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for frag in fragments:
        assert frag in errors[0], (frag, errors[0])
    return errors[0]


def hide_package(tmp_path: Path, name: str) -> dict[str, str]:
    """Environment in which ``import name`` fails as if the package were not installed:
    a stand-in package that raises ModuleNotFoundError comes first on PYTHONPATH."""
    shadow = tmp_path / f"without-{name}"
    (shadow / name).mkdir(parents=True, exist_ok=True)
    (shadow / name / "__init__.py").write_text(
        f"raise ModuleNotFoundError('No module named ' + {name!r}, name={name!r})\n")
    return {"PYTHONPATH": str(shadow)}


def no_python_warnings(stderr: str) -> None:
    """Warnings reach the terminal as ``detstack: warning:`` lines, never Python's format."""
    assert "Warning:" not in stderr and ".py:" not in stderr, stderr
