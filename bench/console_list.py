"""Console on a 100,000-job database: start-up, keypress latency, peak memory.

    python bench/console_list.py [--jobs 100000] [--db PATH] [--runs 3]

The console starts as ``batchdeck console --db PATH`` does (``engine.cli.main.main`` ->
``tui.launch.make_console``: keymap, damage check, placement, the app and its host),
with no embedded engine, in a fresh process, headless (``App.run_test``). A database
given with ``--db`` is copied first: the bench never changes it.

Prints one figure per line (medians over ``--runs`` processes):
- first_list_from_process_start_s: from the process's spawn until a frame showing the
  first window of rows has been painted (interpreter start and imports included);
- first_list_in_process_s: the same, from the start of ``engine.cli.main.main``;
- imports_s: the start path's imports (Textual, the console, the engine's reader);
- keypress_down_ms / keypress_page_down_ms / keypress_open_filter_ms: median over
  20 presses, from the key until it is processed, the rows it needs are loaded and
  the next frame is painted;
- peak_rss_mib: the console process's peak resident memory.
Targets (issue 9): first list < 0.5 s (bar 0.8), every keypress < 16 ms (bar 33),
< 100 MiB (bar 150).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRESSES = 20


class Frames:
    """Every frame the app paints. Headless, Textual composes each frame but skips
    encoding it for the terminal; that is done here too, so a frame costs what it would
    cost on a terminal (bar the write)."""

    def __init__(self, app: Any, painted: Callable[[], bool]) -> None:
        self.app = app
        self.painted = painted  # is the first window of rows on screen?
        self.first_list: float | None = None
        self._waiters: list[asyncio.Future[float]] = []
        real = app._display

        def display(screen: Any, update: Any) -> None:
            real(screen, update)
            if update is None:
                return
            from textual._compositor import CompositorUpdate

            if isinstance(update, CompositorUpdate):
                update.render_segments(app.console)
            now = time.perf_counter()
            if self.first_list is None and self.painted():
                self.first_list = now
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(now)

        app._display = display

    def next(self) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut


async def _measure(app: Any) -> dict[str, float]:
    from textual import events

    from tui.widgets.job_table import JobTable

    def rows_painted() -> bool:
        try:
            table = app.screen.query_one(JobTable)
        except Exception:  # noqa: BLE001 - the list screen is not up yet
            return False
        return table.loaded and table.row_at(0) is not None

    frames = Frames(app, rows_painted)
    async with app.run_test(size=(120, 40)) as pilot:
        while frames.first_list is None:
            await asyncio.sleep(0.001)
        first = frames.first_list
        table = app.screen.query_one(JobTable)
        await pilot.pause()

        def send(key: str, char: str | None) -> None:
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)

        async def press(key: str, ready: Callable[[], bool]) -> float:
            # Pilot.press() waits for the CPU to be idle, which a terminal does not: the
            # key goes to the driver as a terminal's would. The clock stops at the first
            # frame painted once its effect is there (the cursor moved onto a loaded row,
            # or the filter box has the focus).
            t = time.perf_counter()
            send(key, "/" if key == "slash" else None)
            while True:
                painted_at = await frames.next()
                if ready():
                    return (painted_at - t) * 1000

        def moved_from(before: int) -> Callable[[], bool]:
            return lambda: table.cursor != before and table.row_at(table.cursor) is not None

        down, page, filt = [], [], []
        for _ in range(PRESSES):
            down.append(await press("down", moved_from(table.cursor)))
            await pilot.pause()
        for _ in range(PRESSES):
            page.append(await press("pagedown", moved_from(table.cursor)))
            await pilot.pause()
        for _ in range(PRESSES):
            filt.append(await press("slash", lambda: getattr(app.focused, "id", "") == "filter"))
            await pilot.press("escape")
            await pilot.pause()
        assert table.selected_id is not None
        jobs = table.total
    return {
        "jobs": jobs,
        "first_list_at": first,
        "keypress_down_ms": statistics.median(down),
        "keypress_page_down_ms": statistics.median(page),
        "keypress_open_filter_ms": statistics.median(filt),
    }


def child(db: str, spawned_at: float) -> None:
    """One console process: the real start path, then the measures; one JSON line."""
    t_main = time.perf_counter()
    t_wall = time.time()
    from engine.cli.main import main

    result: dict[str, float] = {}

    def console(args: argparse.Namespace) -> int:
        from tui.keys import load_keymap
        from tui.launch import make_console

        made = make_console(args, keymap=load_keymap(), embed=False)
        assert not isinstance(made, int), f"the console did not start: exit {made}"
        app, _host, _db = made
        result["imports_s"] = time.perf_counter() - t_main
        result.update(asyncio.run(_measure(app)))
        return 0

    main(["console", "--db", db], console=console)
    first = result.pop("first_list_at")
    result["first_list_in_process_s"] = first - t_main
    result["first_list_from_process_start_s"] = (t_wall - spawned_at) + (first - t_main)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


ORDER = (
    "first_list_from_process_start_s",
    "first_list_in_process_s",
    "imports_s",
    "keypress_down_ms",
    "keypress_page_down_ms",
    "keypress_open_filter_ms",
    "peak_rss_mib",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--db", help="a database to copy (made if missing)")
    p.add_argument("--runs", type=int, default=3, help="console processes (median of them)")
    p.add_argument("--child", nargs=2, metavar=("DB", "SPAWNED_AT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        child(args.child[0], float(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/jobs.db"
        if args.db and Path(args.db).exists():
            shutil.copyfile(args.db, db)  # never the original: the console may write
        else:
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
            if args.db:
                shutil.copyfile(db, args.db)
        runs = []
        for _ in range(args.runs):
            # A fresh process each time, so the data builder's memory is not counted.
            out = subprocess.run(
                [sys.executable, __file__, "--child", db, repr(time.time())],
                check=True,
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    print(f"jobs {int(runs[0]['jobs'])}")
    for name in ORDER:
        values = [r[name] for r in runs]
        fmt = ".2f" if name.endswith("_s") else ".1f" if name.endswith("_ms") else ".0f"
        spread = f"  # runs: {' '.join(format(v, fmt) for v in values)}" if len(values) > 1 else ""
        print(f"{name} {statistics.median(values):{fmt}}{spread}")


if __name__ == "__main__":
    main()
