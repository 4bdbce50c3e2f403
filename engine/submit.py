"""Turning a validated recipe into a job with its tasks and dependencies, in one transaction."""

from __future__ import annotations

import json
import time

from sqlalchemy import Connection, Integer, bindparam, insert, select

from engine.db import Store
from engine.prepared import Prepared
from engine.recipes import Recipe, TaskSpec
from engine.tables import job, job_recipe, task, taskdep
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


# Prepared (compiled once, run on the driver): a 20,000-task job spent most of its
# submit in SQLAlchemy's per-row parameter handling.
_INSERT_TASK = Prepared(
    insert(task).values(
        job_id=bindparam("b_job_id"),
        seq=bindparam("b_seq"),
        name=bindparam("b_name"),
        action=bindparam("b_action"),
        params=bindparam("b_params"),
        status=bindparam("b_status"),
        attempt=1,
        max_attempts=bindparam("b_max_attempts"),
        progress_done=0,
        message=bindparam("b_message"),
        ended_at=bindparam("b_ended_at"),
    )
)
_TASK_IDS = Prepared(
    select(task.c.id, task.c.name).where(task.c.job_id == bindparam("b_job_id", type_=Integer))
)
_INSERT_DEP = Prepared(
    insert(taskdep).values(
        task_id=bindparam("b_task_id", type_=Integer), dep_id=bindparam("b_dep_id", type_=Integer)
    )
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
    job_id = conn.execute(
        insert(job)
        .values(
            name=recipe.name,
            recipe_path=recipe.path,
            status="waiting",
            system=is_system,
            submitted_by=actor,
            submitted_at=at,
            parent_id=parent_id,
            parent_task_id=parent_task_id,
            call_mode=call_mode,
            orphaned=False,
            rerun_of=rerun_of,
        )
        .returning(job.c.id)
    ).scalar_one()
    conn.execute(insert(job_recipe).values(job_id=job_id, recipe_json=recipe_to_json(recipe)))

    def status(spec: TaskSpec) -> str:
        if spec.name in carried:
            return "ended"
        return "ready" if all(d in carried for d in spec.after) else "waiting"

    rows = [
        {
            "b_seq": seq,
            "b_name": spec.name,
            "b_action": spec.action,
            "b_params": json.dumps(spec.params),
            "b_status": status(spec),
            "b_message": carried.get(spec.name),
            "b_ended_at": at if spec.name in carried else None,
        }
        for seq, spec in enumerate(recipe.tasks)
    ]
    # One executemany of a prebuilt statement: the job's own values are the same in
    # every row, so they ride along as constants of this call.
    for row in rows:
        row.update(b_job_id=job_id, b_max_attempts=recipe.max_attempts)
    if rows:
        _INSERT_TASK(conn, rows)
    deps = [(spec.name, dep) for spec in recipe.tasks for dep in spec.after]
    if deps:
        ids = {r.name: r.id for r in _TASK_IDS(conn, {"b_job_id": job_id})}
        _INSERT_DEP(conn, [{"b_task_id": ids[t], "b_dep_id": ids[d]} for t, d in deps])
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
