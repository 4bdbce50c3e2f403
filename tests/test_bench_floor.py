"""``bench/architecture_floor.py`` runs and prints its figures (no figure is judged here:
speed is for the bench, not the tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_floor_script_prints_one_figure_per_line():
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "architecture_floor.py"), "--tasks", "600"]
        + ["--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    figures = dict(line.split(" ") for line in res.stdout.splitlines())
    assert list(figures) == [
        "floor_2_servers_512_slots_tasks_per_s",
        "floor_1_server_4_slots_tasks_per_s",
        "floor_supervisor_cpu_us_per_task",
        "stdlib_single_row_commits_per_s",
        "ratio_floor_wide_to_stdlib_single_row_commits",
    ]
    assert all(float(v) > 0 for v in figures.values())
