"""The floor of the design: the fastest an engine built like ours can run no-op tasks here.

    python bench/architecture_floor.py [--tasks 60000] [--rounds 3]

Our design fixes the shape of the work: task code runs in server processes that the
supervisor talks to over pipes (JSON lines), each run an asyncio task there; one writer
persists every transition (Ready -> Executing -> Ended) and its event row, many per
transaction; a slot freed on a server is filled by the supervisor's next claim. This
script is that shape with only the work the spec requires of each run: the claim's
fencing token written and checked, the run's last progress and message (a ``wait``
reports both) written with its end, and each tick's look at the running tasks an
operator may have canceled. It does it the cheapest way we know: plain ``sqlite3`` on
our schema, no SQLAlchemy, one row per settled run, no dependencies, drains or leases,
no bookkeeping of runs beyond a dict. The engine does more than this, so these figures
bound what it could reach on this machine (``bench/engine_throughput.py`` measures the
engine itself, and the same stdlib baseline).

Prints, each the best of ``--rounds``:
- floor_2_servers_512_slots_tasks_per_s, floor_1_server_4_slots_tasks_per_s;
- floor_supervisor_cpu_us_per_task (the supervisor process, wide round);
- stdlib_single_row_commits_per_s and the floor's ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_EVENT = (
    "INSERT INTO event (at, job_id, task_id, server, kind, from_status, to_status, actor)"
    " VALUES (?, ?, ?, ?, 'status', ?, ?, 'engine')"
)


async def _serve() -> None:
    """A server: runs each ``run`` as an asyncio task, answers ``done`` once per turn.
    The messages are encoded and decoded by the engine's own ``engine.runtime.wire``."""
    from engine.runtime import wire

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[list[dict] | None] = asyncio.Queue()
    out: list[dict] = []

    def read() -> None:  # a thread, as the real server reads its pipe
        buf = b""
        with os.fdopen(0, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                msgs = wire.decode_lines(lines)
                if msgs:
                    loop.call_soon_threadsafe(inbox.put_nowait, msgs)
        loop.call_soon_threadsafe(inbox.put_nowait, None)

    def flush() -> None:
        if out:
            os.write(1, wire.encode_batch(out))
            out.clear()

    async def run(task_id: int) -> None:
        await asyncio.sleep(0)
        if not out:
            loop.call_soon(flush)
        progress = {"done": 0, "total": 0, "unit": "s", "message": None, "output": None}
        done = {"op": "done", "task": task_id, "outcome": "ended", "message": "waited 0 s"}
        out.append({**done, "progress": progress})

    threading.Thread(target=read, daemon=True).start()
    runs = set()
    while (msgs := await inbox.get()) is not None:
        for m in msgs:
            t = asyncio.create_task(run(m["task"]))
            runs.add(t)
            t.add_done_callback(runs.discard)


def _new_db(path: str) -> None:
    from engine.store.db import Store

    Store(path).dispose()  # our schema and indexes


class _Writer:
    """The writer thread's transactions: claims and settled runs, on plain sqlite3."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")

    def submit(self, n: int) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        (job,) = db.execute(
            "INSERT INTO job (name, status, system, submitted_by, submitted_at, orphaned)"
            " VALUES ('floor', 'waiting', 0, 'bench', ?, 0) RETURNING id",
            (time.time(),),
        ).fetchone()
        db.executemany(
            "INSERT INTO task (job_id, seq, name, action, params, status, attempt,"
            " max_attempts, progress_done) VALUES (?, ?, ?, 'wait', '{}', 'ready', 0, 1, 0)",
            [(job, i, f"t{i}") for i in range(n)],
        )
        db.execute("COMMIT")
        return job

    def tick(
        self, job: int, ended: list[dict], free: dict[str, int], running: list[int], token: str
    ) -> dict[str, list]:
        db, at = self.db, time.time()
        db.execute("BEGIN IMMEDIATE")
        if ended:
            ids = [m["task"] for m in ended]
            db.executemany(_EVENT, [(at, job, t, "s", "executing", "ended") for t in ids])
            db.executemany(
                "UPDATE task SET status = 'ended', ended_at = ?, message = ?,"
                " progress_done = ?, progress_total = ?, progress_unit = ?"
                " WHERE id = ? AND status = 'executing' AND claim_token = ?",
                [
                    (at, m["message"], p["done"], p["total"], p["unit"], m["task"], token)
                    for m in ended
                    for p in (m["progress"],)
                ],
            )
        claimed = {}
        for name, n in free.items():
            rows = db.execute(
                "SELECT id, name, action, params FROM task WHERE status = 'ready'"
                " ORDER BY id LIMIT ?",
                (n,),
            ).fetchall()
            if not rows:
                break
            db.executemany(_EVENT, [(at, job, r[0], name, "ready", "executing") for r in rows])
            db.executemany(
                "UPDATE task SET status = 'executing', server = ?, started_at = ?,"
                " claim_token = ? WHERE id = ? AND status = 'ready'",
                [(name, at, token, r[0]) for r in rows],
            )
            claimed[name] = rows
        # What an operator asked of the running ones (a cancel): read every tick.
        running = running + [r[0] for rows in claimed.values() for r in rows]
        db.execute(
            "SELECT id, status FROM task WHERE id IN (SELECT value FROM json_each(?))"
            " AND status != 'executing'",
            (json.dumps(running),),
        ).fetchall()
        db.execute("COMMIT")
        return claimed


async def floor(path: str, n: int, servers: dict[str, int]) -> tuple[float, float]:
    """Tasks a second from submit to the last task's end, and the supervisor's CPU µs
    per task."""
    from engine.runtime import wire

    _new_db(path)
    writer = _Writer(path)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    procs = {
        name: await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", stdin=-1, stdout=-1
        )
        for name in servers
    }
    running: dict[int, str] = {}
    ended: list[dict] = []
    wake = asyncio.Event()

    async def read(proc: asyncio.subprocess.Process) -> None:
        while line := await proc.stdout.readline():
            for m in wire.decode_lines([line]):
                running.pop(m["task"], None)
                ended.append(m)
            wake.set()

    readers = [asyncio.create_task(read(p)) for p in procs.values()]
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    job = await loop.run_in_executor(pool, writer.submit, n)
    done = 0
    wake.set()
    while done < n:
        await wake.wait()
        wake.clear()
        batch, ended[:] = list(ended), []
        used: dict[str, int] = {}
        for s in running.values():
            used[s] = used.get(s, 0) + 1
        free = {s: slots - used.get(s, 0) for s, slots in servers.items() if slots > used.get(s, 0)}
        claimed = await loop.run_in_executor(
            pool, writer.tick, job, batch, free, list(running), "floor#1"
        )
        done += len(batch)
        for name, rows in claimed.items():
            for r in rows:
                running[r[0]] = name
            msgs = [
                {"op": "run", "task": r[0], "job": job, "name": r[1], "action": r[2],
                 "params_json": r[3]}
                for r in rows
            ]  # fmt: skip
            procs[name].stdin.write(wire.encode_batch(msgs))
    rate = n / (time.perf_counter() - t0)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_us = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / n * 1e6
    for p in procs.values():
        p.stdin.close()
        await p.wait()
    await asyncio.gather(*readers)
    pool.shutdown()
    return rate, cpu_us


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=60_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    from engine_throughput import stdlib_single_row_commits_per_s

    with tempfile.TemporaryDirectory() as tmp:
        wide = [
            asyncio.run(floor(f"{tmp}/w{i}.db", args.tasks, {"batch-01": 256, "batch-02": 256}))
            for i in range(args.rounds)
        ]
        narrow = [
            asyncio.run(floor(f"{tmp}/n{i}.db", args.tasks // 6, {"batch-01": 4}))
            for i in range(args.rounds)
        ]
        commits = stdlib_single_row_commits_per_s(tmp)
    best = max(wide)
    print(f"floor_2_servers_512_slots_tasks_per_s {best[0]:.0f}")
    print(f"floor_1_server_4_slots_tasks_per_s {max(r for r, _ in narrow):.0f}")
    print(f"floor_supervisor_cpu_us_per_task {best[1]:.0f}")
    print(f"stdlib_single_row_commits_per_s {commits:.0f}")
    print(f"ratio_floor_wide_to_stdlib_single_row_commits {best[0] / commits:.2f}")


if __name__ == "__main__":
    main()
