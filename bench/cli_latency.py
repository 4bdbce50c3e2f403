"""The command line on a 100,000-job database: whole-process latency. One figure a line.

    python bench/cli_latency.py [--jobs 100000] [--db PATH] [--runs 7] [--no-bytecode]

Each figure is the median of ``--runs`` fresh processes (``batchdeck ...`` as an
operator types it, imports included), in milliseconds. An installed batchdeck has its
bytecode compiled, so PYTHONDONTWRITEBYTECODE is dropped for the commands measured
(``--no-bytecode`` keeps it: where no ``__pycache__`` was written yet, every process
then compiles batchdeck's modules again, ~20 ms more).
The first run of each command is not measured (the disk cache warms up).
The database is a copy: a cancel that would not be refused changes nothing of yours.
- cli_list_limit_20_ms: ``list --limit 20``
- cli_show_json_ms: ``show ID --json`` of a job with tasks and events
- cli_cancel_refused_ms: ``cancel ID`` of a job already Ended (refused, exit 1)
- cli_cancel_ms: ``cancel ID`` of a Waiting job: the cancel goes ahead (a write
  transaction, after the whole-file damage check every write makes), each run another job
- cli_help_ms: ``--help``
- cli_servers_ms: ``servers``; cli_settings_ms: ``settings`` (every setting)
- cli_cancel_all_dry_run_ms: ``cancel --all --dry-run``: the plan of a bulk cancel of
  every job not in a final status (~14,000 of the 100,000), printed
- cli_abort_ms: ``abort ID --yes`` of an Executing job (cancel first, then Aborting),
  each run another job
- cli_submit_ms: ``submit`` of a one-task recipe (a write transaction, after the
  whole-file damage check every write makes)
- cli_health_ms: ``health`` (servers, leases, stuck jobs; no engine serves the copy,
  so it answers degraded, exit 1, after the same reads); cli_health_json_ms: ``--json``
Targets (issue 9): list and show < 150 ms (bar 300), --help < 100 ms (bar 150);
(issue 26) health < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCHDECK = Path(sys.executable).parent / "batchdeck"


def timed(args: list[str], env: dict[str, str], expect: int) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([str(BATCHDECK), *args], capture_output=True, env=env, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != expect:
        raise SystemExit(f"batchdeck {' '.join(args)}: exit {proc.returncode}: {proc.stderr!r}")
    return dt * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--db", help="an existing database built by bench/make_jobs.py")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-bytecode", action="store_true", help="keep PYTHONDONTWRITEBYTECODE")
    args = ap.parse_args()
    where = Path(tempfile.mkdtemp(prefix="batchdeck-cli-"))
    db = str(where / "jobs.db")
    if args.db is None:
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_jobs.py"), db, "--jobs", str(args.jobs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    else:
        with sqlite3.connect(args.db) as src, sqlite3.connect(db) as dst:
            src.backup(dst)
        src.close()
        dst.close()
    with sqlite3.connect(db) as conn:
        ended = conn.execute(
            "SELECT j.id FROM job j WHERE j.status='ended' AND EXISTS "
            "(SELECT 1 FROM task t WHERE t.job_id = j.id) ORDER BY j.id DESC LIMIT 1"
        ).fetchone()[0]
        waiting = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM job WHERE status = 'waiting' AND NOT system ORDER BY id LIMIT ?",
                (args.runs + 1,),
            )
        ]
        executing = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM job WHERE status = 'executing' AND NOT system ORDER BY id LIMIT ?",
                (args.runs + 1,),
            )
        ]
    conn.close()
    if len(executing) < args.runs + 1:
        raise SystemExit(f"{db}: fewer than {args.runs + 1} Executing jobs to abort")
    if len(waiting) < args.runs + 1:
        raise SystemExit(f"{db}: fewer than {args.runs + 1} Waiting jobs to cancel")
    env = {**os.environ, "BATCHDECK_DB": db}
    if not args.no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    cases = {
        "cli_list_limit_20_ms": (["list", "--limit", "20"], 0),
        "cli_show_json_ms": (["show", str(ended), "--json"], 0),
        "cli_cancel_refused_ms": (["cancel", str(ended)], 1),
        "cli_help_ms": (["--help"], 0),
        "cli_servers_ms": (["servers"], 0),
        "cli_settings_ms": (["settings"], 0),
        "cli_cancel_all_dry_run_ms": (["cancel", "--all", "--dry-run"], 0),
        "cli_health_ms": (["health"], 1),
        "cli_health_json_ms": (["health", "--json"], 1),
    }
    try:
        for name, (cmd, expect) in cases.items():
            timed(cmd, env, expect)  # warm the page cache, as an operator's second try would
            runs = [timed(cmd, env, expect) for _ in range(args.runs)]
            print(f"{name} {statistics.median(runs):.0f}", flush=True)
        runs = [timed(["cancel", str(job)], env, 0) for job in waiting]
        print(f"cli_cancel_ms {statistics.median(runs[1:]):.0f}", flush=True)
        runs = [timed(["abort", str(job), "--yes"], env, 0) for job in executing]
        print(f"cli_abort_ms {statistics.median(runs[1:]):.0f}", flush=True)
        recipe = where / "one.toml"
        recipe.write_text('name = "one"\n[[task]]\nname = "a"\naction = "wait"\nseconds = 1\n')
        timed(["submit", str(recipe)], env, 0)
        runs = [timed(["submit", str(recipe)], env, 0) for _ in range(args.runs)]
        print(f"cli_submit_ms {statistics.median(runs):.0f}", flush=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
