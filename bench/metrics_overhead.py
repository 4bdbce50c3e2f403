"""Does scraping the metrics slow the engine? Prints one figure per line.

    python bench/metrics_overhead.py [--tasks 5000] [--rounds 5] [--slots 4]

A real ``batchdeck serve --metrics 127.0.0.1:PORT`` on a fresh database each round runs
one job of ``--tasks`` no-op tasks (``wait`` of 0 s); tasks/s from the job's submit to
its Ended (read by polling the job's row every 20 ms). Rounds alternate: no scrape, then
a scrape of /metrics every 100 ms from a thread of this process (GET, read the whole
body), so both arms see the same machine. Printed: the median tasks/s of each arm, their
ratio, the scrapes made and the median time of one scrape.
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

from engine.db import Store  # noqa: E402
from engine.recipes import Recipe, TaskSpec  # noqa: E402
from engine.submit import submit  # noqa: E402

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


def one_round(tmp: Path, n: int, slots: int, scrape: bool) -> tuple[float, list[float]]:
    db = str(tmp / f"r{time.monotonic_ns()}.db")
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
    scraper = Scraper(f"http://127.0.0.1:{port}/metrics")
    try:
        assert "serving" in serve.stdout.readline()
        if scrape:
            scraper.start()
        store = Store(db)
        tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 0.0}) for i in range(n))
        t0 = time.perf_counter()
        job = submit(store, Recipe(f"bench-{n}", None, False, tasks), actor="bench")
        conn = sqlite3.connect(db)
        while conn.execute("SELECT status FROM job WHERE id = ?", (job,)).fetchone()[0] != "ended":
            time.sleep(0.02)
        dt = time.perf_counter() - t0
        conn.close()
        store.dispose()
    finally:
        scraper.done.set()
        if scrape:
            scraper.join(10)
        serve.terminate()
        serve.wait(30)
        err.close()
    return n / dt, scraper.times


def runs(rates: list[float]) -> str:
    return ", ".join(f"{x:.0f}" for x in rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--slots", type=int, default=4)
    args = ap.parse_args()
    plain: list[float] = []
    scraped: list[float] = []
    scrape_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="batchdeck-metrics-") as tmp:
        for _ in range(args.rounds):
            plain.append(one_round(Path(tmp), args.tasks, args.slots, scrape=False)[0])
            rate, times = one_round(Path(tmp), args.tasks, args.slots, scrape=True)
            scraped.append(rate)
            scrape_times += times
    a, b = statistics.median(plain), statistics.median(scraped)
    print(f"noop_tasks_per_s_no_scrape {a:.0f} (runs {runs(plain)})")
    print(f"noop_tasks_per_s_scrape_100ms {b:.0f} (runs {runs(scraped)})")
    print(f"scraped_over_plain {b / a:.2f}")
    each = statistics.median(scrape_times) * 1000
    print(f"scrapes {len(scrape_times)}; scrape_ms_median {each:.1f}")


if __name__ == "__main__":
    main()
