"""Task logs under load. Prints one figure per line.

    python bench/log_volume.py [--tasks 20000] [--rounds 3] [--mb 200]

1. No-op throughput (``wait`` 0 s) on 2 x 256 slots, without and with a shell task on
   the same servers printing ``--mb`` MB of output meanwhile, and with the same task
   writing to /dev/null instead (the CPU its ``yes | head`` takes from the others on
   this machine, with no log at all); rounds interleaved (without, with, to /dev/null,
   ...) on fresh databases, so all see the same machine. Also: how long the printing
   task ran, and the bytes of its log kept (``log_max_bytes``, 10 MiB by default).
2. ``batchdeck logs JOB TASK --tail 100`` of a 1,000,000-line log, as a fresh process
   (median of 5), and the whole log printed (one run).
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

from bench.engine_throughput import noop_recipe  # noqa: E402
from engine.flows import base as flows  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.runtime.supervisor import Supervisor, freeze_heap  # noqa: E402

SERVERS = {"batch-01": 256, "batch-02": 256}
ROOT = Path(__file__).resolve().parents[1]


def shell(name: str, script: str) -> Recipe:
    return Recipe(
        name=name,
        path=None,
        system=False,
        tasks=(
            TaskSpec(
                "t",
                "shell",
                (),
                {"command": ["sh", "-c", script], "on_cancel": "terminate", "cwd": None},
            ),
        ),
    )


async def one_round(
    db: str, n: int, mb: int | None, sink: str = ""
) -> tuple[float, float | None, int]:
    """No-op tasks/s; the printing task's seconds and its kept log bytes (or None, 0).
    ``sink``: where the printing task's output goes (" > /dev/null": not to its log)."""
    engine = Supervisor(db, SERVERS)
    await engine.start()
    try:
        noisy = None
        if mb is not None:
            line = "x" * 99  # 100 bytes a line with its newline
            script = f"echo started; yes {line} | head -c {mb * 1_000_000}{sink}"
            noisy = flows.submit(engine.store.transaction, shell("noisy", script), actor="bench")
            t_noisy = time.perf_counter()
            # Measured once it prints: its first chunks are in the database.
            while True:
                with engine.store.read() as conn:
                    if conn.exec_driver_sql("SELECT count(*) FROM task_log").scalar_one():
                        break
                    failed = conn.exec_driver_sql(
                        "SELECT error FROM task WHERE job_id = ? AND error IS NOT NULL", (noisy,)
                    ).scalar()
                    if failed:
                        raise RuntimeError(f"the printing task failed: {failed}")
                await asyncio.sleep(0.005)
        t0 = time.perf_counter()
        job = flows.submit(engine.store.transaction, noop_recipe(n), actor="bench")
        status = await engine.wait_job(job)
        rate = n / (time.perf_counter() - t0)
        assert status == "ended", status
        noisy_s, kept = None, 0
        if noisy is not None:
            status = await engine.wait_job(noisy)
            noisy_s = time.perf_counter() - t_noisy
            with engine.store.read() as conn:
                kept = conn.exec_driver_sql(
                    "SELECT coalesce(sum(length(text) + 1), 0) FROM task_log WHERE job_id = ?",
                    (noisy,),
                ).scalar_one()
    finally:
        await engine.stop()
    return rate, noisy_s, kept


def cli(*args: str) -> tuple[float, int]:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", "from engine.cli import run; run()", *args],
        capture_output=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return time.perf_counter() - t, out.count(b"\n")


async def million(db: str) -> int:
    async with Supervisor(db, {"batch-01": 4}) as engine:
        job = flows.submit(
            engine.store.transaction, shell("million", "seq 1 1000000"), actor="bench"
        )
        assert await engine.wait_job(job) == "ended"
    return job


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mb", type=int, default=200)
    args = p.parse_args()
    freeze_heap()
    quiet: list[float] = []
    loud: list[float] = []
    null: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, mb, sink, into in (
                ("without", None, "", quiet),
                (f"with_{args.mb}mb_log", args.mb, "", loud),
                (f"with_{args.mb}mb_to_devnull", args.mb, " > /dev/null", null),
            ):
                db = f"{tmp}/r{r}-{name}.db"
                rate, noisy_s, kept = asyncio.run(one_round(db, args.tasks, mb, sink))
                into.append(rate)
                extra = f" printing_task_s {noisy_s:.2f} log_kept_bytes {kept:,}" if mb else ""
                print(f"round {r + 1} {name} noop_tasks_per_s {rate:,.0f}{extra}", flush=True)
        print(
            f"noop_tasks_per_s_without median {statistics.median(quiet):,.0f} "
            f"range {min(quiet):,.0f}-{max(quiet):,.0f}"
        )
        print(
            f"noop_tasks_per_s_with_{args.mb}mb_log median {statistics.median(loud):,.0f} "
            f"range {min(loud):,.0f}-{max(loud):,.0f}"
        )
        print(
            f"noop_tasks_per_s_with_{args.mb}mb_to_devnull median {statistics.median(null):,.0f} "
            f"range {min(null):,.0f}-{max(null):,.0f}"
        )
        print(f"ratio_with_to_without {statistics.median(loud) / statistics.median(quiet):.2f}")
        print(f"ratio_with_to_devnull {statistics.median(loud) / statistics.median(null):.2f}")

        db = f"{tmp}/million.db"
        job = asyncio.run(million(db))
        tails = []
        for _ in range(5):
            s, lines = cli("logs", str(job), "t", "--tail", "100", "--db", db)
            assert lines == 100, lines
            tails.append(s)
        print(
            f"logs_tail_100_of_1m_lines_s median {statistics.median(tails):.3f} "
            f"range {min(tails):.3f}-{max(tails):.3f}"
        )
        s, lines = cli("logs", str(job), "t", "--db", db)
        print(f"logs_whole_1m_lines_s {s:.2f} lines {lines:,}")


if __name__ == "__main__":
    main()
