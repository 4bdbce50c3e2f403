"""Engine throughput and cancel latency. Prints one figure per line.

    python bench/engine_throughput.py [--tasks 20000] [--servers batch-01:4 ...]

1. N no-op tasks (``wait`` of 0 s, independent) end to end: submit, run, every
   transition and its event row persisted; tasks/s from submit to the job's Ended.
   Run once with the default server (4 slots) and once with wide servers. With the
   default server also the ticks (the engine's transactions) per 1,000 tasks: at most
   4 tasks settle per tick, so 250 is the floor.
2. Cancel of one job with 10,000 not-started tasks and 100 executing ones: ms for the
   cancel transaction (after it the database shows Didn't run / Canceling), and ms
   until the engine has wound the job down to Canceled. Median of ``--rounds`` fresh
   databases; the stdlib 10k-row UPDATE it is compared with is measured in the same
   rounds, interleaved, so both see the same machine.
3. Across processes: a `batchdeck serve` subprocess runs a long `wait`; this process
   cancels it; ms until the database shows the serving engine acted (task Canceled).
   Median of 10. Target (SPEC): within 200 ms.
4. Baselines, measured in the same run on the same machine (SQLite only):
   - stdlib_single_row_commits_per_s: the standard library's sqlite3, one-row UPDATE
     and its own commit, WAL, synchronous=NORMAL: the physical limit of one commit;
   - stdlib_batched_tasks_per_s: the same two transitions per task the engine writes
     (Ready -> Executing -> Ended, each with its event row), by plain sqlite3, 256
     tasks per transaction: the physical limit of the work itself;
   - naive_async_session_tasks_per_s: what a user would write first, one SQLModel
     ``AsyncSession`` commit per transition (ORM objects, aiosqlite);
   - stdlib_10k_row_update_ms: one UPDATE of a job's 10,000 tasks by plain sqlite3;
   and our ratios to them.

What the process imported is frozen first (``engine.runtime.supervisor.freeze_heap``), as
``batchdeck serve`` does once it serves: full garbage collections then skip it.

``--db postgresql://…`` runs 1 and 2 on that PostgreSQL server (its database is used
as is: give it an empty one); the baselines are SQLite's only.
Targets (issue 9): 2 x 256 slots >= 1.0 x stdlib single-row commits/s; 4 slots
>= 5,000 tasks/s; cancel transaction <= 1.0 x one stdlib 10k-row UPDATE and the job
Canceled < 50 ms. On PostgreSQL (issue 7): >= 3,000 tasks/s, cancel < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.flows import base as flows  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.runtime.server_names import parse_servers  # noqa: E402
from engine.runtime.supervisor import Supervisor, freeze_heap  # noqa: E402


def noop_recipe(n: int, seconds: float = 0.0) -> Recipe:
    tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": seconds}) for i in range(n))
    return Recipe(name=f"bench-{n}", path=None, system=False, tasks=tasks)


def job_status(store, job_id: int) -> str:
    from sqlalchemy import select

    from engine.store.tables import job

    with store.read() as conn:
        return conn.execute(select(job.c.status).where(job.c.id == job_id)).scalar_one()


def executing_count(store, job_id: int) -> int:
    from sqlalchemy import func, select

    from engine.store.tables import task

    with store.read() as conn:
        return conn.execute(
            select(func.count()).where(task.c.job_id == job_id, task.c.status == "executing")
        ).scalar_one()


def status_counts(store, job_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from engine.store.tables import task

    with store.read() as conn:
        rows = conn.execute(
            select(task.c.status, func.count())
            .where(task.c.job_id == job_id)
            .group_by(task.c.status)
        ).all()
    return {r[0]: r[1] for r in rows}


async def throughput(db: str, n: int, servers: dict[str, int]) -> tuple[float, int]:
    """Tasks a second, and the engine's ticks (transactions) for them."""
    engine = Supervisor(db, servers)
    await engine.start()
    try:
        t0 = time.perf_counter()
        job = flows.submit(engine.store.transaction, noop_recipe(n), actor="bench")
        # Told by the engine the moment its tick commits the job's end: polling the
        # database from this loop took time from the engine it measures.
        status = await engine.wait_job(job)
        dt = time.perf_counter() - t0
        assert status == "ended", status
        ticks = engine.stats.ticks
    finally:
        await engine.stop()
    return n / dt, ticks


async def cancel_latency(db: str) -> tuple[float, float]:
    engine = Supervisor(db, {"bench-wide": 100})
    await engine.start()
    try:
        tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 600}) for i in range(10_100))
        job = flows.submit(
            engine.store.transaction, Recipe("bench-cancel", None, False, tasks), actor="bench"
        )
        engine._wake.set()
        while executing_count(engine.store, job) != 100:
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        # The command line's path: a separate connection, one transaction.
        await asyncio.to_thread(flows.cancel, engine.store.transaction, job, actor="bench")
        t_tx = time.perf_counter() - t0
        status = await engine.wait_job(job)
        t_done = time.perf_counter() - t0
        assert status == "canceled", status
        counts = status_counts(engine.store, job)
        assert counts.get("didnt_run") == 10_000, counts
    finally:
        await engine.stop()
    return t_tx * 1000, t_done * 1000


@contextmanager
def serving(db: str, tmp: str) -> Iterator[subprocess.Popen]:
    """A ``batchdeck serve`` process on ``db``, once it says it serves; stopped after."""
    # Its servers' words on stderr go to a file, not among the script's figures.
    log = Path(tmp, "serve.err")
    with log.open("w") as err:
        serve = subprocess.Popen(
            [sys.executable, "-c", "from tui.cli import main; main()", "--db", db, "serve"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    try:
        if "serving" not in serve.stdout.readline():
            raise SystemExit(f"batchdeck serve did not start: {log.read_text()[-500:]}")
        yield serve
    finally:
        serve.terminate()
        serve.wait(10)


def cross_process_ms(tmp: str, runs: int = 10) -> float:
    from engine.store.db import Store

    db = f"{tmp}/x.db"
    store = Store(db)
    with serving(db, tmp):
        times = []
        for _ in range(runs):
            job = flows.submit(store.transaction, noop_recipe(1, seconds=600), actor="bench")
            while job_status(store, job) != "executing":
                time.sleep(0.005)
            t0 = time.perf_counter()
            flows.cancel(store.transaction, job, actor="bench")
            while job_status(store, job) != "canceled":
                time.sleep(0.001)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)


def stdlib_single_row_commits_per_s(tmp: str, seconds: float = 1.0) -> float:
    import sqlite3

    conn = sqlite3.connect(f"{tmp}/base1.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT, at REAL)")
    conn.execute("INSERT INTO t VALUES (1, 'ready', 0)")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET status = ?, at = ? WHERE id = 1", (f"s{n % 2}", n))
        conn.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


def _job_with_tasks(db: str, n: int, seconds: float = 0.0) -> tuple[object, int]:
    from engine.store.db import Store

    store = Store(db)
    return store, flows.submit(store.transaction, noop_recipe(n, seconds), actor="bench")


def stdlib_batched_tasks_per_s(tmp: str, n: int, batch: int = 256) -> float:
    """Our schema, our two transitions and event rows per task, by plain sqlite3."""
    import sqlite3

    db = f"{tmp}/base2.db"
    store, job_id = _job_with_tasks(db, n)
    store.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ids = [r[0] for r in conn.execute("SELECT id FROM task WHERE job_id=? ORDER BY id", (job_id,))]
    event = (
        "INSERT INTO event (at, job_id, task_id, server, kind, from_status, to_status, actor)"
        " VALUES (?, ?, ?, 'b', 'status', ?, ?, 'engine')"
    )
    t0 = time.perf_counter()
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        at = time.time()
        conn.execute("BEGIN IMMEDIATE")
        for src, dst in (("ready", "executing"), ("executing", "ended")):
            conn.executemany(event, [(at, job_id, t, src, dst) for t in chunk])
            conn.executemany(
                "UPDATE task SET status=?, started_at=? WHERE id=? AND status=?",
                [(dst, at, t, src) for t in chunk],
            )
        conn.execute("COMMIT")
    rate = len(ids) / (time.perf_counter() - t0)
    conn.close()
    return rate


async def naive_async_session_tasks_per_s(tmp: str, n: int) -> float:
    """One AsyncSession commit per transition, ORM objects, as a first version would."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlmodel import select
    from sqlmodel.ext.asyncio.session import AsyncSession

    from engine.store.models import Event, Task

    db = f"{tmp}/naive.db"
    store, job_id = _job_with_tasks(db, n)
    store.dispose()
    eng = create_async_engine(f"sqlite+aiosqlite:///{db}")
    t0 = time.perf_counter()
    async with AsyncSession(eng, expire_on_commit=False) as session:
        tasks = (await session.exec(select(Task).where(Task.job_id == job_id))).all()
        for t in tasks:
            for src, dst in (("ready", "executing"), ("executing", "ended")):
                t.status = dst
                session.add(t)
                session.add(
                    Event(
                        at=time.time(),
                        job_id=job_id,
                        task_id=t.id,
                        server="b",
                        kind="status",
                        from_status=src,
                        to_status=dst,
                        actor="engine",
                    )
                )
                await session.commit()
    rate = len(tasks) / (time.perf_counter() - t0)
    await eng.dispose()
    return rate


def stdlib_10k_row_update_ms(tmp: str, i: int = 0) -> float:
    """One UPDATE of a job's 10,000 not-started tasks, our schema and indexes."""
    import sqlite3

    db = f"{tmp}/base3-{i}.db"
    store, job_id = _job_with_tasks(db, 10_000, seconds=600)
    store.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE task SET status='didnt_run', ended_at=? WHERE job_id=? "
        "AND status IN ('waiting', 'ready')",
        (time.time(), job_id),
    )
    conn.execute("COMMIT")
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--servers", nargs="*", default=["batch-01:256", "batch-02:256"])
    p.add_argument("--rounds", type=int, default=5, help="cancel rounds (median)")
    p.add_argument("--db", help="postgresql://… to run on PostgreSQL (an empty database)")
    args = p.parse_args()
    freeze_heap()  # as `batchdeck serve` does once it serves
    with tempfile.TemporaryDirectory() as tmp:
        pg = args.db is not None
        where = (lambda name: args.db) if pg else (lambda name: f"{tmp}/{name}.db")
        rate_default, ticks = asyncio.run(throughput(where("a"), args.tasks, parse_servers(None)))
        print(f"throughput_default_server_4_slots_tasks_per_s {rate_default:.0f}")
        print(f"ticks_per_1000_tasks_4_slots {ticks * 1000 / args.tasks:.0f}")
        wide = parse_servers(args.servers)
        rate, _ = asyncio.run(throughput(where("b"), args.tasks, wide))
        slots = sum(wide.values())
        print(f"throughput_{len(wide)}_servers_{slots}_slots_tasks_per_s {rate:.0f}")
        rounds, updates = [], []
        for i in range(args.rounds):
            rounds.append(asyncio.run(cancel_latency(where(f"c{i}"))))
            if not pg:
                updates.append(stdlib_10k_row_update_ms(tmp, i))
        tx_ms = statistics.median(r[0] for r in rounds)
        done_ms = statistics.median(r[1] for r in rounds)
        print(f"cancel_10000_not_started_100_executing_transaction_ms {tx_ms:.1f}")
        print(f"cancel_until_job_canceled_ms {done_ms:.1f}")
        if pg:
            return
        print(f"cross_process_cancel_acted_on_median_ms {cross_process_ms(tmp):.1f}")
        commits = stdlib_single_row_commits_per_s(tmp)
        print(f"stdlib_single_row_commits_per_s {commits:.0f}")
        batched = stdlib_batched_tasks_per_s(tmp, args.tasks)
        print(f"stdlib_batched_tasks_per_s {batched:.0f}")
        naive = asyncio.run(naive_async_session_tasks_per_s(tmp, min(args.tasks, 2000)))
        print(f"naive_async_session_tasks_per_s {naive:.0f}")
        update_ms = statistics.median(updates)
        print(f"stdlib_10k_row_update_ms {update_ms:.1f}")
        print(f"ratio_wide_to_stdlib_single_row_commits {rate / commits:.2f}")
        print(f"ratio_wide_to_stdlib_batched {rate / batched:.2f}")
        print(f"ratio_wide_to_naive_async_session {rate / naive:.1f}")
        print(f"ratio_default_to_naive_async_session {rate_default / naive:.1f}")
        print(f"ratio_cancel_transaction_to_stdlib_10k_row_update {tx_ms / update_ms:.2f}")


if __name__ == "__main__":
    main()
