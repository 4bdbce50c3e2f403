"""Console on a 100,000-job database: start-up, keypress latency, peak memory.

    python bench/console_list.py [--jobs 100000] [--db PATH]

Prints one figure per line:
- first_list_from_process_start_s: a fresh process, from its spawn until the job list
  has rendered its first window of rows (imports included);
- first_list_in_process_s: the same, from constructing the app;
- keypress_down_ms / keypress_page_down_ms / keypress_open_filter_ms: median over
  20 presses, from the key until it is processed, the rows it needs are loaded and
  the next frame is painted (``Screen.wait_for_refresh``);
- peak_rss_mib: the console process's peak resident memory.
Targets (issue 3): first list < 1.5 s, keypress < 50 ms, < 250 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def _measure(db: str, spawned_at: float) -> None:
    t_app = time.perf_counter()
    from textual import events

    from tui.app import BatchdeckApp
    from tui.widgets.job_table import JobTable

    app = BatchdeckApp(db, mode_label="bench (no engine)", engine=None)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(JobTable)
        while not (table.loaded and table.total):
            await asyncio.sleep(0.002)
        await pilot.pause()
        first_in_process = time.perf_counter() - t_app
        first_from_spawn = time.time() - spawned_at

        def moved(before: int):  # noqa: ANN202
            return lambda: table.cursor != before and table.row_at(table.cursor) is not None

        def filter_open() -> bool:
            return app.focused is not None and app.focused.id == "filter"

        def send(key: str, char: str | None) -> None:
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)

        async def press(key: str, ready, after: str | None = None) -> float:  # noqa: ANN001
            # Pilot.press() waits for CPU idle twice (~60 ms by itself, measured on an
            # empty app), so the key goes to the driver as a terminal's would, and the
            # clock stops when its effect (cursor moved and the rows it needs loaded, or
            # the filter box focused) is there and the next frame has been painted.
            ready = ready() if key in ("down", "pagedown") else ready
            t = time.perf_counter()
            send(key, "/" if key == "slash" else None)
            while not ready():
                await asyncio.sleep(0.0005)
            await app.screen.wait_for_refresh()
            dt = (time.perf_counter() - t) * 1000
            if after:
                await pilot.press(after)
                await pilot.pause()
            return dt

        down = [await press("down", lambda: moved(table.cursor)) for _ in range(20)]
        page = [await press("pagedown", lambda: moved(table.cursor)) for _ in range(20)]
        filt = [await press("slash", filter_open, after="escape") for _ in range(20)]
        assert table.selected_id is not None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"jobs {table.total}")
    print(f"first_list_from_process_start_s {first_from_spawn:.2f}")
    print(f"first_list_in_process_s {first_in_process:.2f}")
    print(f"keypress_down_ms {statistics.median(down):.1f}")
    print(f"keypress_page_down_ms {statistics.median(page):.1f}")
    print(f"keypress_open_filter_ms {statistics.median(filt):.1f}")
    print(f"peak_rss_mib {peak:.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--db", help="reuse this database (made if missing)")
    p.add_argument("--child", nargs=2, metavar=("DB", "SPAWNED_AT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        asyncio.run(_measure(args.child[0], float(args.child[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"{tmp}/jobs.db"
        if not Path(db).exists():
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "make_jobs.py"),
                    db,
                    "--jobs",
                    str(args.jobs),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        # Measure in a fresh process so the data builder's memory is not counted.
        subprocess.run(
            [sys.executable, __file__, "--child", db, repr(time.time())], check=True, cwd=ROOT
        )


if __name__ == "__main__":
    main()
