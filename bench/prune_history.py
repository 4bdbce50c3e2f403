"""Pruning history on the 100,000-job database. Prints one figure per line.

    python bench/prune_history.py [--jobs 100000] [--prune 50000]

Builds the database (``bench/make_jobs.py``; its finished jobs' ends are spread over
time, one a minute, so that a date cuts them), then:
1. ``batchdeck logs JOB`` on it, as a fresh process (median of 5): the log command on a
   large database;
2. ``--prune`` of its finished jobs pruned (``engine.store.prune``, as ``batchdeck prune``
   runs it) while another connection cancels a Waiting job every 20 ms: the prune's
   total time, its batches, the longest and the median write-lock hold of a batch,
   and the longest a cancel took (waiting for the lock included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.make_jobs import make_jobs  # noqa: E402
from engine.flows import base as flows  # noqa: E402
from engine.store import prune  # noqa: E402
from engine.store.db import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cli_s(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from engine.cli import run; run()", *args],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--prune", type=int, default=50_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/big.db"
        t = time.perf_counter()
        store = make_jobs(db, args.jobs)
        with store.write() as conn:
            conn.exec_driver_sql(
                "UPDATE job SET ended_at = submitted_at + 60 WHERE ended_at IS NOT NULL"
            )
            cutoff = conn.exec_driver_sql(
                "SELECT ended_at FROM job WHERE ended_at IS NOT NULL "
                "AND status IN ('ended', 'error', 'canceled') ORDER BY ended_at LIMIT 1 OFFSET ?",
                (args.prune,),
            ).scalar_one()
            waiting = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT id FROM job WHERE status = 'waiting' AND NOT system ORDER BY id DESC"
                )
            ]
        print(f"made_{args.jobs}_jobs_s {time.perf_counter() - t:.1f}", flush=True)
        some_job = waiting[0]
        logs = [cli_s("logs", str(some_job), "--db", db) for _ in range(5)]
        print(
            f"logs_on_{args.jobs}_jobs_s median {statistics.median(logs):.3f} "
            f"range {min(logs):.3f}-{max(logs):.3f}",
            flush=True,
        )

        canceler = Store(db)  # its own connections, as another process's would be
        # Its statements compiled before it is timed: the wait measured is the lock's.
        flows.cancel(canceler.transaction, waiting.pop(), actor="ops", words="warm-up")
        waits: list[float] = []
        done = threading.Event()

        def cancel_meanwhile() -> None:
            for job in waiting:
                if done.is_set():
                    return
                t0 = time.perf_counter()
                flows.cancel(canceler.transaction, job, actor="ops", words="bench")
                waits.append(time.perf_counter() - t0)
                time.sleep(0.02)

        worker = threading.Thread(target=cancel_meanwhile)
        worker.start()
        try:
            result = prune.run_sync(store, cutoff, actor="bench")
        finally:
            done.set()
            worker.join()
        print(f"pruned_jobs {result.jobs:,} tasks {result.tasks:,} events {result.events:,}")
        print(f"prune_total_s {result.seconds:.2f} batches {result.batches}")
        print(
            f"prune_longest_write_hold_ms {result.longest_hold_s * 1000:.1f} "
            f"median {statistics.median(result.holds) * 1000:.1f}"
        )
        print(
            f"cancels_during_prune {len(waits)} longest_ms {max(waits) * 1000:.1f} "
            f"median_ms {statistics.median(waits) * 1000:.1f}"
        )
        canceler.dispose()
        store.dispose()


if __name__ == "__main__":
    main()
