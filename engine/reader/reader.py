"""Reading jobs, tasks, servers and events: the public query API.

Async, so the console never blocks the event loop it shares with the engine. The job
list is read a window at a time (``list_jobs(offset, limit)``) with task aggregates for
just those rows, which is what keeps a 100,000-job database fast.

No SQLAlchemy here: the statements are built from the tables in
``engine.store.read_statements`` and run by name. On SQLite they run as their rendered text
through the standard library's ``sqlite3`` (``engine.sql.light``), so a command line
reads without importing SQLModel; on PostgreSQL, and for a SQLite file the light path
cannot open as it is, through the process's gateway (``engine.store.db``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from engine.core.format import clock
from engine.core.safe_text import safe_block, safe_line
from engine.core.setting_values import DEFAULTS, bounded
from engine.core.statuses import TASK_RUNNING
from engine.core.views import (
    EngineHealth,
    EventView,
    JobDetail,
    JobPage,
    JobView,
    ServerView,
    StoppingTask,
    StuckJob,
    TaskView,
)
from engine.sql.keys import SORTS, variant_key
from engine.sql.light import NeedsGateway

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


def _picked(row: dict[str, Any], view: type) -> dict[str, Any]:
    """The view's fields a row holds: the statements select its columns by name."""
    return {f.name: row[f.name] for f in fields(view) if f.name in row}


def _job(
    row: dict[str, Any],
    agg: tuple[int, int, str | None, int, int] | None = None,
    stuck_for: float | None = None,
) -> JobView:
    values = _picked(row, JobView)
    values["system"], values["orphaned"] = bool(values["system"]), bool(values["orphaned"])
    total, done, servers, didnt_run, running = agg or (0, 0, None, 0, 0)
    return JobView(
        **values,
        tasks_total=total,
        tasks_done=done,
        tasks_didnt_run=didnt_run,
        tasks_running=running,
        servers=tuple(sorted(set(servers.split(",")))) if servers else (),
        stuck_for=stuck_for,
    )


def _task(row: dict[str, Any], recipe_path: str | None) -> TaskView:
    values = _picked(row, TaskView)
    how = None
    if values["status"] in TASK_RUNNING:
        # Only for a running task: it loads every action (and asyncio with them).
        from engine.flows.stopping import stops_by

        how = stops_by(values["action"], row["params"], recipe_path)
    return TaskView(**values, stops_by=how)


def _text_filter(text: str | None) -> tuple[str, dict[str, Any]]:
    """The shape of the list's text filter (``engine.store.read_statements``) and its values:
    digits match a job id or a name; words a name, a user or the start of a status."""
    t = (text or "").strip() if text else ""
    if not t:
        return "none", {}
    if t.isdigit():
        return "digits", {"text_id": int(t), "pattern": f"%{t}%"}
    return "words", {"pattern": f"%{t}%", "prefix": f"{t}%"}


def _began(row: dict[str, Any], now: float) -> float:
    """When a stopping task began winding down; with no event (a row written by hand),
    when it started."""
    since, started = row["since"], row["started_at"]
    return since if since is not None else (started if started is not None else now)


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


V = TypeVar("V")


def terminal_safe(view: V) -> V:
    """A view whose text fields are safe to draw on a terminal (``engine.core.safe_text``):
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

    ``inline``: run each read on the calling thread, synchronously (a command line: its
    loop has nothing else to do, and its coroutines then never wait, so they need no
    event loop at all). Otherwise SQLite reads run on a thread of the Reader's own, one
    at a time, so the event loop it shares with the engine never waits on the disk.
    """

    def __init__(
        self,
        path: str,
        *,
        lease_seconds: float | None = None,
        terminal_text: bool = False,
        inline: bool = False,
        gateway: bool = False,
    ) -> None:
        from engine.sql.sqlite_file import is_postgresql, normalize_db

        self.path = path
        self._db = normalize_db(path)
        self._lease_seconds = lease_seconds
        self._terminal_text = terminal_text
        self._inline = inline
        self._postgresql = is_postgresql(self._db)
        # Reads run their rendered text unless asked (``gateway``) or unable to; on
        # PostgreSQL, only the command line's (a console reads through its async engine).
        self._light_ok = not gateway and (inline or not self._postgresql)
        self._light: Any = None
        self._thread: ThreadPoolExecutor | None = None
        self._store: Any = None
        self._engine: Any = None

    def _out(self, view: V) -> V:
        return terminal_safe(view) if self._terminal_text else view

    @property
    def store(self) -> Any:
        """The process's gateway for this database (``engine.store.db.shared_store``): the
        schema created or checked when it opened; read-only (and never creating
        anything) for a user who may not write it. Opened on first use."""
        if self._store is None:
            from engine.store.db import shared_store

            self._store = shared_store(self._db, readonly=None)
        return self._store

    @property
    def engine(self) -> Any:
        """The gateway's async reader, taken on first use on the loop that reads."""
        if self._engine is None:
            self._engine = self.store.async_engine()
        return self._engine

    async def close(self) -> None:
        if self._light is not None:
            light, self._light = self._light, None
            if self._thread is not None:
                import asyncio

                await asyncio.get_running_loop().run_in_executor(self._thread, light.close)
            else:
                light.close()
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None
        if self._engine is not None:
            await self.store.release_async(self._engine)
            self._engine = None
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def _light_rows(self, key: str, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The rows by the light path, or None when it cannot read this database."""
        if self._light is None:
            if not self._light_ok:
                return None
            from engine.sql.pg_light import open_light

            try:
                self._light = open_light(self._db)
            except NeedsGateway:
                self._light_ok = False
                return None
        return self._light.rows(key, params)

    async def _rows(
        self, name: str, params: dict[str, Any] | None = None, **variant: Any
    ) -> list[dict[str, Any]]:
        """The rows of the statement ``name`` (its ``variant``), as dicts by column."""
        key = variant_key(name, **variant)
        params = params or {}
        if self._inline:
            rows = self._light_rows(key, params)
            if rows is None:
                rows = self._gateway_rows(key, params)
            return rows
        if self._light_ok:
            import asyncio

            if self._thread is None:
                from concurrent.futures import ThreadPoolExecutor

                self._thread = ThreadPoolExecutor(1, thread_name_prefix="batchdeck-reads")
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(self._thread, self._light_rows, key, params)
            if rows is not None:
                return rows
        from engine.store.read_statements import statements

        async with self.engine.connect() as conn:
            res = await conn.execute(statements()[key], params)
            return [dict(r._mapping) for r in res]

    def _gateway_rows(self, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The statement itself, through the gateway's synchronous reader."""
        from engine.store.read_statements import statements

        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(statements()[key], params)]

    async def _aggregates(self, ids: list[int]) -> dict[int, tuple[int, int, str | None, int, int]]:
        if not ids:
            return {}
        rows = await self._rows("aggregates", {"ids": ids})
        return {
            r["job_id"]: (
                r["total"],
                r["done"] or 0,
                r["servers"],
                r["didnt_run"] or 0,
                r["running"] or 0,
            )
            for r in rows
        }

    async def _filtered(
        self,
        name: str,
        text: str | None,
        statuses: Iterable[str] | None,
        params: dict[str, Any] | None = None,
        **variant: Any,
    ) -> list[dict[str, Any]]:
        kind, values = _text_filter(text)
        statuses = list(statuses or [])
        if statuses:
            values["statuses"] = statuses
        return await self._rows(
            name, {**values, **(params or {})}, text=kind, statuses=bool(statuses), **variant
        )

    async def _setting(self, key: str) -> str:
        rows = await self._rows("setting", {"key": f"setting.{key}"})
        return rows[0]["value"] if rows else DEFAULTS[key]

    async def lease_seconds(self) -> float:
        """How long a server's lease lasts without a beat (this Reader's own, if given)."""
        if self._lease_seconds is not None:
            return float(self._lease_seconds)
        return bounded("lease_seconds", await self._setting("lease_seconds"))

    async def stuck_seconds(self) -> float:
        return float(await self._setting("stuck_seconds"))

    async def managers(self) -> str:
        """The ``managers`` setting as written (empty: everyone is a manager)."""
        return await self._setting("managers")

    async def stopping_tasks(
        self, job_ids: list[int] | None = None, now: float | None = None
    ) -> list[StoppingTask]:
        """Tasks Canceling or Aborting (of ``job_ids``, or all), longest first."""
        now = time.time() if now is None else now
        if job_ids is None:
            rows = await self._rows("stopping_tasks")
        elif not job_ids:
            return []
        else:
            rows = await self._rows("stopping_tasks_of", {"ids": job_ids})
        if not rows:
            return []
        from engine.flows.stopping import stops_by

        ids = sorted({r["job_id"] for r in rows})
        paths = {r["id"]: r["recipe_path"] for r in await self._rows("recipe_paths", {"ids": ids})}
        out = []
        for r in rows:
            began = _began(r, now)
            out.append(
                StoppingTask(
                    r["job_id"],
                    r["id"],
                    r["name"],
                    r["action"],
                    r["status"],
                    r["server"],
                    began,
                    r["status_since"] if r["status_since"] is not None else began,
                    stops_by(r["action"], r["params"], paths.get(r["job_id"])),
                )
            )
        out.sort(key=lambda t: (t.since, t.id))
        return out

    async def stuck_for(
        self, job_ids: list[int] | None = None, now: float | None = None
    ) -> dict[int, float]:
        """Stuck jobs (of ``job_ids``, or all) -> seconds winding down."""
        now = time.time() if now is None else now
        tasks = await self.stopping_tasks(job_ids, now)
        if not tasks:
            return {}
        limit = await self.stuck_seconds()
        out: dict[int, float] = {}
        for t in tasks:
            age = now - t.since
            if age > limit:
                out[t.job_id] = max(out.get(t.job_id, 0.0), age)
        return out

    async def stuck_ages(self, now: float | None = None) -> dict[int, float]:
        """Every stuck job -> seconds winding down: ``stuck_for`` without how each task
        stops (which imports the actions), for ``batchdeck health`` and the metrics."""
        now = time.time() if now is None else now
        limit = await self.stuck_seconds()
        out: dict[int, float] = {}
        for r in await self._rows("stopping_tasks"):
            age = now - _began(r, now)
            if age > limit:
                out[r["job_id"]] = max(out.get(r["job_id"], 0.0), age)
        return out

    async def stuck_jobs(self, now: float | None = None) -> list[StuckJob]:
        """Every stuck job, oldest first, with the banner naming the next step."""
        now = time.time() if now is None else now
        limit = await self.stuck_seconds()
        enhanced_on = (await self._setting("enhanced_abort")) == "on"
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
        enhanced_on = (await self._setting("enhanced_abort")) == "on"
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
        for r in await self._rows("restarts", {"ids": job_ids}):
            out.setdefault(r["restart_job_id"], {})[r["name"]] = (r["status"], r["drain_deadline"])
        return out

    async def jobs_by_ids(self, ids: list[int], now: float | None = None) -> list[JobView]:
        """These jobs (newest first), with their aggregates and stuck_for."""
        if not ids:
            return []
        rows = await self._rows("jobs_by_ids", {"ids": ids})
        return await self._jobs(rows, now)

    async def _jobs(self, rows: list[dict[str, Any]], now: float | None = None) -> list[JobView]:
        """Job rows as views, with their task aggregates and how long each is stuck."""
        ids = [r["id"] for r in rows]
        agg = await self._aggregates(ids)
        stuck = await self.stuck_for(ids, now)
        return [self._out(_job(r, agg.get(r["id"]), stuck.get(r["id"]))) for r in rows]

    async def engine_health(
        self, owner: str | None = None, now: float | None = None
    ) -> EngineHealth:
        """Whether an engine serves this database (``owner``: the one this console
        attached to), from the server leases: "serving", "gone" (its lease went stale
        without a clean stop) or "none"."""
        now = time.time() if now is None else now
        ttl = await self.lease_seconds()
        if owner:
            rows = await self._rows("leases_of", {"owner": owner})
        else:
            rows = await self._rows("leases")
        rows = self._on_clock(rows, await self._clock_shift(now))
        live = [r for r in rows if (r["heartbeat_at"] or 0) > now - ttl]
        if live:
            last = max(r["heartbeat_at"] for r in live)
            return EngineHealth(
                "serving", live[0]["lease_owner"], last, tuple(r["name"] for r in live)
            )
        if rows:
            last = max((r["heartbeat_at"] or 0) for r in rows) or None
            return EngineHealth(
                "gone", rows[0]["lease_owner"], last, tuple(r["name"] for r in rows)
            )
        if owner:
            # Our engine released its leases (a clean stop) or another took them over.
            return EngineHealth("none", owner, None, ())
        return EngineHealth("none", None, None, ())

    async def count_jobs(
        self, text: str | None = None, statuses: Iterable[str] | None = None
    ) -> int:
        return (await self._filtered("count_jobs", text, statuses))[0]["n"]

    async def job_ids(
        self, text: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[int]:
        """The ids of every job the list shows with this filter (the console's "mark
        all"): one query, no aggregates."""
        return [r["id"] for r in await self._filtered("job_ids", text, statuses)]

    @staticmethod
    def _sort(sort: str) -> str:
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r} (known: {', '.join(SORTS)})")
        return sort

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
        statuses = list(statuses or [])
        rows = await self._filtered(
            "list_jobs",
            text,
            statuses,
            {"limit": limit, "offset": offset},
            sort=self._sort(sort),
            descending=descending,
        )
        jobs = await self._jobs(rows)
        total = await self.count_jobs(text, statuses) if with_total else len(rows)
        return JobPage(jobs, total, offset)

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
        rows = await self._filtered(
            "job_position",
            text,
            statuses,
            {"job_id": job_id},
            sort=self._sort(sort),
            descending=descending,
        )
        return int(rows[0]["rn"]) - 1 if rows else None

    async def status_counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in await self._rows("status_counts")}

    async def job(self, job_id: int, now: float | None = None) -> JobView | None:
        rows = await self._rows("job", {"job_id": job_id})
        if not rows:
            return None
        return (await self._jobs(rows, now))[0]

    async def job_detail(self, job_id: int, *, event_limit: int = 500) -> JobDetail | None:
        job = await self.job(job_id)
        if job is None:
            return None
        tasks = [
            self._out(_task(r, job.recipe_path))
            for r in await self._rows("job_tasks", {"job_id": job_id})
        ]
        children = await self._jobs(await self._rows("job_children", {"job_id": job_id}))
        events = [
            self._out(EventView(**_picked(r, EventView)))
            for r in await self._rows("job_events", {"job_id": job_id, "limit": event_limit})
        ]
        events.reverse()
        return JobDetail(job, tasks, children, events)

    async def _clock_shift(self, now: float) -> float:
        """How far ``now`` (this host's clock) is ahead of the clock leases are written
        in: the database's on PostgreSQL, where engines on several hosts renew them; 0 on
        SQLite (one host, and tests inject a fixed clock)."""
        if not self._postgresql:
            return 0.0
        if self._inline and self._light_rows("schema_version", {}) is not None:
            return now - self._light.db_now(now)
        from engine.store.dialect import db_now

        if self._inline:
            with self.store.read() as conn:
                return now - db_now(conn, now)
        async with self.engine.connect() as conn:
            return now - await conn.run_sync(lambda c: db_now(c, now))

    @staticmethod
    def _on_clock(rows: list[dict[str, Any]], shift: float) -> list[dict[str, Any]]:
        """Lease rows with their heartbeats moved onto this host's clock."""
        if not shift:
            return rows
        return [
            {**r, "heartbeat_at": r["heartbeat_at"] + shift}
            if r.get("heartbeat_at") is not None
            else r
            for r in rows
        ]

    async def servers(self, now: float | None = None) -> list[ServerView]:
        now = time.time() if now is None else now
        ttl = await self.lease_seconds()
        out = []
        for r in self._on_clock(await self._rows("servers"), await self._clock_shift(now)):
            values = _picked(r, ServerView)
            live = bool(r["lease_owner"]) and (r["heartbeat_at"] or 0) > now - ttl
            if not live:
                values["pid"] = None  # a process no engine vouches for is not shown as its
            out.append(self._out(ServerView(**values, live=live)))
        return out

    async def live_engines(self, now: float | None = None) -> dict[str, list[str]]:
        """Engines holding a live lease: owner -> server names."""
        out: dict[str, list[str]] = {}
        for s in await self.servers(now):
            if s.live and s.lease_owner:
                out.setdefault(s.lease_owner, []).append(s.name)
        return out
