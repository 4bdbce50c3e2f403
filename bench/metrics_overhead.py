"""Does scraping the metrics slow the engine? Prints one figure per line.

    python bench/metrics_overhead.py [--tasks 2000] [--rounds 10] [--slots 4]

A real ``batchdeck serve --metrics 127.0.0.1:PORT`` runs jobs of ``--tasks`` no-op tasks
(``wait`` of 0 s) one after the other; tasks/s from a job's submit to its Ended (read by
polling the job's row every 20 ms). The jobs alternate, ``--rounds`` pairs after one
warm-up job: no scrape, then a scrape of /metrics every 100 ms from a thread of this
process (GET, read the whole body), so both arms see the same machine and the same
engine. Printed: the median tasks/s of each arm, their ratio (and the median of each
pair's), the scrapes made and the median time of one scrape.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.flows import base as flows  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.store.db import Store  # noqa: E402

BATCHDECK = [sys.executable, "-c", "from tui.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scraper(threading.Thread):
    def __init__(self, url: str, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.times: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            t0 = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=10) as resp:
                resp.read()
            self.times.append(time.perf_counter() - t0)
            self.done.wait(max(0.0, self.every - (time.perf_counter() - t0)))


def job_rate(store: Store, db: str, n: int) -> float:
    """Tasks/s of one job of ``n`` no-op tasks, from its submit to its Ended."""
    tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 0.0}) for i in range(n))
    t0 = time.perf_counter()
    job = flows.submit(store.transaction, Recipe(f"bench-{n}", None, False, tasks), actor="bench")
    conn = sqlite3.connect(db)
    try:
        while conn.execute("SELECT status FROM job WHERE id = ?", (job,)).fetchone()[0] != "ended":
            time.sleep(0.02)
    finally:
        conn.close()
    return n / (time.perf_counter() - t0)


def measure(tmp: Path, n: int, slots: int, rounds: int) -> tuple[list[float], list[float], list]:
    """One serve; jobs alternate: without a scrape, then with one every 100 ms."""
    db = str(tmp / "bench.db")
    Store(db).dispose()  # the schema, before serve opens it
    port = free_port()
    err = open(tmp / "serve.err", "a")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        [*BATCHDECK, "--db", db, "serve", "--server", f"b:{slots}", "--metrics", str(port)],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        cwd=ROOT,
    )
    plain: list[float] = []
    scraped: list[float] = []
    times: list[float] = []
    store = Store(db)
    try:
        assert "serving" in serve.stdout.readline()
        job_rate(store, db, n)  # warm-up, not counted
        for _ in range(rounds):
            plain.append(job_rate(store, db, n))
            scraper = Scraper(f"http://127.0.0.1:{port}/metrics")
            scraper.start()
            try:
                scraped.append(job_rate(store, db, n))
            finally:
                scraper.done.set()
                scraper.join(10)
            times += scraper.times
    finally:
        store.dispose()
        serve.terminate()
        serve.wait(30)
        err.close()
    return plain, scraped, times


def runs(rates: list[float]) -> str:
    return ", ".join(f"{x:.0f}" for x in rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--slots", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchdeck-metrics-") as tmp:
        plain, scraped, scrape_times = measure(Path(tmp), args.tasks, args.slots, args.rounds)
    a, b = statistics.median(plain), statistics.median(scraped)
    pairs = statistics.median(s / p for p, s in zip(plain, scraped, strict=True))
    print(f"noop_tasks_per_s_no_scrape {a:.0f} (runs {runs(plain)})")
    print(f"noop_tasks_per_s_scrape_100ms {b:.0f} (runs {runs(scraped)})")
    print(f"scraped_over_plain {b / a:.2f} (median of the pairs' ratios {pairs:.2f})")
    each = statistics.median(scrape_times) * 1000
    print(f"scrapes {len(scrape_times)}; scrape_ms_median {each:.1f}")


if __name__ == "__main__":
    main()
