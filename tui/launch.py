"""Starting the console: embedded engine or attached to a running one, and what happens
when the terminal goes away.

Placement: if ``Reader.live_engines()`` shows an engine with a live lease on this
database (``batchdeck serve``, or another console), the console attaches: it starts
no engine and controls jobs through the database, and jobs keep running after it
quits. Otherwise it embeds an engine for the requested servers; if that engine's
lease is refused at start (a race with another process), it falls back to attached.

Signals (handled by tui.host.EngineHost): SIGTERM and SIGINT quit normally (the
terminal is restored, an embedded engine stops: its running tasks go back to Ready).
SIGHUP, or a terminal found dead by the periodic check (an SSH drop), ends the console
but not the jobs: stdin/stdout/stderr go to /dev/null, the app exits, and an embedded
engine that was running goes on headless, like ``batchdeck serve``, until no job is
Waiting, Executing or Canceling (or SIGTERM/SIGINT); then it stops cleanly and the
process exits. Meanwhile its lease stays live, so a console started again attaches to
it. The demo is the exception: its terminal closed, it stops its engine and exits.

Keys: the operator's keymap (tui.keys) is read before the console takes the terminal;
a bad one is refused in one line, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tui.host import EngineHost

DEMO_SERVERS = {"batch-01": 6, "batch-02": 3}
HEADLESS_CHECK_S = 2.0  # how often a headless engine asks whether work is left
WORK_STATUSES = ("waiting", "executing", "canceling")  # held (Withhold) jobs do not count


def _live_engines(db_path: str) -> dict[str, list[str]]:
    from engine.reader.reader import Reader

    async def ask() -> dict[str, list[str]]:
        reader = Reader(db_path)
        try:
            return await reader.live_engines(time.time())
        finally:
            await reader.close()

    return asyncio.run(ask())


def placement(
    db_path: str, servers: dict[str, int] | None, *, embed: bool = True
) -> tuple[Any, str]:
    """(a Supervisor to embed, or None to attach) and the words the header shows.
    ``servers``: the embedded engine's (None: the default ones).

    A database this user may not write: never an embedded engine (it would have to
    write); the console opens read-only and shows what the engines write."""
    from engine.sql.sqlite_file import writable
    from tui.app import attached_label, embedded_label

    live = _live_engines(db_path)
    if not embed or live or (os.path.exists(db_path) and not writable(db_path)):
        return None, attached_label(live)
    from engine.cli.main import server_args
    from engine.runtime.supervisor import Supervisor

    servers = servers if servers is not None else server_args(None)
    return Supervisor(db_path, servers), embedded_label(servers)


def _tty_alive() -> bool:
    """False once the controlling terminal hung up (reads EOF, ioctls fail with EIO)."""
    import termios

    try:
        termios.tcgetattr(sys.__stdin__.fileno())
    except (termios.error, OSError, ValueError, AttributeError):
        return False
    return True


def _detach_from_tty() -> None:
    """Point stdin/stdout/stderr at /dev/null so nothing blocks writing to a dead terminal."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
        os.close(null)


def _install_signals(host: EngineHost) -> None:
    def lost(*_: object) -> None:
        _detach_from_tty()  # only now: a live terminal must be restored by Textual
        host.request_hangup()

    def stop(*_: object) -> None:
        host.request_exit()

    signal.signal(signal.SIGHUP, lost)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host.on_tty_lost = lost


async def has_work(reader: Any) -> bool:
    """Is any job Waiting, Executing or Canceling? (True when it cannot be read.)"""
    try:
        counts = await reader.status_counts()
    except Exception:  # noqa: BLE001 - a locked database: ask again next time
        return True
    return any(counts.get(status, 0) for status in WORK_STATUSES)


async def run_headless(
    engine: Any, db_path: str, *, stop_now: bool = False, check_s: float = HEADLESS_CHECK_S
) -> None:
    """Keep an engine whose console lost its terminal running until its work is done
    (or SIGTERM/SIGINT), then stop it cleanly (running tasks, if any, go back to Ready)."""
    from engine.reader.reader import Reader

    stop = asyncio.Event()
    if stop_now:
        stop.set()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # no terminal left to lose
    reader = Reader(db_path)
    try:
        while not stop.is_set() and engine.servers and await has_work(reader):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), check_s)
    finally:
        with contextlib.suppress(Exception):
            await reader.close()
        try:
            await engine.stop()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


async def run_app(app: Any, host: EngineHost, db_path: str) -> int:
    """The console; then, if the terminal went away under an embedded engine, the engine
    alone (same event loop: its tasks never stop in between)."""
    code = await app.run_async()
    if host.handed_off is not None:
        await run_headless(host.handed_off, db_path, stop_now=host.exit_requested)
    return int(code or 0)


def run_console(args: argparse.Namespace) -> int:
    """Open the console for ``batchdeck`` / ``batchdeck console`` / ``batchdeck demo``."""
    from tui.keys import KeymapError, load_keymap

    try:
        keymap = load_keymap()  # first: a bad keymap is said before anything starts
    except KeymapError as exc:
        print(f"batchdeck: {exc}", file=sys.stderr)
        return 2
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print(
            "batchdeck: the console needs a terminal (use `batchdeck list` or "
            "`batchdeck serve` without one)",
            file=sys.stderr,
        )
        return 2
    made = make_console(args, keymap=keymap, watch_tty=_tty_alive)
    if isinstance(made, int):
        return made
    app, host, db_path = made
    _install_signals(host)
    return asyncio.run(run_app(app, host, db_path))


def _checked(db: str | None) -> str:
    """The database's path, its file checked for damage (``check_intact``)."""
    from engine.sql.sqlite_file import check_intact, default_db_path

    path = db or default_db_path()
    check_intact(path)
    return path


def make_console(
    args: argparse.Namespace,
    *,
    keymap: dict[str, str] | None = None,
    watch_tty: Any = None,
    embed: bool = True,
) -> tuple[Any, EngineHost, str] | int:
    """The console app and its host, as ``run_console`` starts them (an exit code when
    it cannot start). ``embed=False``: never an embedded engine (bench/console_list.py
    measures the console alone, through this same path)."""
    from engine.cli.main import server_args
    from engine.core.safe_text import safe_line

    command = getattr(args, "command", None) or "console"
    # The damage check reads every page (~0.15 s on 100,000 jobs). SQLite reads without
    # the GIL, so it runs in a thread from the start, beside the imports of Textual and
    # the console; its answer is taken before the console takes the terminal.
    with ThreadPoolExecutor(1, thread_name_prefix="batchdeck-check") as pool:
        specs = getattr(args, "server", None)
        if command == "demo":
            try:
                import tui.demo as demo  # written separately; may be absent in a build
            except ImportError as exc:
                print(f"batchdeck demo: the demo is not available ({exc})", file=sys.stderr)
                return 2
            try:
                built = str(demo.build_demo(getattr(args, "dir", None) or "./batchdeck-demo"))
            except Exception as exc:  # noqa: BLE001 - DemoError and file errors: one line
                print(f"batchdeck demo: {exc}", file=sys.stderr)
                return 1
            intact = pool.submit(_checked, built)
            servers: dict[str, int] | None = dict(getattr(demo, "SERVERS", DEMO_SERVERS))
        else:
            intact = pool.submit(_checked, getattr(args, "db", None))
            try:
                # The default servers are read only if an engine is embedded (placement).
                servers = server_args(specs) if specs else None
            except ValueError as exc:
                print(f"batchdeck: {exc}", file=sys.stderr)
                return 2
        from engine.sql.sqlite_file import DatabaseError
        from tui.app import BatchdeckApp

        try:
            db_path = intact.result()  # a damaged file: one line on how to recover
            engine, label = placement(db_path, servers, embed=embed)
        except DatabaseError as exc:
            print(f"batchdeck: {safe_line(exc)}", file=sys.stderr)
            return 1
    # The demo's data is throwaway: it ends with its terminal (see tui.host).
    stage = getattr(demo, "stage_stuck", None) if command == "demo" else None
    host = EngineHost(
        engine,
        end_on_hangup=command == "demo",
        watch_tty=watch_tty,
        after_start=(lambda: stage(db_path)) if stage is not None else None,
    )
    app = BatchdeckApp(db_path, mode_label=label, host=host, keymap=keymap)
    return app, host, db_path
