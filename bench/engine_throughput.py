"""Engine throughput and cancel latency. Prints one figure per line.

    python bench/engine_throughput.py [--tasks 20000] [--servers batch-01:4 ...]

1. N no-op tasks (``wait`` of 0 s, independent) end to end: submit, run, every
   transition and its event row persisted; tasks/s from submit to the job's Ended.
   Run once with the default server (4 slots) and once with wide servers.
2. Cancel of one job with 10,000 not-started tasks and 100 executing ones: ms for the
   cancel transaction (after it the database shows Didn't run / Canceling), and ms
   until the engine has wound the job down to Canceled.
3. Across processes: a `batchdeck serve` subprocess runs a long `wait`; this process
   cancels it; ms until the database shows the serving engine acted (task Canceled).
   Median of 10. Target (SPEC): within 200 ms.
Targets (issue 2): >= 5,000 tasks/s; cancel < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import control  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.runtime import Engine, parse_servers  # noqa: E402
from engine.submit import submit  # noqa: E402


def noop_recipe(n: int, seconds: float = 0.0) -> Recipe:
    tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": seconds}) for i in range(n))
    return Recipe(name=f"bench-{n}", path=None, system=False, tasks=tasks)


def job_status(store, job_id: int) -> str:
    with store.read() as conn:
        return conn.exec_driver_sql("SELECT status FROM job WHERE id=?", (job_id,)).scalar_one()


async def throughput(db: str, n: int, servers: dict[str, int]) -> float:
    engine = Engine(db, servers)
    await engine.start()
    try:
        t0 = time.perf_counter()
        job = submit(engine.store, noop_recipe(n), actor="bench")
        engine._wake.set()
        while job_status(engine.store, job) not in ("ended", "error"):
            await asyncio.sleep(0.01)
        dt = time.perf_counter() - t0
        assert job_status(engine.store, job) == "ended"
    finally:
        await engine.stop()
    return n / dt


async def cancel_latency(db: str) -> tuple[float, float]:
    engine = Engine(db, {"bench-wide": 100})
    await engine.start()
    try:
        tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 600}) for i in range(10_100))
        job = submit(engine.store, Recipe("bench-cancel", None, False, tasks), actor="bench")
        engine._wake.set()
        while True:
            with engine.store.read() as conn:
                running = conn.exec_driver_sql(
                    "SELECT count(*) FROM task WHERE job_id=? AND status='executing'", (job,)
                ).scalar_one()
            if running == 100:
                break
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        # The command line's path: a separate connection, one transaction.
        await asyncio.to_thread(control.cancel, engine.store, job, actor="bench")
        t_tx = time.perf_counter() - t0
        with engine.store.read() as conn:
            counts = dict(
                conn.exec_driver_sql(
                    "SELECT status, count(*) FROM task WHERE job_id=? GROUP BY status", (job,)
                ).fetchall()
            )
        assert counts.get("didnt_run") == 10_000, counts
        while job_status(engine.store, job) != "canceled":
            await asyncio.sleep(0.005)
        t_done = time.perf_counter() - t0
    finally:
        await engine.stop()
    return t_tx * 1000, t_done * 1000


def cross_process_ms(tmp: str, runs: int = 10) -> float:
    from engine.db import Store

    db = f"{tmp}/x.db"
    store = Store(db)
    serve = subprocess.Popen(
        [sys.executable, "-c", "from tui.cli import main; main()", "--db", db, "serve"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert "serving" in serve.stdout.readline()
        times = []
        for _ in range(runs):
            job = submit(store, noop_recipe(1, seconds=600), actor="bench")
            while job_status(store, job) != "executing":
                time.sleep(0.005)
            t0 = time.perf_counter()
            control.cancel(store, job, actor="bench")
            while job_status(store, job) != "canceled":
                time.sleep(0.001)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        serve.terminate()
        serve.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--servers", nargs="*", default=["batch-01:256", "batch-02:256"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate_default = asyncio.run(throughput(f"{tmp}/a.db", args.tasks, parse_servers(None)))
        print(f"throughput_default_server_4_slots_tasks_per_s {rate_default:.0f}")
        wide = parse_servers(args.servers)
        rate = asyncio.run(throughput(f"{tmp}/b.db", args.tasks, wide))
        slots = sum(wide.values())
        print(f"throughput_{len(wide)}_servers_{slots}_slots_tasks_per_s {rate:.0f}")
        tx_ms, done_ms = asyncio.run(cancel_latency(f"{tmp}/c.db"))
        print(f"cancel_10000_not_started_100_executing_transaction_ms {tx_ms:.1f}")
        print(f"cancel_until_job_canceled_ms {done_ms:.1f}")
        print(f"cross_process_cancel_acted_on_median_ms {cross_process_ms(tmp):.1f}")


if __name__ == "__main__":
    main()
