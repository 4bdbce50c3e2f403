"""Build a large database for benchmarks: N jobs of mixed statuses, through the engine's writes.

    python bench/make_jobs.py PATH [--jobs 100000]

Jobs and their tasks are inserted in bulk in their initial state (Waiting / Ready);
every later status is reached through the transition functions (claim, outcomes,
cancel), grouped into few transactions, so the data is what a real engine leaves.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.flows import base as flows  # noqa: E402
from engine.runtime import tick as batch  # noqa: E402
from engine.store.db import Store  # noqa: E402

NAMES = [
    "nightly-import",
    "crm-export",
    "ledger-close",
    "invoice-run",
    "lead-sync",
    "report-build",
    "archive-sweep",
    "price-update",
    "stock-count",
    "payroll-prep",
]
USERS = ["alice", "bob", "carol", "dave", "ops"]


def make_jobs(path: str, n: int = 100_000, seed: int = 7) -> Store:
    rnd = random.Random(seed)
    store = Store(path)
    t0 = 1_780_000_000.0
    params = json.dumps({"seconds": 1})
    with store.write() as conn:
        first = (conn.exec_driver_sql("SELECT COALESCE(max(id), 0) FROM job").scalar_one()) + 1
        conn.exec_driver_sql(
            "INSERT INTO job(id, name, status, system, submitted_by, submitted_at, orphaned) "
            "VALUES (?, ?, 'waiting', ?, ?, ?, 0)",
            [
                (
                    first + i,
                    f"{rnd.choice(NAMES)}-{i % 97}",
                    i % 500 == 0,
                    rnd.choice(USERS),
                    t0 + i * 3,
                )
                for i in range(n)
            ],
        )
        conn.exec_driver_sql(
            "INSERT INTO task(job_id, seq, name, action, params, status, attempt, max_attempts, "
            "progress_done) VALUES (?, ?, ?, 'wait', ?, 'ready', 1, 3, 0)",
            [(first + i, k, f"step-{k}", params) for i in range(n) for k in range(1 + i % 3)],
        )
        batch.claim_leases(conn, {"batch-01": 4, "batch-02": 2}, "bench:0:x", at=t0)
    # Start most jobs' tasks, then finish most of those: a realistic mix of statuses.
    with store.write() as conn:
        total = conn.exec_driver_sql("SELECT count(*) FROM task").scalar_one()
        batch.claim(conn, {"batch-01": int(total * 0.9)}, at=t0 + 10)
        ids = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT id FROM task WHERE status='executing' ORDER BY id"
            )
        ]
    keep_running = set(ids[int(len(ids) * 0.95) :])
    outcomes = [
        batch.Outcome(t, "error" if t % 37 == 0 else "ended", "done")
        for t in ids
        if t not in keep_running
    ]
    for i in range(0, len(outcomes), 20_000):
        with store.write() as conn:
            batch.apply_outcomes(conn, outcomes[i : i + 20_000], at=t0 + 20)
    with store.read() as conn:
        running = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT id FROM job WHERE status='executing' AND NOT system ORDER BY id LIMIT 200"
            )
        ]
    for job in running[:100]:
        flows.cancel(store.transaction, job, actor="ops", words="bench", at=t0 + 30)
    return store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--jobs", type=int, default=100_000)
    args = p.parse_args()
    t = time.perf_counter()
    make_jobs(args.path, args.jobs)
    print(f"made_{args.jobs}_jobs_s {time.perf_counter() - t:.1f}")


if __name__ == "__main__":
    main()
