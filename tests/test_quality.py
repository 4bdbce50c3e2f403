"""The codebase's own rules, checked with every test run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    """The engine never imports the console, the console and the engine keep their
    layers, no import circle anywhere in the engine, no SQLAlchemy below the store."""
    res = _run(str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        # A circle inside a package, through an import inside a function.
        (
            "engine/core/statuses.py",
            "def _f():\n    import engine.core.format\n",
            "No import circles",
        ),
        # A lower layer reaching up.
        (
            "engine/sql/keys.py",
            "def _f():\n    import engine.recipes\n",
            "The engine in layers",
        ),
        # SQLAlchemy below the store.
        ("engine/core/views.py", "import sqlalchemy\n", "SQLAlchemy and SQLModel"),
    ],
)
def test_the_contracts_fail_when_a_rule_is_broken(
    tmp_path: Path, module: str, added: str, broken: str
) -> None:
    """The same contracts, on a copy of the tree with one import added, break."""
    for package in ("engine", "tui"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + "\n\n" + added)
    res = subprocess.run(
        [str(BIN / "lint-imports"), "--config", str(tmp_path / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0, res.stdout
    verdicts = [line for line in res.stdout.splitlines() if " KEPT" in line or " BROKEN" in line]
    assert len(verdicts) == 5, res.stdout
    assert [v for v in verdicts if " BROKEN" in v] == [v for v in verdicts if broken in v], (
        res.stdout
    )


def test_ruff_clean():
    res = _run(sys.executable, "-m", "ruff", "check", "engine", "tui", "tests", "bench")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_clean():
    res = _run(sys.executable, "-m", "ruff", "format", "--check", "engine", "tui", "tests", "bench")
    assert res.returncode == 0, res.stdout + res.stderr
