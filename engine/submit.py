"""Turning a validated recipe into a job with its tasks and dependencies, in one transaction."""

from __future__ import annotations

import json
import time

from sqlalchemy import Connection

from engine.db import Store
from engine.recipes import Recipe, TaskSpec
from engine.writes import add_event


def recipe_to_json(recipe: Recipe) -> str:
    """The parsed recipe as stored with the job at submit (what a rerun runs)."""
    return json.dumps(
        {
            "name": recipe.name,
            "path": recipe.path,
            "system": recipe.system,
            "max_attempts": recipe.max_attempts,
            "description": recipe.description,
            "tasks": [
                {"name": t.name, "action": t.action, "after": list(t.after), "params": t.params}
                for t in recipe.tasks
            ],
        }
    )


def recipe_from_json(text: str) -> Recipe:
    data = json.loads(text)
    return Recipe(
        name=data["name"],
        path=data.get("path"),
        system=bool(data.get("system", False)),
        tasks=tuple(
            TaskSpec(t["name"], t["action"], tuple(t.get("after", ())), dict(t["params"]))
            for t in data["tasks"]
        ),
        max_attempts=int(data.get("max_attempts", 3)),
        description=data.get("description", ""),
    )


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
    rerun_of: int | None = None,
    carried: dict[str, str] | None = None,
) -> int:
    """Insert a job and its tasks. ``carried``: task name -> message, for the tasks a
    rerun carries over as Ended (they do not run again; their dependents can start)."""
    carried = carried or {}
    is_system = recipe.system if system is None else system
    job_id = conn.exec_driver_sql(
        "INSERT INTO job(name, recipe_path, status, system, submitted_by, submitted_at, "
        "parent_id, parent_task_id, call_mode, orphaned, recipe_json, rerun_of) "
        "VALUES (?, ?, 'waiting', ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id",
        (
            recipe.name,
            recipe.path,
            is_system,
            actor,
            at,
            parent_id,
            parent_task_id,
            call_mode,
            recipe_to_json(recipe),
            rerun_of,
        ),
    ).scalar_one()

    def status(spec: TaskSpec) -> str:
        if spec.name in carried:
            return "ended"
        return "ready" if all(d in carried for d in spec.after) else "waiting"

    rows = [
        (
            job_id,
            seq,
            spec.name,
            spec.action,
            json.dumps(spec.params),
            status(spec),
            recipe.max_attempts,
            carried.get(spec.name),
            at if spec.name in carried else None,
        )
        for seq, spec in enumerate(recipe.tasks)
    ]
    conn.exec_driver_sql(
        "INSERT INTO task(job_id, seq, name, action, params, status, attempt, max_attempts, "
        "progress_done, message, ended_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, 0, ?, ?)",
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
    what = f"{len(rows)} task{'s' if len(rows) != 1 else ''}"
    if rerun_of is not None:
        how = f"rerun of job {rerun_of}"
        names = [spec.name for spec in recipe.tasks if spec.name in carried]
        what += f", {len(names)} carried over as Ended" + (
            f" ({', '.join(names)})" if names else ""
        )
    add_event(conn, at=at, actor=actor, kind="request", job_id=job_id, reason=f"{how}: {what}")
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
