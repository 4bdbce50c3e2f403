"""Noticing other connections' commits cheaply: ``PRAGMA data_version``.

The value changes whenever another connection commits to the database file; reading
it costs microseconds, so polling it a few times a second is cheaper than any other
signal SQLite offers and needs no daemon. One connection per process serves every
watch (``Store.watcher``); each watch keeps its own last value.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from engine.db import raw_connection


class DataVersionWatch:
    def __init__(
        self, source: str | sqlite3.Connection, lock: threading.Lock | None = None
    ) -> None:
        # A path: a connection of its own, closed by ``close``; a connection: shared.
        self._own = isinstance(source, str)
        self._conn = raw_connection(source) if isinstance(source, str) else source
        self._lock = lock or threading.Lock()
        self._last = self._read()

    def _read(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

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


class PollWatch:
    """Where no cheap change signal is wired (PostgreSQL, until LISTEN/NOTIFY is): every
    look is a change, so readers simply re-read at their own pace."""

    def changed(self) -> bool:
        return True

    async def wait(self, interval: float = 0.1) -> None:
        await asyncio.sleep(interval)

    def close(self) -> None:
        pass
