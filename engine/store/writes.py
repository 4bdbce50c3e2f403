"""Every status write, as set-based statements checked against the transition table.

A status changes only through a ``TaskMove`` or a ``JobMove``: the UPDATE's WHERE
clause admits only the source statuses the table allows for the target, so an
illegal transition writes nothing, and the event row for each change is inserted
from the same WHERE clause in the same transaction. The engine's ticks run theirs
directly; the operators' requests by key (``engine.flows.base.move``).

Callers pass a WHERE clause built from the tables (``task.c.job_id == 7``) and the
extra values to set as a dict of column name to value or expression, never SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    Connection,
    Float,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from engine.core.statuses import (
    TASK_FAILED,
    TASK_NOT_STARTED,
    TASK_RUNNING,
    TASK_TERMINAL,
    job_sources,
    task_sources,
)
from engine.flows import base as flows
from engine.sql import keys
from engine.store.dialect import in_list, one_of
from engine.store.prepared import Prepared, PreparedSql
from engine.store.tables import event, job, task, taskdep

_EVENT_COLS = [
    event.c.at,
    event.c.job_id,
    event.c.task_id,
    event.c.server,
    event.c.kind,
    event.c.from_status,
    event.c.to_status,
    event.c.actor,
    event.c.reason,
]

# Prebuilt: one event row, its fields bound by name.
_ADD_EVENT = Prepared(
    insert(event).values(
        at=bindparam("at", type_=Float),
        job_id=bindparam("job_id", type_=Integer),
        task_id=bindparam("task_id", type_=Integer),
        server=bindparam("server", type_=String),
        kind=bindparam("kind", type_=String),
        actor=bindparam("actor", type_=String),
        reason=bindparam("reason", type_=String),
    )
)

# Every move binds these: when, who and why, written with the status on its event row.
AT = bindparam("m_at", type_=Float)
_ACTOR = bindparam("m_actor", type_=String)
_REASON = bindparam("m_reason", type_=String)


class _Move:
    """A status move of the rows of ``table`` matching ``where`` (the source statuses
    the transition table allows for ``target`` added), with the event row of each.

    The event rows are inserted from the same WHERE clause, then the rows are updated;
    no other writer can change a row in between: writers take turns (SQLite's BEGIN
    IMMEDIATE; on PostgreSQL the lock every write transaction takes, ``Store.write``).
    Both statements are compiled once per dialect and run on the driver
    (``engine.store.prepared``).
    """

    def __init__(
        self,
        table: Table,
        target: str,
        sources: Iterable[str],
        where: ColumnElement[bool],
        event_row: Sequence[Any],
        values: Mapping[str, Any],
    ) -> None:
        cond = and_(where, one_of(table.c.status, sources))
        events = insert(event).from_select(_EVENT_COLS, select(*event_row).where(cond))
        moves = update(table).where(cond).values(status=target, **values)
        self._events, self._update = Prepared(events), Prepared(moves)
        # PostgreSQL: both in one statement (one round trip): the event rows inserted
        # return the rows' ids, which the update moves. Its parts see one snapshot, so
        # they are the rows the WHERE clause matched, as in the two statements.
        moved = event.c.task_id if table is task else event.c.job_id
        written = events.returning(moved).cte("moved_events")
        self._both = Prepared(
            update(table)
            .where(table.c.id.in_(select(written.c[moved.name])))
            .values(status=target, **values)
        )

    def __call__(
        self, conn: Connection, *, at: float, actor: str, reason: str | None, **params: Any
    ) -> int:
        return self._run(conn, {**params, "m_at": at, "m_actor": actor, "m_reason": reason})

    def each(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], *, at: float, actor: str
    ) -> int:
        """The same move for several parameter sets at once (one ``executemany`` of
        each statement), each with its own ``reason``: 100 canceled runs, each with its
        own message, cost two driver calls, not two hundred statements."""
        ps = [{**r, "m_at": at, "m_actor": actor, "m_reason": r.get("reason")} for r in rows]
        return self._run(conn, ps) if ps else 0

    def _run(self, conn: Connection, p: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        if conn.dialect.name == "postgresql":
            return self._both(conn, p).rowcount
        self._events(conn, p)
        return self._update(conn, p).rowcount


def statement_keys(items: Mapping[str, Prepared | _Move]) -> dict[str, Prepared]:
    """Statements by key for ``engine.flows.base``: a move's two under ``KEY/events`` and
    ``KEY/update`` (the order ``flows.move`` runs them in, as ``_Move`` does), and on
    PostgreSQL both in one under ``KEY/both``."""
    out: dict[str, Prepared] = {}
    for key, item in items.items():
        if isinstance(item, _Move):
            out[f"{key}/events"], out[f"{key}/update"] = item._events, item._update
            out[f"{key}/both"] = item._both
        else:
            out[key] = item
    return out


class TaskMove(_Move):
    """Tasks matching ``where`` move to ``target``; ``values``: other columns to set,
    by name (a value, an expression, or a ``bindparam`` given at the call).
    ``event_server``: the server named on the event rows (default: the task's)."""

    def __init__(
        self,
        target: str,
        where: ColumnElement[bool],
        values: Mapping[str, Any] | None = None,
        *,
        event_server: ColumnElement[Any] | None = None,
    ) -> None:
        server_of = task.c.server if event_server is None else event_server
        self.target, self.values, self.event_server = target, dict(values or {}), event_server
        row = [
            AT,
            task.c.job_id,
            task.c.id,
            server_of,
            literal("status", String),
            task.c.status,
            literal(target, String),
            _ACTOR,
            _REASON,
        ]
        super().__init__(task, target, task_sources(target), where, row, values or {})

    def of_rows(self, rows: CTE, *columns: ColumnElement[Any]) -> Select:
        """PostgreSQL: this move of the tasks ``rows`` selects (a CTE of their ``id``,
        ``job_id``, ``status`` and ``server``, locked by it), their event rows and the
        moves in one statement, which returns ``columns``. The CTE must admit only
        source statuses the transition table allows (``task_sources``)."""
        server_of = rows.c.server if self.event_server is None else self.event_server
        row = [
            AT,
            rows.c.job_id,
            rows.c.id,
            server_of,
            literal("status", String),
            rows.c.status,
            literal(self.target, String),
            _ACTOR,
            _REASON,
        ]
        events = insert(event).from_select(_EVENT_COLS, select(*row)).cte("moved_events")
        moves = (
            update(task)
            .where(task.c.id == rows.c.id)
            .values(status=self.target, **self.values)
            .cte("moved")
        )
        return select(*columns).add_cte(events, moves)


class JobMove(_Move):
    """The job ``:job_id`` (or the jobs ``where`` names) moves to ``target`` if the table
    allows it from its status."""

    def __init__(
        self,
        target: str,
        values: Mapping[str, Any] | None = None,
        *,
        where: ColumnElement[bool] | None = None,
    ) -> None:
        row = [
            AT,
            job.c.id,
            null(),
            null(),
            literal("status", String),
            job.c.status,
            literal(target, String),
            _ACTOR,
            _REASON,
        ]
        if where is None:
            where = job.c.id == bindparam("job_id", type_=Integer)
        super().__init__(job, target, job_sources(target), where, row, values or {})


def add_event(conn: Connection, **fields: Any) -> None:
    """An event row (``engine.flows.base.add_event``: at, actor, kind, reason, job_id, task_id,
    server) in ``conn``'s transaction."""
    flows.add_event(PreparedSql(conn, STATEMENTS), **fields)


_DEP = taskdep.alias("d")
_T2 = task.alias("t2")
_HAS_DEPENDENTS = Prepared(
    select(taskdep.c.task_id).where(in_list(taskdep.c.dep_id, "ids")).limit(1)
)
_RELEASE = TaskMove(
    "ready",
    and_(
        task.c.id.in_(select(taskdep.c.task_id).where(in_list(taskdep.c.dep_id, "ids"))),
        task.c.status == "waiting",
        ~exists().where(
            _DEP.c.task_id == task.c.id, _T2.c.id == _DEP.c.dep_id, _T2.c.status != "ended"
        ),
    ),
)


def release_dependents(conn: Connection, ended_ids: Sequence[int], *, at: float) -> int:
    """Waiting tasks whose every dependency has Ended become Ready."""
    # Most ended tasks have no dependents: one indexed probe instead of the move.
    if not ended_ids or not _HAS_DEPENDENTS(conn, {"ids": list(ended_ids)}).first():
        return 0
    return _RELEASE(conn, at=at, actor="engine", reason="dependencies ended", ids=list(ended_ids))


def _downstream() -> ColumnElement[bool]:
    down = (
        select(taskdep.c.task_id.label("id"))
        .where(in_list(taskdep.c.dep_id, "ids"))
        .cte("down", recursive=True)
    )
    d = taskdep.alias("d")
    down = down.union(select(d.c.task_id).join(down, d.c.dep_id == down.c.id))
    return task.c.id.in_(select(down.c.id))


_SKIP = TaskMove("didnt_run", _downstream(), {"ended_at": AT})


def skip_dependents(conn: Connection, failed_ids: Sequence[int], *, at: float) -> int:
    """Every task downstream of a task that did not end can never run: Didn't run."""
    if not failed_ids or not _HAS_DEPENDENTS(conn, {"ids": list(failed_ids)}).first():
        return 0
    return _SKIP(
        conn,
        at=at,
        actor="engine",
        reason="a task it depends on did not end",
        ids=list(failed_ids),
    )


def _busy(statuses: Iterable[str]) -> Any:
    return exists().where(task.c.job_id == job.c.id, one_of(task.c.status, statuses))


# Started jobs that may be finishing: nothing running, and for an Executing job nothing
# left to start; and whether a task of it failed. Indexed probes per job
# (ix_task_job_status), where counting its tasks would read every one of them: 1-1.6 ms
# for a job of 10,000 tasks, in the tick that settles its cancel.
_FINISHING_JOBS = Prepared(
    select(job.c.id, job.c.status, _busy(TASK_FAILED).label("failed")).where(
        in_list(job.c.id, "ids"),
        one_of(job.c.status, ["executing", "canceling"]),
        ~_busy(TASK_RUNNING),
        or_(job.c.status == "canceling", ~_busy(TASK_NOT_STARTED)),
    )
)
_FIRST_FAILURE = Prepared(
    select(task.c.name, func.coalesce(task.c.error, task.c.status).label("why"))
    .where(
        task.c.job_id == bindparam("job_id", type_=Integer),
        one_of(task.c.status, ["error", "aborted", "canceled"]),
    )
    .order_by(task.c.id)
    .limit(1)
)
_FINISH = {
    target: JobMove(
        target,
        {
            "ended_at": AT,
            "error": func.coalesce(job.c.error, bindparam("error", type_=String)),
        },
    )
    for target in ("ended", "error", "canceled")
}


# The statements of the flows (``engine.flows.base``) defined here, by key.
STATEMENTS = statement_keys(
    {
        keys.EVENT: _ADD_EVENT,
        keys.FINALIZE_FINISHING: _FINISHING_JOBS,
        keys.FINALIZE_FIRST_FAILURE: _FIRST_FAILURE,
        **{keys.FINALIZE_MOVES[target]: m for target, m in _FINISH.items()},
    }
)


def finalize_jobs(conn: Connection, job_ids: Iterable[int], *, at: float) -> list[int]:
    """Finish the started jobs among ``job_ids`` whose tasks allow it; returns those moved."""
    return flows.finalize_jobs(PreparedSql(conn, STATEMENTS), job_ids, at=at)


def after_task_changes(
    conn: Connection, changed: dict[int, str], job_ids: Iterable[int], *, at: float
) -> list[int]:
    """Follow-up of task moves: release or skip dependents, then finish jobs."""
    ended = [t for t, s in changed.items() if s == "ended"]
    failed = [t for t, s in changed.items() if s in TASK_TERMINAL and s != "ended"]
    release_dependents(conn, ended, at=at)
    skip_dependents(conn, failed, at=at)
    return finalize_jobs(conn, job_ids, at=at)
