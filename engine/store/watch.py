"""Noticing other connections' commits cheaply: SQLite's ``PRAGMA data_version``;
PostgreSQL's ``LISTEN``/``NOTIFY`` (``NotifyHub``).

SQLite: the value changes whenever another connection commits to the file; reading
it costs microseconds, so polling it a few times a second is cheaper than any other
signal SQLite offers and needs no daemon. One connection per process serves every
watch (``Store.watcher``); each watch keeps its own last value.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from engine.sql.sqlite_file import connect

CHANNEL = "batchdeck"  # PostgreSQL's LISTEN/NOTIFY channel (see ``Store.write``)
LISTEN_TIMEOUT_S = 0.5
RECONNECT_PAUSE_S = 0.2
NOTIFY_POLL_S = 0.02


def data_version(conn: sqlite3.Connection) -> int:
    """SQLite's count of other connections' commits, as this connection saw them."""
    return conn.execute("PRAGMA data_version").fetchone()[0]


class DataVersionWatch:
    def __init__(
        self, source: str | sqlite3.Connection, lock: threading.Lock | None = None
    ) -> None:
        # A path: a connection of its own, closed by ``close``; a connection: shared.
        self._own = isinstance(source, str)
        self._conn = connect(source, write=False) if isinstance(source, str) else source
        self._lock = lock or threading.Lock()
        self._last = self._read()

    def _read(self) -> int:
        with self._lock:
            return data_version(self._conn)

    def absorb(self, only_ours: Callable[[], bool]) -> None:
        """Take the commits made so far as seen, when ``only_ours()`` (asked after this
        look) confirms that no other connection committed since the caller's write
        transaction: that transaction read the database after every earlier commit,
        and its own commit is no news to its engine. Without it, every tick's commit
        woke the engine for one more tick with nothing to do (a fifth of all ticks at
        4 slots). A commit that slips in before the check is never swallowed: the
        check fails and the next ``changed()`` reports it."""
        seen = self._read()
        if only_ours():
            self._last = seen

    def changed(self) -> bool:
        """True once for each batch of commits made by other connections since last asked."""
        now = self._read()
        if now != self._last:
            self._last = now
            return True
        return False

    async def wait(self, interval: float = 0.1) -> None:
        """Return after the next commit by another connection."""
        while not self.changed():
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._own:
            self._conn.close()


class NotifyHub:
    """PostgreSQL's change signal: one connection per process, in autocommit, listening
    on ``CHANNEL``; every write transaction (``Store.write``) notifies it at commit.

    A daemon thread waits on the connection and raises each watch's flag, so
    ``changed()`` costs nothing. A broken connection is reopened and every watch told
    "changed": notifications sent meanwhile are lost, and a lost one must never mean a
    cancel not acted on.
    """

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._watches: set[NotifyWatch] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: Any = None
        self._connect()  # the first connection in the caller: a bad URL fails there
        self._thread = threading.Thread(target=self._listen, name="batchdeck-listen", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        import psycopg

        conn = psycopg.connect(self._conninfo, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        self._conn = conn

    def watch(self) -> NotifyWatch:
        w = NotifyWatch(self)
        with self._lock:
            self._watches.add(w)
        return w

    def _forget(self, w: NotifyWatch) -> None:
        with self._lock:
            self._watches.discard(w)

    def _signal(self, payload: str | None = None) -> None:
        """Flag every watch but those ignoring ``payload`` (None: a lost connection,
        which flags all)."""
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            if payload is None or payload != w._ignored:
                w._flag.set()
                if w._on_change is not None:
                    with contextlib.suppress(Exception):  # the listener's to mind, not ours
                        w._on_change()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    self._connect()
                    self._signal()
                # A bounded wait: ``close`` is seen within it.
                for note in self._conn.notifies(timeout=LISTEN_TIMEOUT_S):
                    self._signal(note.payload)
            except Exception:  # noqa: BLE001 - any failure: reopen, and say "changed"
                self._drop()
                self._signal()
                self._stop.wait(RECONNECT_PAUSE_S)
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        # The thread closes its own connection at its next wake (psycopg holds the
        # connection's lock while waiting); not joined, so a Store closes at once.
        self._stop.set()


class NotifyWatch:
    """One reader's view of the process's ``NotifyHub``: ``changed()`` is True once for
    each batch of notifications since last asked. Starts "changed", as a first look
    must read."""

    def __init__(self, hub: NotifyHub) -> None:
        self._hub = hub
        self._flag = threading.Event()
        self._flag.set()
        self._ignored: str | None = None
        self._on_change: Callable[[], None] | None = None

    def on_change(self, call: Callable[[], None]) -> Callable[[], None]:
        """Call ``call`` (in the listening thread) each time the watch is flagged; returns
        what stops it."""
        self._on_change = call

        def stop() -> None:
            self._on_change = None

        return stop

    def ignore(self, tag: str) -> None:
        """Not flagged by commits written with this tag (``Store.write(tag=)``): an
        engine's own ticks. Another transaction's commit has its own notification, so
        none is hidden by it."""
        self._ignored = tag

    def changed(self) -> bool:
        if self._flag.is_set():
            self._flag.clear()
            return True
        return False

    async def wait(self, interval: float = 0.1) -> None:
        """Return after the next notification (checked every ``NOTIFY_POLL_S``, well
        inside the 200 ms a cancel on another host may take)."""
        step = min(interval, NOTIFY_POLL_S)
        while not self.changed():
            await asyncio.sleep(step)

    def close(self) -> None:
        self._hub._forget(self)
