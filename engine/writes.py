"""Every status write, as set-based SQL checked against the transition table.

A status changes only through ``move_tasks`` or ``move_job``: the UPDATE's WHERE
clause admits only the source statuses the table allows for the target, so an
illegal transition writes nothing, and the event row for each change is inserted
from the same WHERE clause in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection

from engine.statuses import (
    TASK_TERMINAL,
    job_sources,
    job_status_after,
    task_sources,
)

_EVENT_COLS = "at, job_id, task_id, server, kind, from_status, to_status, actor, reason"


def ids_json(ids: Iterable[int]) -> str:
    return json.dumps(list(ids))


IN_IDS = "(SELECT value FROM json_each(?))"


def _quoted(statuses: Iterable[str]) -> str:
    return ",".join(f"'{s}'" for s in sorted(statuses))


def move_tasks(
    conn: Connection,
    target: str,
    where: str,
    params: Sequence[Any],
    *,
    at: float,
    actor: str,
    reason: str | None = None,
    sets: str = "",
    set_params: Sequence[Any] = (),
    event_server: str | None = None,
) -> int:
    """Move the tasks matching ``where`` whose status may reach ``target``; returns the count.

    ``sets`` is extra assignments (", ended_at=?") with ``set_params``.
    """
    cond = f"({where}) AND status IN ({_quoted(task_sources(target))})"
    conn.exec_driver_sql(
        f"INSERT INTO event({_EVENT_COLS}) SELECT ?, job_id, id, COALESCE(?, server), "
        f"'status', status, ?, ?, ? FROM task WHERE {cond}",
        (at, event_server, target, actor, reason, *params),
    )
    res = conn.exec_driver_sql(
        f"UPDATE task SET status=?{sets} WHERE {cond}", (target, *set_params, *params)
    )
    return res.rowcount


def move_job(
    conn: Connection,
    job_id: int,
    target: str,
    *,
    at: float,
    actor: str,
    reason: str | None = None,
    sets: str = "",
    set_params: Sequence[Any] = (),
) -> bool:
    """Move one job to ``target`` if the table allows it from its current status."""
    cond = f"id=? AND status IN ({_quoted(job_sources(target))})"
    conn.exec_driver_sql(
        f"INSERT INTO event({_EVENT_COLS}) SELECT ?, id, NULL, NULL, 'status', status, ?, ?, ? "
        f"FROM job WHERE {cond}",
        (at, target, actor, reason, job_id),
    )
    res = conn.exec_driver_sql(
        f"UPDATE job SET status=?{sets} WHERE {cond}", (target, *set_params, job_id)
    )
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
    conn.exec_driver_sql(
        f"INSERT INTO event({_EVENT_COLS}) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
        (at, job_id, task_id, server, kind, actor, reason),
    )


def release_dependents(conn: Connection, ended_ids: Sequence[int], *, at: float) -> int:
    """Waiting tasks whose every dependency has Ended become Ready."""
    if not ended_ids:
        return 0
    return move_tasks(
        conn,
        "ready",
        f"id IN (SELECT task_id FROM taskdep WHERE dep_id IN {IN_IDS}) AND status='waiting' "
        "AND NOT EXISTS (SELECT 1 FROM taskdep d JOIN task t2 ON t2.id = d.dep_id "
        "WHERE d.task_id = task.id AND t2.status != 'ended')",
        (ids_json(ended_ids),),
        at=at,
        actor="engine",
        reason="dependencies ended",
    )


def skip_dependents(conn: Connection, failed_ids: Sequence[int], *, at: float) -> int:
    """Every task downstream of a task that did not end can never run: Didn't run."""
    if not failed_ids:
        return 0
    return move_tasks(
        conn,
        "didnt_run",
        "id IN (WITH RECURSIVE down(id) AS ("
        f"SELECT task_id FROM taskdep WHERE dep_id IN {IN_IDS} "
        "UNION SELECT d.task_id FROM taskdep d JOIN down ON d.dep_id = down.id"
        ") SELECT id FROM down)",
        (ids_json(failed_ids),),
        at=at,
        actor="engine",
        reason="a task it depends on did not end",
        sets=", ended_at=?",
        set_params=(at,),
    )


def finalize_jobs(conn: Connection, job_ids: Iterable[int], *, at: float) -> list[int]:
    """Finish the started jobs among ``job_ids`` whose tasks allow it; returns those moved."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    jobs = conn.exec_driver_sql(
        f"SELECT id, status FROM job WHERE id IN {IN_IDS} AND status IN ('executing', 'canceling')",
        (ids_json(ids),),
    ).fetchall()
    if not jobs:
        return []
    counts: dict[int, dict[str, int]] = {}
    for job_id, status, n in conn.exec_driver_sql(
        f"SELECT job_id, status, count(*) FROM task WHERE job_id IN {IN_IDS} "
        "GROUP BY job_id, status",
        (ids_json([j for j, _ in jobs]),),
    ):
        counts.setdefault(job_id, {})[status] = n
    moved = []
    for job_id, status in jobs:
        target = job_status_after(status, counts.get(job_id, {}))
        if target is None:
            continue
        error = None
        if target == "error":
            row = conn.exec_driver_sql(
                "SELECT name, COALESCE(error, status) FROM task WHERE job_id=? "
                "AND status IN ('error', 'aborted', 'canceled') ORDER BY id LIMIT 1",
                (job_id,),
            ).fetchone()
            error = f"task {row[0]}: {row[1]}" if row else "a task did not end"
        if move_job(
            conn,
            job_id,
            target,
            at=at,
            actor="engine",
            reason=error,
            sets=", ended_at=?, error=COALESCE(error, ?)",
            set_params=(at, error),
        ):
            moved.append(job_id)
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
