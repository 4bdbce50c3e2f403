"""The engine when the database goes away (issue 21): how soon it serves again. One
figure a line.

    python bench/db_outage.py [--rounds 3] [--lease 1]

``batchdeck serve`` on a fresh SQLite file (``lease_seconds`` = ``--lease``) runs two
shell tasks that wait for a file; another process then holds the write lock
(``BEGIN EXCLUSIVE``) for half a lease, then for three leases. Medians of ``--rounds``:
- lock_half_lease_restarts: runs the engine had to stop (0 is the contract)
- lock_three_leases_restarts: runs stopped (2: both go back to Ready, attempt + 1)
- lock_three_leases_resume_s: from the lock's release to both runs Executing again on
  a fresh server process (the contract: within two leases)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCHDECK = [sys.executable, "-c", "from tui.cli import main; main()"]


def rows(db: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def until(test, bound: float = 60.0):  # noqa: ANN001, ANN201 - a small poller
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit("gave up waiting")


def one_round(lock_leases: float, lease: float) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db, go = d / "b.db", d / "go"
        env = {**os.environ, "BATCHDECK_DB": str(db), "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [*BATCHDECK, "settings", "lease_seconds", str(lease)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        recipe = d / "r.toml"
        text = 'name = "pair"\n'
        for n in ("one", "two"):
            command = json.dumps(["sh", "-c", f"while [ ! -f {go} ]; do sleep 0.05; done"])
            text += f'\n[[task]]\nname = "{n}"\naction = "shell"\ncommand = {command}\n'
        recipe.write_text(text)
        serve = subprocess.Popen(
            [*BATCHDECK, "serve", "--server", "batch-01:2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            subprocess.run(
                [*BATCHDECK, "submit", str(recipe)], env=env, check=True, stdout=subprocess.DEVNULL
            )
            running = "SELECT count(*) FROM task WHERE status='executing'"
            until(lambda: rows(db, running)[0][0] == 2)
            conn = sqlite3.connect(db, timeout=30, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(lock_leases * lease)
            conn.execute("ROLLBACK")
            released = time.monotonic()
            conn.close()
            again = "SELECT count(*) FROM task WHERE status='executing' AND attempt=2"
            restarts = 0
            if lock_leases > 1:
                until(lambda: rows(db, again)[0][0] == 2)
                restarts = 2
            took = time.monotonic() - released
            restarts = max(restarts, rows(db, "SELECT count(*) FROM task WHERE attempt > 1")[0][0])
            go.touch()
            until(lambda: rows(db, "SELECT status FROM job")[0][0] in ("ended", "error"))
            return restarts, took
        finally:
            serve.terminate()
            serve.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lease", type=float, default=1.0)
    args = ap.parse_args()
    half = [one_round(0.5, args.lease) for _ in range(args.rounds)]
    three = [one_round(3.0, args.lease) for _ in range(args.rounds)]
    print(f"lock_half_lease_restarts: {statistics.median(r for r, _ in half)}")
    print(f"lock_three_leases_restarts: {statistics.median(r for r, _ in three)}")
    print(f"lock_three_leases_resume_s: {statistics.median(t for _, t in three):.2f}")


if __name__ == "__main__":
    main()
