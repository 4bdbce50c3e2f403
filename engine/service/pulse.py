"""Whether the engine's database writes are succeeding: the watchdog's evidence.

The engine calls ``Pulse.__call__`` after every tick and heartbeat write
(``Engine.write_hooks``). An idle engine still beats (a third of the lease), so a
healthy engine has always written within the lease; one that cannot write (a lock held
by another process, a full disk) has not, and neither has one whose loop is stuck.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pulse:
    """The last successful write, and since when writes have been failing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # The engine wrote its leases and its recovery at start: that counts.
        self.last_ok = clock()
        self.failing_since: float | None = None
        self.write_errors = 0

    def __call__(self, kind: str, ok: bool, seconds: float) -> None:
        now = self._clock()
        if ok:
            self.last_ok, self.failing_since = now, None
            return
        self.write_errors += 1
        if self.failing_since is None:
            self.failing_since = now

    def silent_for(self) -> float:
        """Seconds since the last write that succeeded."""
        return max(0.0, self._clock() - self.last_ok)

    def fresh(self, within: float) -> bool:
        """A write has succeeded within ``within`` seconds (a monotonic clock: a clock
        step never makes a live engine look dead, nor a dead one alive)."""
        return self.silent_for() <= within
