"""Noticing other connections' commits cheaply: ``PRAGMA data_version``.

The value changes whenever another connection commits to the database file; reading
it costs microseconds, so polling it a few times a second is cheaper than any other
signal SQLite offers and needs no daemon.
"""

from __future__ import annotations

import asyncio

from engine.db import raw_connection


class DataVersionWatch:
    def __init__(self, path: str) -> None:
        self._conn = raw_connection(path)
        self._last = self._read()

    def _read(self) -> int:
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
        self._conn.close()
