"""How soon a running task sees a cancel made by another process. One figure a line.

    python bench/cancel_seen.py [--db postgresql://…] [--runs 15]

A ``batchdeck serve`` process runs a ``python`` task that looks for its cancel every
0.2 ms and notes the time it saw it; this process cancels the job (the transaction
committed) and notes the time. Median of ``--runs``, in ms (one clock: one host).
- cancel_seen_by_task_median_ms: the commit of the cancel -> the task's safe point
Target (issue 22): <= 1.5 x pgqueuer's (bar 3.0 x; bench/peers.py).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.flows import base as flows  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.store.db import Store  # noqa: E402

PROBE = ROOT / "bench" / "probes" / "cancel_probe.py"


def probe_recipe(out: Path) -> Recipe:
    spec = TaskSpec("probe", "python", (), {"function": "cancel_probe:watch", "out": str(out)})
    return Recipe(
        name="cancel-probe", path=str(PROBE.with_suffix(".toml")), system=False, tasks=(spec,)
    )


def task_status(store: Store, job: int) -> str:
    with store.read() as conn:
        return conn.exec_driver_sql(
            "SELECT status FROM task WHERE job_id = " + str(int(job))
        ).scalar_one()


def cancel_seen_ms(db: str, runs: int, tmp: Path) -> list[float]:
    store = Store(db)
    env = {**os.environ, "BATCHDECK_DB": db}
    log = (tmp / "serve.err").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-c", "from tui.cli import main; main()", "serve"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert "serving" in serve.stdout.readline(), (tmp / "serve.err").read_text()
        times = []
        for i in range(runs):
            out = tmp / f"seen-{i}"
            job = flows.submit(store.transaction, probe_recipe(out), actor="bench")
            while True:
                with store.read() as conn:
                    done = conn.exec_driver_sql(
                        f"SELECT progress_total FROM task WHERE job_id = {int(job)}"
                    ).scalar_one()
                if done:
                    break
                time.sleep(0.005)
            time.sleep(0.05)  # the engine idle again, as an operator's cancel finds it
            flows.cancel(store.transaction, job, actor="bench")
            committed = time.time()
            while not out.exists() or not out.read_text():
                time.sleep(0.001)
            times.append((float(out.read_text()) - committed) * 1000)
        return times
    finally:
        serve.terminate()
        serve.wait(10)
        store.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", help="an empty PostgreSQL database's URL (default: a SQLite file)")
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"{tmp}/c.db"
        times = cancel_seen_ms(db, args.runs, Path(tmp))
    print(f"cancel_seen_by_task_median_ms {statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
