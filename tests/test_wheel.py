"""The installable package: a wheel built from the source (``pip wheel --no-deps``),
installed into a fresh venv (no system site-packages; its dependencies from the index),
run from a directory outside the tree: ``--version``, ``demo --help``, a demo built from
the package's own data, ``list``, ``servers``, ``recipes check``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from: nothing else of the tree goes in.
SOURCES = ("pyproject.toml", "README.md", "engine", "tui")


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_wheel_installs_into_a_fresh_venv_and_runs_outside_the_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", "dist"], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("batchdeck-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path)
    shutil.rmtree(src)  # nothing may read the tree it was built from

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Nothing of the source tree on the path: only what the wheel installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BATCHDECK_DB")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    batchdeck = str(venv / "bin" / "batchdeck")
    python = str(venv / "bin" / "python")

    assert run([batchdeck, "--version"], elsewhere, env) == "batchdeck 0.1.0\n"
    assert "usage: batchdeck demo" in run([batchdeck, "demo", "--help"], elsewhere, env)
    where = run(
        [python, "-c", "import engine, tui; print(engine.__file__, tui.__file__)"], elsewhere, env
    )
    assert all(p.startswith(str(venv)) for p in where.split()), where
    # The demo's recipes, its task module and the stylesheet are package data.
    run(
        [python, "-c", "from tui.app import BatchdeckApp as A; assert A.CSS_PATH.is_file()"],
        elsewhere,
        env,
    )
    db = run(
        [python, "-c", "from tui.demo import build_demo; print(build_demo('demo'))"], elsewhere, env
    )
    assert Path(db.strip()) == elsewhere / "demo" / "batchdeck.db"
    listed = run([batchdeck, "--db", "demo/batchdeck.db", "list"], elsewhere, env)
    assert "nightly-import" in listed and "payroll-run" in listed, listed
    servers = run([batchdeck, "--db", "demo/batchdeck.db", "servers"], elsewhere, env)
    assert servers.startswith("NAME") or servers.strip() == "no servers", servers
    checked = run([batchdeck, "recipes", "check", "demo/recipes"], elsewhere, env)
    assert "nightly-import.toml: ok" in checked, checked
