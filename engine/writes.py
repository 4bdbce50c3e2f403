"""Every status write, as set-based statements checked against the transition table.

A status changes only through ``move_tasks`` or ``move_job``: the UPDATE's WHERE
clause admits only the source statuses the table allows for the target, so an
illegal transition writes nothing, and the event row for each change is inserted
from the same WHERE clause in the same transaction.

Callers pass a WHERE clause built from the tables (``task.c.job_id == 7``) and the
extra values to set as a dict of column name to value or expression, never SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from engine.dialect import in_list
from engine.statuses import (
    TASK_TERMINAL,
    job_sources,
    job_status_after,
    task_sources,
)
from engine.tables import event, job, task, taskdep

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
_ADD_EVENT = insert(event).values(
    at=bindparam("at"),
    job_id=bindparam("job_id"),
    task_id=bindparam("task_id"),
    server=bindparam("server"),
    kind=bindparam("kind"),
    actor=bindparam("actor"),
    reason=bindparam("reason"),
)


def move_tasks(
    conn: Connection,
    target: str,
    where: ColumnElement[bool],
    *,
    at: float,
    actor: str,
    reason: str | None = None,
    values: Mapping[str, Any] | None = None,
    event_server: str | None = None,
) -> int:
    """Move the tasks matching ``where`` whose status may reach ``target``; returns the count.

    ``values``: the other columns to set with the status, by name.
    """
    cond = and_(where, task.c.status.in_(sorted(task_sources(target))))
    conn.execute(
        insert(event).from_select(
            _EVENT_COLS,
            select(
                literal(at, Float),
                task.c.job_id,
                task.c.id,
                func.coalesce(literal(event_server, String), task.c.server),
                literal("status", String),
                task.c.status,
                literal(target, String),
                literal(actor, String),
                literal(reason, String),
            ).where(cond),
        )
    )
    res = conn.execute(update(task).where(cond).values(status=target, **(values or {})))
    return res.rowcount


def move_job(
    conn: Connection,
    job_id: int,
    target: str,
    *,
    at: float,
    actor: str,
    reason: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """Move one job to ``target`` if the table allows it from its current status."""
    cond = and_(job.c.id == job_id, job.c.status.in_(sorted(job_sources(target))))
    conn.execute(
        insert(event).from_select(
            _EVENT_COLS,
            select(
                literal(at, Float),
                job.c.id,
                null(),
                null(),
                literal("status", String),
                job.c.status,
                literal(target, String),
                literal(actor, String),
                literal(reason, String),
            ).where(cond),
        )
    )
    res = conn.execute(update(job).where(cond).values(status=target, **(values or {})))
    return res.rowcount == 1


def add_event(
    conn: Connection,
    *,
    at: float,
    actor: str,
    kind: str,
    reason: str | None = None,
    job_id: int | None = None,
    task_id: int | None = None,
    server: str | None = None,
) -> None:
    conn.execute(
        _ADD_EVENT,
        {
            "at": at,
            "job_id": job_id,
            "task_id": task_id,
            "server": server,
            "kind": kind,
            "actor": actor,
            "reason": reason,
        },
    )


def release_dependents(conn: Connection, ended_ids: Sequence[int], *, at: float) -> int:
    """Waiting tasks whose every dependency has Ended become Ready."""
    if not ended_ids:
        return 0
    dep, t2 = taskdep.alias("d"), task.alias("t2")
    unmet = exists().where(
        dep.c.task_id == task.c.id, t2.c.id == dep.c.dep_id, t2.c.status != "ended"
    )
    return move_tasks(
        conn,
        "ready",
        and_(
            task.c.id.in_(select(taskdep.c.task_id).where(in_list(taskdep.c.dep_id, ended_ids))),
            task.c.status == "waiting",
            ~unmet,
        ),
        at=at,
        actor="engine",
        reason="dependencies ended",
    )


def skip_dependents(conn: Connection, failed_ids: Sequence[int], *, at: float) -> int:
    """Every task downstream of a task that did not end can never run: Didn't run."""
    if not failed_ids:
        return 0
    down = (
        select(taskdep.c.task_id.label("id"))
        .where(in_list(taskdep.c.dep_id, failed_ids))
        .cte("down", recursive=True)
    )
    d = taskdep.alias("d")
    down = down.union(select(d.c.task_id).join(down, d.c.dep_id == down.c.id))
    return move_tasks(
        conn,
        "didnt_run",
        task.c.id.in_(select(down.c.id)),
        at=at,
        actor="engine",
        reason="a task it depends on did not end",
        values={"ended_at": at},
    )


_STARTED_JOBS = select(job.c.id, job.c.status).where(
    in_list(job.c.id, "ids"), job.c.status.in_(["executing", "canceling"])
)
_TASK_COUNTS = (
    select(task.c.job_id, task.c.status, func.count().label("n"))
    .where(in_list(task.c.job_id, "ids"))
    .group_by(task.c.job_id, task.c.status)
)
_FIRST_FAILURE = (
    select(task.c.name, func.coalesce(task.c.error, task.c.status).label("why"))
    .where(
        task.c.job_id == bindparam("job_id", type_=Integer),
        task.c.status.in_(["error", "aborted", "canceled"]),
    )
    .order_by(task.c.id)
    .limit(1)
)


def finalize_jobs(conn: Connection, job_ids: Iterable[int], *, at: float) -> list[int]:
    """Finish the started jobs among ``job_ids`` whose tasks allow it; returns those moved."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    jobs = conn.execute(_STARTED_JOBS, {"ids": ids}).all()
    if not jobs:
        return []
    counts: dict[int, dict[str, int]] = {}
    for r in conn.execute(_TASK_COUNTS, {"ids": [j.id for j in jobs]}):
        counts.setdefault(r.job_id, {})[r.status] = r.n
    moved = []
    for j in jobs:
        target = job_status_after(j.status, counts.get(j.id, {}))
        if target is None:
            continue
        error = None
        if target == "error":
            row = conn.execute(_FIRST_FAILURE, {"job_id": j.id}).first()
            error = f"task {row.name}: {row.why}" if row else "a task did not end"
        if move_job(
            conn,
            j.id,
            target,
            at=at,
            actor="engine",
            reason=error,
            values={"ended_at": at, "error": func.coalesce(job.c.error, literal(error, String))},
        ):
            moved.append(j.id)
    return moved


def after_task_changes(
    conn: Connection, changed: dict[int, str], job_ids: Iterable[int], *, at: float
) -> list[int]:
    """Follow-up of task moves: release or skip dependents, then finish jobs."""
    ended = [t for t, s in changed.items() if s == "ended"]
    failed = [t for t, s in changed.items() if s in TASK_TERMINAL and s != "ended"]
    release_dependents(conn, ended, at=at)
    skip_dependents(conn, failed, at=at)
    return finalize_jobs(conn, job_ids, at=at)
