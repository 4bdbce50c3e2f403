"""The console's access to one database: reads (async), the flows (``engine.flows``: in
a thread, on the Store's transactions), and a cheap change counter fed by
``PRAGMA data_version``.

Screens never talk SQL: they call ``Reader`` for what they show and the flows for what
they ask, through this object.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from engine.core.statuses import STATUS_GROUPS
from engine.core.views import JobPage
from engine.reader.reader import Reader
from engine.sql.sqlite_file import writable

R = TypeVar("R")

# The status filters `f` cycles through: (label, statuses or None for all); the command
# line's `--status` takes the same names.
STATUS_FILTERS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("all", None),
    *STATUS_GROUPS.items(),
)
SORT_KEYS: tuple[str, ...] = ("id", "name", "status", "started")


@dataclass(frozen=True)
class JobQuery:
    """What the job list shows: a text filter, a status filter, an order."""

    text: str = ""
    status_filter: int = 0  # index into STATUS_FILTERS
    sort: str = "id"
    descending: bool = True

    @property
    def statuses(self) -> tuple[str, ...] | None:
        return STATUS_FILTERS[self.status_filter][1]

    @property
    def status_label(self) -> str:
        return STATUS_FILTERS[self.status_filter][0]

    def next_status(self) -> JobQuery:
        return replace(self, status_filter=(self.status_filter + 1) % len(STATUS_FILTERS))

    def next_sort(self) -> JobQuery:
        i = SORT_KEYS.index(self.sort) if self.sort in SORT_KEYS else -1
        nxt = SORT_KEYS[(i + 1) % len(SORT_KEYS)]
        # Names read best A to Z; ids, statuses and start times newest / busiest first.
        return replace(self, sort=nxt, descending=nxt != "name")

    def describe(self) -> str:
        parts = [f"status: {self.status_label}"]
        if self.text:
            parts.append(f"text: {self.text!r}")
        parts.append(f"sort: {self.sort} {'↓' if self.descending else '↑'}")
        return " · ".join(parts)


class WholeReads:
    """A Reader whose reads always run to their end.

    The console cancels work freely (an exclusive worker replaced by a newer one, the
    app exiting). A read cut in the middle can leave SQLAlchemy's pooled aiosqlite
    connection unusable, and closing the pool then waits for ever. So each read runs in
    its own task: a cancelled caller stops waiting at once, the read finishes on its own,
    and ``drain`` waits for the ones still running before the pool is closed."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._running: set[asyncio.Task[Any]] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._reader, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def whole(*args: Any, **kw: Any) -> Any:
            task = asyncio.ensure_future(attr(*args, **kw))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            return await asyncio.shield(task)

        return whole

    async def drain(self) -> None:
        if self._running:
            await asyncio.wait(list(self._running))


class Database:
    """One database, as the console sees it."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path
        # Read-only for a user who may not write the file: the console then offers no
        # key that writes (the Store, opened later, decides the same way).
        self.read_only = os.path.exists(db_path) and not writable(db_path)
        # Every text a screen draws comes escaped: no raw control characters on screen.
        self._reader = Reader(db_path, terminal_text=True)
        self._reads = WholeReads(self._reader)
        self.reader = cast(Reader, self._reads)  # Reader's methods, never cut short
        # The database layer (SQLAlchemy, ~0.3 s of imports) and the change watch are
        # opened after the first list is painted (``open``): the list reads without them.
        self._store: Any = None
        self._watch: Any = None
        self._lock = threading.Lock()
        self.version = 0

    @property
    def store(self) -> Any:
        if self._store is None:
            self._open()
        return self._store

    def _open(self) -> None:
        from engine.store.db import shared_store

        store = shared_store(self.path, readonly=None)
        with self._lock:
            if self._store is not None:  # opened meanwhile: give this one back
                store.dispose()
                return
            self._store = store
            self.read_only = store.readonly
            self._watch = store.watcher()
            # Commits between the first read and the watch's first look: read again.
            self.version += 1

    async def open(self) -> None:
        """Open the Store (creating or checking the schema) and the change watch."""
        if self._store is None:
            await asyncio.to_thread(self._open)

    def poll(self) -> int:
        """The change counter: bumped when any other connection (the engine's too) committed."""
        if self._watch is not None and self._watch.changed():
            self.version += 1
        return self.version

    async def reading(self, flow: Callable[..., R], *args: Any, **kw: Any) -> R:
        """Run a flow that only reads (``flow(sql, *args, **kw)``) in one read transaction
        of our Store, off the loop."""
        await self.open()

        def run() -> R:
            with self.store.reading() as sql:
                return flow(sql, *args, **kw)

        return await asyncio.to_thread(run)

    async def request(self, flow: Callable[..., R], *args: Any, **kw: Any) -> R:
        """Run an operator's request (``flow(transaction, *args, **kw)``: it opens its
        own write transactions on our Store), off the loop."""
        await self.open()
        return await asyncio.to_thread(flow, self.store.transaction, *args, **kw)

    async def list_jobs(self, offset: int, limit: int, query: JobQuery) -> JobPage:
        return await self.reader.list_jobs(
            offset,
            limit,
            text=query.text or None,
            statuses=query.statuses,
            sort=query.sort,
            descending=query.descending,
        )

    async def job_ids(self, query: JobQuery) -> list[int]:
        """Every job ``query`` shows (not only the window): one query."""
        return await self.reader.job_ids(text=query.text or None, statuses=query.statuses)

    async def position(self, job_id: int, query: JobQuery) -> int | None:
        """Where a job sits in the list ``query`` shows (0-based), or None if it is not in it.

        Used only when the selected job has moved out of the cached window (a status
        change under sort by status): one indexed-window query, not a full load.
        """
        return await self.reader.job_position(
            job_id,
            text=query.text or None,
            statuses=query.statuses,
            sort=query.sort,
            descending=query.descending,
        )

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        await self._reads.drain()
        await self._reader.close()
        if self._store is not None:
            await asyncio.to_thread(self._store.dispose)


def user_name(actor: str | None) -> str:
    from engine.core.identity import user_name as _user

    return _user(actor) if actor else "-"


def owner_pid(owner: str) -> str:
    """An engine's lease owner ``host:pid:nonce`` -> its pid (the whole text if not that)."""
    parts = owner.split(":")
    return parts[1] if len(parts) >= 3 else owner


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one line for a notification (SQLAlchemy adds SQL on later lines)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    name = type(exc).__name__
    if name not in text:  # "(sqlite3.OperationalError) database is locked" names itself
        text = f"{name}: {text}" if text else name
    return text if len(text) <= limit else text[: limit - 1] + "…"


def join(items: Iterable[str], width: int) -> str:
    """Comma-join, shortened to ``name+N`` when the whole does not fit."""
    items = list(items)
    if not items:
        return "-"
    whole = ",".join(items)
    if len(whole) <= width or len(items) == 1:
        return whole
    return f"{items[0]}+{len(items) - 1}"
