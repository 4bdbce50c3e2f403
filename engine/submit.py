"""Turning a validated recipe into a job with its tasks and dependencies, in one transaction."""

from __future__ import annotations

import json
import time

from sqlalchemy import Connection

from engine.db import Store
from engine.recipes import Recipe
from engine.writes import add_event


def insert_job(
    conn: Connection,
    recipe: Recipe,
    *,
    actor: str,
    at: float,
    system: bool | None = None,
    parent_id: int | None = None,
    parent_task_id: int | None = None,
    call_mode: str | None = None,
) -> int:
    is_system = recipe.system if system is None else system
    job_id = conn.exec_driver_sql(
        "INSERT INTO job(name, recipe_path, status, system, submitted_by, submitted_at, "
        "parent_id, parent_task_id, call_mode, orphaned) "
        "VALUES (?, ?, 'waiting', ?, ?, ?, ?, ?, ?, 0) RETURNING id",
        (recipe.name, recipe.path, is_system, actor, at, parent_id, parent_task_id, call_mode),
    ).scalar_one()
    rows = [
        (
            job_id,
            seq,
            spec.name,
            spec.action,
            json.dumps(spec.params),
            "waiting" if spec.after else "ready",
            recipe.max_attempts,
        )
        for seq, spec in enumerate(recipe.tasks)
    ]
    conn.exec_driver_sql(
        "INSERT INTO task(job_id, seq, name, action, params, status, attempt, max_attempts, "
        "progress_done) VALUES (?, ?, ?, ?, ?, ?, 1, ?, 0)",
        rows,
    )
    ids = {
        name: tid
        for tid, name in conn.exec_driver_sql("SELECT id, name FROM task WHERE job_id=?", (job_id,))
    }
    deps = [(ids[spec.name], ids[dep]) for spec in recipe.tasks for dep in spec.after]
    if deps:
        conn.exec_driver_sql("INSERT INTO taskdep(task_id, dep_id) VALUES (?, ?)", deps)
    how = f"called by job {parent_id} ({call_mode})" if parent_id else "submitted"
    add_event(
        conn,
        at=at,
        actor=actor,
        kind="request",
        job_id=job_id,
        reason=f"{how}: {len(rows)} task{'s' if len(rows) != 1 else ''}",
    )
    return job_id


def submit(
    store: Store,
    recipe: Recipe,
    *,
    actor: str,
    system: bool | None = None,
    now: float | None = None,
) -> int:
    at = time.time() if now is None else now
    with store.write() as conn:
        return insert_job(conn, recipe, actor=actor, at=at, system=system)
