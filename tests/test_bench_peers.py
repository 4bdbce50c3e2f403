"""``bench/peers.py`` runs batchdeck's side of its figures and prints them one a line (no
figure is judged here: speed is for the bench). The peers (the ``bench`` extra) are not
installed by the test extra, so the suite runs it ``--only batchdeck``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / "peers.py"
LINE = re.compile(r"^([a-z0-9_]+) (\d+(?:\.\d+)?)$")


def test_batchdeck_side_prints_each_figure_on_its_line():
    res = subprocess.run(
        [sys.executable, str(PEERS), "--only", "batchdeck", "--rounds", "1"]
        + ["--tasks", "120", "--tasks-4", "40", "--cancels", "2", "--jobs", "20"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    figures = {name: float(value) for name, value in (line.split(" ") for line in lines)}
    assert list(figures) == [
        "pg_4_slots_tasks_per_s_batchdeck",
        "pg_2x64_slots_tasks_per_s_batchdeck",
        "pg_2x64_slots_12_task_job_tasks_per_s_batchdeck",
        "sqlite_4_slots_tasks_per_s_batchdeck",
        "cancel_seen_by_running_task_ms_batchdeck_sqlite",
        "cancel_seen_by_running_task_ms_batchdeck_pg",
        "cancel_20_pending_jobs_s_batchdeck_sqlite",
        "cancel_20_pending_jobs_s_batchdeck_pg",
        "ratio_pg_120_to_12_task_job_batchdeck",
    ]
    assert all(v > 0 for v in figures.values())
    # Each round's values on stderr: two cancels seen per database.
    seen = [line.split()[1:] for line in res.stderr.splitlines() if "cancel_seen_by" in line]
    assert [len(values) for values in seen] == [2, 2]


def test_a_size_below_one_is_refused_in_one_line():
    res = subprocess.run(
        [sys.executable, str(PEERS), "--only", "batchdeck", "--tasks", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith("--tasks must be at least 1")
    assert "Traceback" not in res.stderr and res.stdout == ""
