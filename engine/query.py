"""Reading jobs, tasks, servers and events: the public query API.

Async, over aiosqlite, so the console never blocks the event loop it shares with the
engine. The job list is read a window at a time (``list_jobs(offset, limit)``) with
task aggregates for just those rows, which is what keeps a 100,000-job database fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.db import BUSY_TIMEOUT_MS, Store, reader_url
from engine.safe_text import safe_block, safe_line
from engine.settings import MAXIMUM_SECONDS
from engine.statuses import JOB_TERMINAL, TASK_TERMINAL

SORTS = {
    "id": "j.id",
    "name": "j.name",
    "status": "j.status",
    "started": "j.started_at",
    "submitted_by": "j.submitted_by",
}


@dataclass(frozen=True)
class JobView:
    id: int
    name: str
    status: str
    system: bool
    submitted_by: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    parent_id: int | None
    call_mode: str | None
    orphaned: bool
    cancel_reason: str | None
    canceled_by: str | None
    canceled_at: float | None
    aborted_by: str | None
    aborted_at: float | None
    error: str | None
    recipe_path: str | None
    tasks_total: int = 0
    tasks_done: int = 0
    servers: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in JOB_TERMINAL

    def duration(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or now) - self.started_at

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["servers"] = list(self.servers)
        return d


@dataclass(frozen=True)
class TaskView:
    id: int
    job_id: int
    seq: int
    name: str
    action: str
    status: str
    server: str | None
    attempt: int
    max_attempts: int
    progress_done: float
    progress_total: float | None
    progress_unit: str | None
    message: str | None
    error: str | None
    output: str | None
    approval: str | None
    approval_by: str | None
    child_job_id: int | None
    started_at: float | None
    ended_at: float | None

    def duration(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or now) - self.started_at

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventView:
    id: int
    at: float
    job_id: int | None
    task_id: int | None
    server: str | None
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServerView:
    name: str
    slots: int
    status: str
    drain_deadline: float | None
    restart_job_id: int | None
    lease_owner: str | None
    heartbeat_at: float | None
    in_use: int
    live: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobDetail:
    job: JobView
    tasks: list[TaskView] = field(default_factory=list)
    children: list[JobView] = field(default_factory=list)
    events: list[EventView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = self.job.to_json()
        d["tasks"] = [t.to_json() for t in self.tasks]
        d["children"] = [c.id for c in self.children]
        d["events"] = [e.to_json() for e in self.events]
        return d


@dataclass(frozen=True)
class JobPage:
    rows: list[JobView]
    total: int
    offset: int


_JOB_COLS = (
    "j.id, j.name, j.status, j.system, j.submitted_by, j.submitted_at, j.started_at, "
    "j.ended_at, j.parent_id, j.call_mode, j.orphaned, j.cancel_reason, j.canceled_by, "
    "j.canceled_at, j.aborted_by, j.aborted_at, j.error, j.recipe_path"
)
_TASK_COLS = (
    "id, job_id, seq, name, action, status, server, attempt, max_attempts, progress_done, "
    "progress_total, progress_unit, message, error, output, approval, approval_by, "
    "child_job_id, started_at, ended_at"
)
_DONE = ",".join(f"'{s}'" for s in TASK_TERMINAL)


def _job(row: Iterable[Any], agg: tuple[int, int, str | None] | None = None) -> JobView:
    r = list(row)
    r[3], r[10] = bool(r[3]), bool(r[10])
    total, done, servers = agg or (0, 0, None)
    return JobView(
        *r,
        tasks_total=total,
        tasks_done=done,
        servers=tuple(sorted(set(servers.split(",")))) if servers else (),
    )


V = TypeVar("V")


def terminal_safe(view: V) -> V:
    """A view whose text fields are safe to draw on a terminal (``engine.safe_text``):
    one-line fields escaped, a shell task's output tail keeping its newlines."""
    changes: dict[str, Any] = {}
    for f in fields(view):  # type: ignore[arg-type]
        value = getattr(view, f.name)
        if isinstance(value, str):
            safe = safe_block(value) if f.name == "output" else safe_line(value)
            if safe != value:
                changes[f.name] = safe
        elif isinstance(value, tuple) and any(isinstance(v, str) for v in value):
            safe_items = tuple(safe_line(v) if isinstance(v, str) else v for v in value)
            if safe_items != value:
                changes[f.name] = safe_items
    return replace(view, **changes) if changes else view  # type: ignore[type-var]


class Reader:
    """Read-only access to one database, for the console and the command line.

    ``terminal_text``: every view it returns has its text escaped for a terminal
    (``terminal_safe``); the console reads this way, so no screen can draw a raw
    control character from a recipe or a task.
    """

    def __init__(
        self, path: str, *, lease_seconds: float | None = None, terminal_text: bool = False
    ) -> None:
        # Creates or checks the schema (version) before the first read; read-only (and
        # never creating anything) for a user who may not write the database.
        Store(path, readonly=None).dispose()
        self.path = path
        self.engine: AsyncEngine = create_async_engine(reader_url(path))

        @event.listens_for(self.engine.sync_engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        self._lease_seconds = lease_seconds
        self._terminal_text = terminal_text

    def _out(self, view: V) -> V:
        return terminal_safe(view) if self._terminal_text else view

    async def close(self) -> None:
        await self.engine.dispose()

    async def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        async with self.engine.connect() as conn:
            res = await conn.exec_driver_sql(sql, params)
            return [tuple(r) for r in res.fetchall()]

    async def _aggregates(self, ids: list[int]) -> dict[int, tuple[int, int, str | None]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self._rows(
            f"SELECT job_id, count(*), sum(status IN ({_DONE})), group_concat(DISTINCT server) "
            f"FROM task WHERE job_id IN ({marks}) GROUP BY job_id",
            tuple(ids),
        )
        return {r[0]: (r[1], r[2] or 0, r[3]) for r in rows}

    @staticmethod
    def _filter(text: str | None, statuses: Iterable[str] | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if statuses:
            st = list(statuses)
            clauses.append(f"j.status IN ({','.join('?' * len(st))})")
            params.extend(st)
        if text:
            t = text.strip()
            if t.isdigit():
                clauses.append("(j.id = ? OR j.name LIKE ?)")
                params.extend([int(t), f"%{t}%"])
            else:
                clauses.append("(j.name LIKE ? OR j.submitted_by LIKE ? OR j.status LIKE ?)")
                params.extend([f"%{t}%", f"%{t}%", f"{t}%"])
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    async def count_jobs(
        self, text: str | None = None, statuses: Iterable[str] | None = None
    ) -> int:
        where, params = self._filter(text, statuses)
        return (await self._rows(f"SELECT count(*) FROM job j{where}", tuple(params)))[0][0]

    async def list_jobs(
        self,
        offset: int = 0,
        limit: int = 50,
        *,
        text: str | None = None,
        statuses: Iterable[str] | None = None,
        sort: str = "id",
        descending: bool = True,
        with_total: bool = True,
    ) -> JobPage:
        where, params = self._filter(text, statuses)
        order = SORTS.get(sort)
        if order is None:
            raise ValueError(f"unknown sort {sort!r} (known: {', '.join(SORTS)})")
        direction = "DESC" if descending else "ASC"
        rows = await self._rows(
            f"SELECT {_JOB_COLS} FROM job j{where} ORDER BY {order} {direction}, j.id {direction} "
            "LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        agg = await self._aggregates([r[0] for r in rows])
        total = await self.count_jobs(text, statuses) if with_total else len(rows)
        return JobPage([self._out(_job(r, agg.get(r[0]))) for r in rows], total, offset)

    async def job_position(
        self,
        job_id: int,
        *,
        text: str | None = None,
        statuses: Iterable[str] | None = None,
        sort: str = "id",
        descending: bool = True,
    ) -> int | None:
        """Where a job sits (0-based) in the list ``list_jobs`` shows with these arguments,
        or None when the filter leaves it out. One window-function query, no full load."""
        where, params = self._filter(text, statuses)
        order = SORTS[sort]
        d = "DESC" if descending else "ASC"
        rows = await self._rows(
            f"SELECT rn FROM (SELECT j.id AS id, ROW_NUMBER() OVER "
            f"(ORDER BY {order} {d}, j.id {d}) AS rn FROM job j{where}) WHERE id = ?",
            (*params, job_id),
        )
        return int(rows[0][0]) - 1 if rows else None

    async def status_counts(self) -> dict[str, int]:
        return dict(await self._rows("SELECT status, count(*) FROM job GROUP BY status"))

    async def job(self, job_id: int) -> JobView | None:
        rows = await self._rows(f"SELECT {_JOB_COLS} FROM job j WHERE j.id=?", (job_id,))
        if not rows:
            return None
        return self._out(_job(rows[0], (await self._aggregates([job_id])).get(job_id)))

    async def job_detail(self, job_id: int, *, event_limit: int = 500) -> JobDetail | None:
        job = await self.job(job_id)
        if job is None:
            return None
        tasks = [
            self._out(TaskView(*r))
            for r in await self._rows(
                f"SELECT {_TASK_COLS} FROM task WHERE job_id=? ORDER BY seq, id", (job_id,)
            )
        ]
        child_rows = await self._rows(
            f"SELECT {_JOB_COLS} FROM job j WHERE j.parent_id=? ORDER BY j.id", (job_id,)
        )
        agg = await self._aggregates([r[0] for r in child_rows])
        events = [
            self._out(EventView(*r))
            for r in await self._rows(
                "SELECT id, at, job_id, task_id, server, kind, from_status, to_status, "
                "actor, reason FROM event WHERE job_id=? ORDER BY id DESC LIMIT ?",
                (job_id, event_limit),
            )
        ]
        events.reverse()
        children = [self._out(_job(r, agg.get(r[0]))) for r in child_rows]
        return JobDetail(job, tasks, children, events)

    async def servers(self, now: float | None = None) -> list[ServerView]:
        now = time.time() if now is None else now
        ttl = self._lease_seconds
        if ttl is None:
            rows = await self._rows("SELECT value FROM meta WHERE key='setting.lease_seconds'")
            ttl = min(float(rows[0][0]), MAXIMUM_SECONDS["lease_seconds"]) if rows else 5.0
        rows = await self._rows(
            "SELECT s.name, s.slots, s.status, s.drain_deadline, s.restart_job_id, "
            "s.lease_owner, s.heartbeat_at, (SELECT count(*) FROM task t WHERE t.server = s.name "
            "AND t.status IN ('executing', 'canceling', 'aborting')) FROM server s ORDER BY s.name"
        )
        return [
            self._out(ServerView(*r, live=bool(r[5]) and (r[6] or 0) > now - ttl)) for r in rows
        ]

    async def live_engines(self, now: float | None = None) -> dict[str, list[str]]:
        """Engines holding a live lease: owner -> server names."""
        out: dict[str, list[str]] = {}
        for s in await self.servers(now):
            if s.live and s.lease_owner:
                out.setdefault(s.lease_owner, []).append(s.name)
        return out
