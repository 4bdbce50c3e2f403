"""When the database goes away: telling an outage from a bug, and saying it once.

An outage is an error of the database's reach, not of the statement: SQLite's write
lock held by another process past the busy timeout, a full disk, an I/O error;
PostgreSQL stopped, restarting, or our connection terminated. The engine rides it out
(keeps what it must write, retries, resumes on its own); any other error is a bug,
reported as any other. ``Outage`` keeps the engine's view of one: since when, what, and the
one line an operator reads (the log, ``batchdeck servers``' note, the console's header).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# An outage is over once a write succeeds and none has failed for this long: a full
# disk lets an in-place UPDATE through while every INSERT fails, and the state must
# not flap with each.
CLEAR_AFTER_S = 1.0
# The note an outage leaves on the engine's server rows begins with this (and only
# such a note is cleared when it ends).
NOTE_PREFIX = "cannot reach database since "

_SQLITE_OUTAGES = (
    ("database or disk is full", "full"),
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("disk i/o error", "io"),
    ("unable to open database file", "io"),
)
_PG_OUTAGES = (
    "connection",  # refused, closed unexpectedly, terminated, timed out, lost
    "server closed",
    "terminating",
    "shutting down",
    "starting up",
    "not accepting",
    "could not receive",
    "could not send",
    "ssl syscall",
    "eof detected",
)


def outage_of(exc: BaseException) -> str | None:
    """The kind of outage ``exc`` is ("full", "locked", "io", "unreachable"), or None
    for any other error (a bug, a refused statement: not retried)."""
    orig = getattr(exc, "orig", None) or exc
    module = type(orig).__module__ or ""
    text = str(orig).lower()
    if getattr(exc, "connection_invalidated", False):
        return "unreachable"
    if module.startswith("sqlite3") or type(orig).__name__ in ("OperationalError",):
        for needle, kind in _SQLITE_OUTAGES:
            if needle in text:
                return kind
    if module.startswith("psycopg"):
        name = type(orig).__name__
        if name in ("OperationalError", "InterfaceError", "AdminShutdown", "CannotConnectNow"):
            return "unreachable"
        if any(n in text for n in _PG_OUTAGES):
            return "unreachable"
    if type(exc).__name__ in ("InterfaceError", "DisconnectionError", "PendingRollbackError"):
        return "unreachable"
    return None


class Outage:
    """The engine's view of its database's reach. Used from the event loop only."""

    def __init__(self, where: str, say: Callable[[str, bool], None]) -> None:
        self._where = where
        self._say = say  # (line, is_error)
        self.since: float | None = None  # wall clock, for the operator
        self.since_mono: float | None = None
        self.kind = ""
        self.detail = ""
        self._last_failure = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def seconds(self) -> float:
        """How long the database has been out of reach (0 when it is not)."""
        return 0.0 if self.since_mono is None else time.monotonic() - self.since_mono

    def failed(self, exc: BaseException) -> bool:
        """Record ``exc`` if it is an outage (the first one of an outage is said in one
        line); False for any other error."""
        kind = outage_of(exc)
        if kind is None:
            return False
        self._last_failure = time.monotonic()
        if self.since is None:
            self.since, self.since_mono = time.time(), self._last_failure
            self.kind, self.detail = kind, _first_line(exc)
            self._say(self.line(), True)
        return True

    def succeeded(self) -> None:
        """A write went through: the outage is over once none has failed for a while."""
        if self.since_mono is None:
            return
        now = time.monotonic()
        if now - self._last_failure < CLEAR_AFTER_S:
            return
        took = self._last_failure - self.since_mono
        self.since = self.since_mono = None
        self._say(f"database {self._where} writable again after {took:.0f} s; resumed", False)

    def note(self) -> str:
        """The server rows' note while it lasts."""
        assert self.since is not None
        at = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"{NOTE_PREFIX}{at}: {self.detail}"

    def line(self) -> str:
        assert self.since is not None
        at = time.strftime("%H:%M:%S", time.localtime(self.since))
        if self.kind == "full":
            return (
                f"the database is full: {self._where} ({self.detail}); writing paused "
                f"since {at}, resumes when space returns"
            )
        return (
            f"cannot reach database {self._where} since {at} ({self.detail}); writing "
            "paused, retrying"
        )

    def cause(self) -> str:
        """Why a run the outage stopped was interrupted (its task goes back to Ready)."""
        return f"interrupted: the engine could not reach its database for {self.seconds():.0f} s"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:200]
