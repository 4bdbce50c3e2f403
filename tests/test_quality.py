"""The codebase's own rules, checked with every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_engine_never_imports_the_console():
    res = _run(str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_clean():
    res = _run(sys.executable, "-m", "ruff", "check", "engine", "tui", "tests", "bench")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_clean():
    res = _run(sys.executable, "-m", "ruff", "format", "--check", "engine", "tui", "tests", "bench")
    assert res.returncode == 0, res.stdout + res.stderr
