"""Starting the console: embedded engine or attached to a running one, and a clean exit
when the terminal goes away.

Placement: if ``Reader.live_engines()`` shows an engine with a live lease on this
database (``batchdeck serve``, or another console), the console attaches: it starts
no engine and controls jobs through the database, and jobs keep running after it
quits. Otherwise it embeds an engine for the requested servers; if that engine's
lease is refused at start (a race with another process), it falls back to attached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

DEMO_SERVERS = {"batch-01": 6, "batch-02": 3}


def _live_engines(db_path: str) -> dict[str, list[str]]:
    from engine.query import Reader

    async def ask() -> dict[str, list[str]]:
        reader = Reader(db_path)
        try:
            return await reader.live_engines(time.time())
        finally:
            await reader.close()

    return asyncio.run(ask())


def placement(db_path: str, servers: dict[str, int]) -> tuple[Any, str]:
    """(an Engine to embed, or None to attach) and the words the header shows."""
    from engine.runtime import Engine
    from tui.app import attached_label, embedded_label

    live = _live_engines(db_path)
    if live:
        return None, attached_label(live)
    return Engine(db_path, servers), embedded_label(servers)


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


def _install_hangup(app: Any) -> None:
    def lost(*_: object) -> None:
        _detach_from_tty()
        loop = app.event_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(app.hangup)

    signal.signal(signal.SIGHUP, lost)
    signal.signal(signal.SIGTERM, lost)
    app.on_tty_lost = lost


def run_console(args: argparse.Namespace) -> int:
    """Open the console for ``batchdeck`` / ``batchdeck console`` / ``batchdeck demo``."""
    from engine.db import DatabaseError, default_db_path
    from engine.runtime import parse_servers

    command = getattr(args, "command", None) or "console"
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print("batchdeck: the console needs a terminal (use `batchdeck list` or "
              "`batchdeck serve` without one)", file=sys.stderr)
        return 2
    if command == "demo":
        try:
            import tui.demo as demo  # written separately; may be absent in a build
        except ImportError as exc:
            print(f"batchdeck demo: the demo is not available ({exc})", file=sys.stderr)
            return 2
        try:
            db_path = str(demo.build_demo(getattr(args, "dir", None) or "./batchdeck-demo"))
        except Exception as exc:  # noqa: BLE001 - DemoError and file errors: one line
            print(f"batchdeck demo: {exc}", file=sys.stderr)
            return 1
        servers = dict(getattr(demo, "SERVERS", DEMO_SERVERS))
    else:
        db_path = getattr(args, "db", None) or default_db_path()
        try:
            servers = parse_servers(getattr(args, "server", None))
        except ValueError as exc:
            print(f"batchdeck: {exc}", file=sys.stderr)
            return 2

    from tui.app import BatchdeckApp

    try:
        engine, label = placement(db_path, servers)
    except DatabaseError as exc:
        print(f"batchdeck: {exc}", file=sys.stderr)
        return 1
    app = BatchdeckApp(db_path, mode_label=label, engine=engine, watch_tty=_tty_alive)
    _install_hangup(app)
    code = app.run()
    return int(code or 0)
