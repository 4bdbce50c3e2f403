"""Bulk cancel of many one-task jobs, whole process. One figure a line.

    python bench/bulk_cancel.py [--jobs 10000] [--db postgresql://…] [--rounds 3]

Each round makes a fresh database holding ``--jobs`` Waiting jobs of one Ready task each
(no engine runs), then times ``batchdeck cancel --all --yes`` as an operator types it,
imports included. Median of ``--rounds``.
- bulk_cancel_<n>_jobs_s: the whole process
With ``--db`` (an empty PostgreSQL database's URL; each round makes a database beside it)
the jobs are on PostgreSQL, else in a SQLite file.
Target (issue 22): <= 1.0 s (bar), <= 2 x pgqueuer's (goal; bench/peers.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.flows.base import submit  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.store.db import Store  # noqa: E402

BATCHDECK = Path(sys.executable).parent / "batchdeck"
ONE_TASK = Recipe(
    name="one", path=None, system=False, tasks=(TaskSpec("t", "wait", (), {"seconds": 60}),)
)


def make_jobs(url: str, n: int) -> None:
    store = Store(url)
    try:
        for _ in range(n):
            submit(store.transaction, ONE_TASK, actor="bench", system=False, at=time.time())
    finally:
        store.dispose()


def fresh_pg(base: str, name: str) -> str:
    """A new database on the server of ``base``, as its URL."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{name}"))


def timed_cancel_all(url: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BATCHDECK), "--db", url, "cancel", "--all", "--yes"],
        capture_output=True,
        env=env,
        check=False,
    )
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cancel --all failed: {proc.stderr.decode()[-500:]}")
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--db", help="an empty PostgreSQL database's URL (default: SQLite)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            url = fresh_pg(args.db, f"bulk_cancel_{i}") if args.db else f"{tmp}/b{i}.db"
            make_jobs(url, args.jobs)
            times.append(timed_cancel_all(url))
    print(f"bulk_cancel_{args.jobs}_jobs_s {statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
