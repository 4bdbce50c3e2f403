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

from sqlalchemy import Select, bindparam, case, func, over, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.db import shared_store
from engine.dialect import distinct_list, in_list, like_ci
from engine.format import clock
from engine.models import STOPPING_STATUSES
from engine.safe_text import safe_block, safe_line
from engine.settings import MAXIMUM_SECONDS
from engine.statuses import JOB_TERMINAL, TASK_RUNNING, TASK_TERMINAL
from engine.stopping import StopsBy, stops_by
from engine.tables import event as event_t
from engine.tables import job as job_t
from engine.tables import meta as meta_t
from engine.tables import server as server_t
from engine.tables import task as task_t

SORTS = {
    "id": job_t.c.id,
    "name": job_t.c.name,
    "status": job_t.c.status,
    "started": job_t.c.started_at,
    "submitted_by": job_t.c.submitted_by,
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
    rerun_of: int | None = None
    tasks_total: int = 0
    tasks_done: int = 0
    servers: tuple[str, ...] = ()
    # Seconds a task of the job has been Canceling or Aborting, once that is longer than
    # the setting stuck_seconds; None: not stuck.
    stuck_for: float | None = None

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
    # How a cancel will stop it (running tasks only; see engine.stopping).
    stops_by: StopsBy | None = None

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
    host: str | None = None  # where its server process runs
    pid: int | None = None  # the server process (task code runs there), while live
    note: str | None = None  # a lease taken over, and the like

    def lease_age(self, now: float) -> float | None:
        return None if self.heartbeat_at is None else max(0.0, now - self.heartbeat_at)

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


def _columns(view: type, table: Any) -> list[Any]:
    """The table's columns a view takes, by the view's field names: a view field that
    names a column is read from it, so columns can move without breaking a view."""
    return [table.c[f.name] for f in fields(view) if f.name in table.c]


_JOB_COLS = _columns(JobView, job_t)
_TASK_COLS = _columns(TaskView, task_t)
_EVENT_COLS = _columns(EventView, event_t)
_SERVER_COLS = _columns(ServerView, server_t)
_JOBS = select(*_JOB_COLS)


def _picked(row: Any, cols: list[Any]) -> dict[str, Any]:
    m = row._mapping
    return {c.name: m[c.name] for c in cols}


def _job(
    row: Any,
    agg: tuple[int, int, str | None] | None = None,
    stuck_for: float | None = None,
) -> JobView:
    values = _picked(row, _JOB_COLS)
    values["system"], values["orphaned"] = bool(values["system"]), bool(values["orphaned"])
    total, done, servers = agg or (0, 0, None)
    return JobView(
        **values,
        tasks_total=total,
        tasks_done=done,
        servers=tuple(sorted(set(servers.split(",")))) if servers else (),
        stuck_for=stuck_for,
    )


def _task(row: Any, recipe_path: str | None) -> TaskView:
    values = _picked(row, _TASK_COLS)
    running = values["status"] in TASK_RUNNING
    how = stops_by(values["action"], row.params, recipe_path) if running else None
    return TaskView(**values, stops_by=how)


# Tasks winding down, with since when: the first event that put each into Canceling or
# Aborting (``since``) and the one that put it into its current status. Both lookups
# use the partial index ix_event_stopping, so the cost follows the number of tasks
# winding down, not the size of the database.
def _stopping_event(e: Any) -> Any:
    # Rendered with its values inline: SQLite uses the partial index only when the
    # query's terms match the index's own predicate, which bound parameters cannot.
    return e.c.to_status.in_(
        bindparam("stopping", list(STOPPING_STATUSES), expanding=True, literal_execute=True)
    )


_E1, _E2 = event_t.alias("e1"), event_t.alias("e2")
_STOPPING_TASKS = select(
    task_t.c.job_id,
    task_t.c.id,
    task_t.c.name,
    task_t.c.action,
    task_t.c.params,
    task_t.c.status,
    task_t.c.server,
    task_t.c.started_at,
    select(func.min(_E1.c.at))
    .where(_E1.c.task_id == task_t.c.id, _stopping_event(_E1))
    .scalar_subquery()
    .label("since"),
    select(func.max(_E2.c.at))
    .where(_E2.c.task_id == task_t.c.id, _stopping_event(_E2), _E2.c.to_status == task_t.c.status)
    .scalar_subquery()
    .label("status_since"),
).where(task_t.c.status.in_(list(STOPPING_STATUSES)))
_AGGREGATES = (
    select(
        task_t.c.job_id,
        func.count().label("total"),
        func.sum(case((task_t.c.status.in_(sorted(TASK_TERMINAL)), 1), else_=0)).label("done"),
        distinct_list(task_t.c.server).label("servers"),
    )
    .where(in_list(task_t.c.job_id, "ids"))
    .group_by(task_t.c.job_id)
)
_SETTING = select(meta_t.c.value).where(meta_t.c.key == bindparam("key"))


@dataclass(frozen=True)
class StoppingTask:
    """A task Canceling or Aborting, and since when."""

    job_id: int
    id: int
    name: str
    action: str
    status: str
    server: str | None
    since: float  # when it began winding down (entered Canceling, or Aborting)
    status_since: float  # when it entered its current status
    stops_by: StopsBy

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StuckJob:
    """A stuck job, with the banner the console shows and the key it names."""

    job: JobView
    stuck_for: float
    tasks: list[StoppingTask]  # its tasks winding down, longest first
    banner: str  # "Canceling for 12m 4s: task load has not reached a safe point. a: abort"
    next_step: str  # "abort", "enhanced_abort" or "restart" (enhanced abort is off)

    def to_json(self) -> dict[str, Any]:
        d = self.job.to_json()
        d["banner"] = self.banner
        d["next_step"] = self.next_step
        d["stopping_tasks"] = [t.to_json() for t in self.tasks]
        return d


def span(seconds: float) -> str:
    """12m 4s, 45s, 2h 3m, 1d 4h: the banner's durations."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _names(tasks: list[StoppingTask]) -> str:
    first = ", ".join(t.name for t in tasks[:3])
    more = f" and {len(tasks) - 3} more" if len(tasks) > 3 else ""
    return ("task " if len(tasks) == 1 else "tasks ") + first + more


def stuck_banner(
    status: str,
    stuck_for: float,
    tasks: list[StoppingTask],
    enhanced_on: bool = True,
    restarting: dict[str, tuple[str, float | None]] | None = None,
    now: float | None = None,
) -> tuple[str, str]:
    """The banner for a stuck job and its next step: (text, "abort" | "enhanced_abort" |
    "restart" | "wait").

    ``restarting``: the servers an enhanced abort of this job is restarting, name ->
    (status, drain deadline); then the next step is to wait for it, not to ask again."""
    aborting = [t for t in tasks if t.status == "aborting"]
    walled = aborting or [t for t in tasks if t.stops_by.key == "restart"]
    if walled:
        who = _names(walled)
        label = "Aborting" if aborting else "Canceling"
        lead = f"{label} for {span(stuck_for)}: {who} {'is' if len(walled) == 1 else 'are'} "
        pending = sorted({t.server for t in walled if t.server and t.server in (restarting or {})})
        if pending and restarting:
            parts = []
            for name in pending:
                state, deadline = restarting[name]
                if state == "draining" and deadline is not None:
                    parts.append(f"{name} (draining until {clock(deadline, now)})")
                else:
                    parts.append(f"{name} ({state})")
            return lead + f"waiting for the restart of {', '.join(parts)}.", "wait"
        lead += "in an unmanaged wait; only a server restart stops it."
        if enhanced_on:
            return lead + " A: enhanced abort", "enhanced_abort"
        return lead + " Enhanced abort is turned off in settings.", "restart"
    verb = "has" if len(tasks) == 1 else "have"
    how = {
        "sigterm": f"{verb} not exited after SIGTERM",
        "finishes": f"{verb} not finished",
    }.get(tasks[0].stops_by.key, f"{verb} not reached a safe point")
    return f"Canceling for {span(stuck_for)}: {_names(tasks)} {how}. a: abort", "abort"


@dataclass(frozen=True)
class EngineHealth:
    """Whether an engine serves this database, for the console's header."""

    state: str  # "serving", "gone" (a lease went stale: the engine died), "none"
    owner: str | None  # the engine ("host:pid:nonce") serving, or the one gone
    last_heartbeat: float | None
    servers: tuple[str, ...]  # the servers it serves (served)

    @property
    def gone_since(self) -> float | None:
        return self.last_heartbeat if self.state == "gone" else None

    def text(self, now: float | None = None) -> str:
        """ "attached", "engine gone since 12:04:31", "no engine"."""
        if self.state == "serving":
            return "attached"
        if self.state == "gone":
            return f"engine gone since {clock(self.last_heartbeat, now)}"
        return "no engine"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["servers"] = list(self.servers)
        return d


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
        # The process's gateway: the schema was created or checked when it opened;
        # read-only (and never creating anything) for a user who may not write it.
        self.store = shared_store(path, readonly=None)
        self.path = path
        self._engine: AsyncEngine | None = None

        self._lease_seconds = lease_seconds
        self._terminal_text = terminal_text

    def _out(self, view: V) -> V:
        return terminal_safe(view) if self._terminal_text else view

    @property
    def engine(self) -> AsyncEngine:
        # Taken on first use, on the loop that reads (a Reader may be made outside one).
        if self._engine is None:
            self._engine = self.store.async_engine()
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self.store.release_async(self._engine)
            self._engine = None
        self.store.dispose()

    async def _rows(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        async with self.engine.connect() as conn:
            res = await conn.execute(stmt, params or {})
            return list(res.all())

    async def _aggregates(self, ids: list[int]) -> dict[int, tuple[int, int, str | None]]:
        if not ids:
            return {}
        rows = await self._rows(_AGGREGATES, {"ids": ids})
        return {r.job_id: (r.total, r.done or 0, r.servers) for r in rows}

    @staticmethod
    def _filter(stmt: Select, text: str | None, statuses: Iterable[str] | None) -> Select:
        if statuses:
            stmt = stmt.where(job_t.c.status.in_(list(statuses)))
        if text:
            t = text.strip()
            if t.isdigit():
                stmt = stmt.where((job_t.c.id == int(t)) | like_ci(job_t.c.name, f"%{t}%"))
            else:
                stmt = stmt.where(
                    like_ci(job_t.c.name, f"%{t}%")
                    | like_ci(job_t.c.submitted_by, f"%{t}%")
                    | like_ci(job_t.c.status, f"{t}%")
                )
        return stmt

    async def _setting(self, key: str, default: str) -> str:
        rows = await self._rows(_SETTING, {"key": f"setting.{key}"})
        return rows[0].value if rows else default

    async def stuck_seconds(self) -> float:
        return float(await self._setting("stuck_seconds", "300"))

    async def stopping_tasks(
        self, job_ids: list[int] | None = None, now: float | None = None
    ) -> list[StoppingTask]:
        """Tasks Canceling or Aborting (of ``job_ids``, or all), longest first."""
        now = time.time() if now is None else now
        stmt = _STOPPING_TASKS
        if job_ids is not None:
            if not job_ids:
                return []
            stmt = stmt.where(in_list(task_t.c.job_id, job_ids))
        rows = await self._rows(stmt)
        paths: dict[int, str | None] = {}
        if rows:
            ids = sorted({r.job_id for r in rows})
            paths = {
                r.id: r.recipe_path
                for r in await self._rows(
                    select(job_t.c.id, job_t.c.recipe_path).where(in_list(job_t.c.id, ids))
                )
            }
        out = []
        for job_id, tid, name, action, params_json, status, srv, started, since, st in rows:
            # No event (a row written by hand): fall back on when the task started.
            began = since if since is not None else (started if started is not None else now)
            out.append(
                StoppingTask(
                    job_id,
                    tid,
                    name,
                    action,
                    status,
                    srv,
                    began,
                    st if st is not None else began,
                    stops_by(action, params_json, paths.get(job_id)),
                )
            )
        out.sort(key=lambda t: (t.since, t.id))
        return out

    async def stuck_for(
        self, job_ids: list[int] | None = None, now: float | None = None
    ) -> dict[int, float]:
        """Stuck jobs (of ``job_ids``, or all) -> seconds winding down."""
        now = time.time() if now is None else now
        limit = await self.stuck_seconds()
        out: dict[int, float] = {}
        for t in await self.stopping_tasks(job_ids, now):
            age = now - t.since
            if age > limit:
                out[t.job_id] = max(out.get(t.job_id, 0.0), age)
        return out

    async def stuck_jobs(self, now: float | None = None) -> list[StuckJob]:
        """Every stuck job, oldest first, with the banner naming the next step."""
        now = time.time() if now is None else now
        limit = await self.stuck_seconds()
        enhanced_on = (await self._setting("enhanced_abort", "on")) == "on"
        by_job: dict[int, list[StoppingTask]] = {}
        for t in await self.stopping_tasks(None, now):
            by_job.setdefault(t.job_id, []).append(t)
        stuck = {j: ts for j, ts in by_job.items() if now - ts[0].since > limit}
        jobs = await self.jobs_by_ids(sorted(stuck), now=now)
        restarts = await self._restarts(sorted(stuck))
        out = []
        for job in jobs:
            tasks = stuck[job.id]
            age = now - tasks[0].since
            banner, step = stuck_banner(
                job.status, age, tasks, enhanced_on, restarts.get(job.id), now
            )
            out.append(StuckJob(job, age, tasks, banner, step))
        out.sort(key=lambda s: -s.stuck_for)
        return out

    async def stuck_job(self, job_id: int, now: float | None = None) -> StuckJob | None:
        """The detail screen's banner for one job, or None when it is not stuck."""
        now = time.time() if now is None else now
        tasks = await self.stopping_tasks([job_id], now)
        if not tasks or now - tasks[0].since <= await self.stuck_seconds():
            return None
        job = await self.job(job_id, now=now)
        if job is None:
            return None
        enhanced_on = (await self._setting("enhanced_abort", "on")) == "on"
        age = now - tasks[0].since
        restarts = (await self._restarts([job_id])).get(job_id)
        banner, step = stuck_banner(job.status, age, tasks, enhanced_on, restarts, now)
        return StuckJob(job, age, tasks, banner, step)

    async def _restarts(self, job_ids: list[int]) -> dict[int, dict[str, tuple[str, float | None]]]:
        """Servers being restarted for these jobs' enhanced aborts: job -> name -> (status,
        drain deadline)."""
        if not job_ids:
            return {}
        out: dict[int, dict[str, tuple[str, float | None]]] = {}
        for r in await self._rows(
            select(
                server_t.c.name,
                server_t.c.status,
                server_t.c.drain_deadline,
                server_t.c.restart_job_id,
            ).where(
                in_list(server_t.c.restart_job_id, job_ids),
                server_t.c.status.in_(["draining", "restarting"]),
            )
        ):
            out.setdefault(r.restart_job_id, {})[r.name] = (r.status, r.drain_deadline)
        return out

    async def jobs_by_ids(self, ids: list[int], now: float | None = None) -> list[JobView]:
        """These jobs (newest first), with their aggregates and stuck_for."""
        if not ids:
            return []
        rows = await self._rows(_JOBS.where(in_list(job_t.c.id, ids)).order_by(job_t.c.id.desc()))
        agg = await self._aggregates([r.id for r in rows])
        stuck = await self.stuck_for([r.id for r in rows], now)
        return [_job(r, agg.get(r.id), stuck.get(r.id)) for r in rows]

    async def engine_health(
        self, owner: str | None = None, now: float | None = None
    ) -> EngineHealth:
        """Whether an engine serves this database (``owner``: the one this console
        attached to), from the server leases: "serving", "gone" (its lease went stale
        without a clean stop) or "none"."""
        now = time.time() if now is None else now
        ttl = float(
            self._lease_seconds
            if self._lease_seconds is not None
            else await self._setting("lease_seconds", "5")
        )
        stmt = (
            select(server_t.c.name, server_t.c.lease_owner, server_t.c.heartbeat_at)
            .where(server_t.c.lease_owner.is_not(None))
            .order_by(server_t.c.name)
        )
        if owner:
            stmt = stmt.where(server_t.c.lease_owner == owner)
        rows = await self._rows(stmt)
        live = [r for r in rows if (r.heartbeat_at or 0) > now - ttl]
        if live:
            last = max(r.heartbeat_at for r in live)
            return EngineHealth("serving", live[0].lease_owner, last, tuple(r.name for r in live))
        if rows:
            last = max((r.heartbeat_at or 0) for r in rows) or None
            return EngineHealth("gone", rows[0].lease_owner, last, tuple(r.name for r in rows))
        if owner:
            # Our engine released its leases (a clean stop) or another took them over.
            return EngineHealth("none", owner, None, ())
        return EngineHealth("none", None, None, ())

    async def count_jobs(
        self, text: str | None = None, statuses: Iterable[str] | None = None
    ) -> int:
        stmt = self._filter(select(func.count()).select_from(job_t), text, statuses)
        return (await self._rows(stmt))[0][0]

    async def job_ids(
        self, text: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[int]:
        """The ids of every job the list shows with this filter (the console's "mark
        all"): one query, no aggregates."""
        stmt = self._filter(select(job_t.c.id).select_from(job_t), text, statuses)
        return [r.id for r in await self._rows(stmt)]

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
        order = SORTS.get(sort)
        if order is None:
            raise ValueError(f"unknown sort {sort!r} (known: {', '.join(SORTS)})")
        keys = (order.desc(), job_t.c.id.desc()) if descending else (order.asc(), job_t.c.id.asc())
        stmt = self._filter(_JOBS, text, statuses).order_by(*keys).limit(limit).offset(offset)
        rows = await self._rows(stmt)
        agg = await self._aggregates([r.id for r in rows])
        stuck = await self.stuck_for([r.id for r in rows])
        total = await self.count_jobs(text, statuses) if with_total else len(rows)
        return JobPage(
            [self._out(_job(r, agg.get(r.id), stuck.get(r.id))) for r in rows], total, offset
        )

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
        order = SORTS[sort]
        keys = (order.desc(), job_t.c.id.desc()) if descending else (order.asc(), job_t.c.id.asc())
        numbered = self._filter(
            select(job_t.c.id, over(func.row_number(), order_by=keys).label("rn")),
            text,
            statuses,
        ).subquery()
        rows = await self._rows(select(numbered.c.rn).where(numbered.c.id == job_id))
        return int(rows[0].rn) - 1 if rows else None

    async def status_counts(self) -> dict[str, int]:
        rows = await self._rows(select(job_t.c.status, func.count()).group_by(job_t.c.status))
        return {status: n for status, n in rows}

    async def job(self, job_id: int, now: float | None = None) -> JobView | None:
        rows = await self._rows(_JOBS.where(job_t.c.id == job_id))
        if not rows:
            return None
        stuck = (await self.stuck_for([job_id], now)).get(job_id)
        return self._out(_job(rows[0], (await self._aggregates([job_id])).get(job_id), stuck))

    async def job_detail(self, job_id: int, *, event_limit: int = 500) -> JobDetail | None:
        job = await self.job(job_id)
        if job is None:
            return None
        tasks = [
            self._out(_task(r, job.recipe_path))
            for r in await self._rows(
                select(*_TASK_COLS, task_t.c.params)
                .where(task_t.c.job_id == job_id)
                .order_by(task_t.c.seq, task_t.c.id)
            )
        ]
        child_rows = await self._rows(_JOBS.where(job_t.c.parent_id == job_id).order_by(job_t.c.id))
        agg = await self._aggregates([r.id for r in child_rows])
        child_stuck = await self.stuck_for([r.id for r in child_rows])
        events = [
            self._out(EventView(**_picked(r, _EVENT_COLS)))
            for r in await self._rows(
                select(*_EVENT_COLS)
                .where(event_t.c.job_id == job_id)
                .order_by(event_t.c.id.desc())
                .limit(event_limit)
            )
        ]
        events.reverse()
        children = [self._out(_job(r, agg.get(r.id), child_stuck.get(r.id))) for r in child_rows]
        return JobDetail(job, tasks, children, events)

    async def servers(self, now: float | None = None) -> list[ServerView]:
        now = time.time() if now is None else now
        ttl = self._lease_seconds
        if ttl is None:
            rows = await self._rows(_SETTING, {"key": "setting.lease_seconds"})
            ttl = min(float(rows[0].value), MAXIMUM_SECONDS["lease_seconds"]) if rows else 5.0
        in_use = (
            select(func.count())
            .where(
                task_t.c.server == server_t.c.name,
                task_t.c.status.in_(["executing", "canceling", "aborting"]),
            )
            .scalar_subquery()
            .label("in_use")
        )
        rows = await self._rows(select(*_SERVER_COLS, in_use).order_by(server_t.c.name))
        out = []
        for r in rows:
            fields = _picked(r, _SERVER_COLS)
            live = bool(r.lease_owner) and (r.heartbeat_at or 0) > now - ttl
            if not live:
                fields["pid"] = None  # a process no engine vouches for is not shown as its
            out.append(self._out(ServerView(**fields, in_use=r.in_use, live=live)))
        return out

    async def live_engines(self, now: float | None = None) -> dict[str, list[str]]:
        """Engines holding a live lease: owner -> server names."""
        out: dict[str, list[str]] = {}
        for s in await self.servers(now):
            if s.live and s.lease_owner:
                out.setdefault(s.lease_owner, []).append(s.name)
        return out
