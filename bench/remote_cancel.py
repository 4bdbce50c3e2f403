"""A remote bulk upsert canceled mid-job, on the emulator: how long the cancel takes to
reach the remote and to settle the task. One figure a line.

    python bench/remote_cancel.py [--records 200000] [--rate 2000] [--runs 5]

Each run: an embedded engine (one batch server process) runs a ``salesforce_bulk``
upsert of ``--records`` rows against ``engine.remote_emulator`` on 127.0.0.1; once the
remote has processed some records, ``flows.cancel`` is called. Medians over the runs:
- remote_upload_ms: submit -> the remote job InProgress (create, the CSV's PUT, close)
- cancel_to_remote_aborted_ms: cancel -> the remote job Aborted
- cancel_to_task_canceled_ms: cancel -> the task Canceled in the database
- counts_equal: 1 if every run's task count equalled the remote's processed count
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.flows import base as flows  # noqa: E402
from engine.recipes import recipe_from_dict  # noqa: E402
from engine.remote_emulator import Emulator  # noqa: E402
from engine.runtime.supervisor import Supervisor  # noqa: E402

TOKEN = "bench-token"


def _row(store, job: int):  # noqa: ANN001, ANN202 - a bench helper
    with store.read() as conn:
        return conn.exec_driver_sql(
            "SELECT status, progress_done FROM task WHERE job_id=?", (job,)
        ).one()


async def one_run(root: Path, records: int, rate: float) -> tuple[float, float, float, bool]:
    csv_path = root / "accounts.csv"
    if not csv_path.exists():
        with open(csv_path, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["Ext_Id__c", "Name"])
            out.writerows([f"E{i:07d}", f"Account {i}"] for i in range(records))
    (root / "token").write_text(TOKEN)
    with Emulator(tokens={TOKEN}, rate=rate, fail_every=97) as emu:
        engine = Supervisor(
            str(root / f"b{time.monotonic_ns()}.db"), {"batch-01": 2}, poll_interval=0.02
        )
        await engine.start()
        try:
            recipe = recipe_from_dict(
                {
                    "name": "upsert",
                    "task": [
                        emu.upsert_task(
                            str(csv_path), token_file=str(root / "token"), poll_seconds=0.5
                        )
                    ],
                },
                "bench",
            )
            t0 = time.perf_counter()
            job = flows.submit(engine.store.transaction, recipe, actor="bench")
            while not (jobs := emu.created()) or jobs[0].state != "InProgress":
                await asyncio.sleep(0.005)
            upload = time.perf_counter() - t0
            while emu.created()[0].processed < rate:  # a second's worth of records
                await asyncio.sleep(0.01)
            t1 = time.perf_counter()
            flows.cancel(engine.store.transaction, job, actor="bench")
            aborted = canceled = None
            while canceled is None:
                now = time.perf_counter()
                if aborted is None and emu.created()[0].state == "Aborted":
                    aborted = now - t1
                if _row(engine.store, job)[0] == "canceled":
                    canceled = now - t1
                await asyncio.sleep(0.002)
            remote = emu.created()[0]
            equal = _row(engine.store, job)[1] == remote.processed and len(emu.created()) == 1
        finally:
            await engine.stop()
    return upload * 1000, (aborted or 0) * 1000, canceled * 1000, equal


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            results.append(await one_run(Path(tmp), args.records, args.rate))
    print(f"remote_upload_ms {statistics.median(r[0] for r in results):.0f}")
    print(f"cancel_to_remote_aborted_ms {statistics.median(r[1] for r in results):.0f}")
    print(f"cancel_to_task_canceled_ms {statistics.median(r[2] for r in results):.0f}")
    print(f"counts_equal {int(all(r[3] for r in results))}")


if __name__ == "__main__":
    asyncio.run(main())
