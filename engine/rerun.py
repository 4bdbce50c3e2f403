"""Rerun what did not end: a new job from the recipe as it was at submit, in which the
tasks that Ended are carried over as Ended (not run again) and every other task runs.

Only ever on request: nothing in the engine reruns or retries a job after a deliberate
cancel or abort.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import Connection, select

from engine.control import Refused, get_job
from engine.db import Store
from engine.recipes import Recipe, TaskSpec
from engine.statuses import JOB_TERMINAL, LABELS
from engine.submit import insert_job, recipe_from_json
from engine.tables import job, job_recipe, task, taskdep


@dataclass(frozen=True)
class RerunPlan:
    job_id: int
    name: str
    status: str
    carried: tuple[str, ...]  # tasks that Ended: carried over, not run again
    rerun: tuple[str, ...]  # every other task: runs in the new job


def _recipe(conn: Connection, job_id: int) -> Recipe:
    """The recipe as stored at submit; for a job stored without one, its task rows."""
    row = conn.execute(
        select(job.c.name, job.c.recipe_path, job.c.system, job_recipe.c.recipe_json)
        .outerjoin(job_recipe, job_recipe.c.job_id == job.c.id)
        .where(job.c.id == job_id)
    ).one()
    if row.recipe_json:
        return recipe_from_json(row.recipe_json)
    tasks = conn.execute(
        select(task.c.id, task.c.name, task.c.action, task.c.params, task.c.max_attempts)
        .where(task.c.job_id == job_id)
        .order_by(task.c.seq, task.c.id)
    ).all()
    names = {t.id: t.name for t in tasks}
    after: dict[int, list[str]] = {}
    for d in conn.execute(
        select(taskdep.c.task_id, taskdep.c.dep_id)
        .join(task, task.c.id == taskdep.c.task_id)
        .where(task.c.job_id == job_id)
        .order_by(taskdep.c.task_id, taskdep.c.dep_id)
    ):
        after.setdefault(d.task_id, []).append(names[d.dep_id])
    return Recipe(
        name=row.name,
        path=row.recipe_path,
        system=bool(row.system),
        tasks=tuple(
            TaskSpec(t.name, t.action, tuple(after.get(t.id, ())), json.loads(t.params))
            for t in tasks
        ),
        max_attempts=tasks[0].max_attempts if tasks else 3,
    )


def _plan(conn: Connection, job_id: int) -> tuple[RerunPlan, Recipe]:
    job = get_job(conn, job_id)
    if job.status not in JOB_TERMINAL:
        raise Refused(
            f"Job {job_id} is {LABELS[job.status]}: only a job in a final status "
            "(Canceled, Ended, Error) can be rerun"
        )
    recipe = _recipe(conn, job_id)
    ended = set(
        conn.execute(
            select(task.c.name).where(task.c.job_id == job_id, task.c.status == "ended")
        ).scalars()
    )
    carried = tuple(t.name for t in recipe.tasks if t.name in ended)
    rerun = tuple(t.name for t in recipe.tasks if t.name not in ended)
    if not rerun:
        raise Refused(f"Job {job_id} {LABELS[job.status]}: every task Ended, nothing to rerun")
    return RerunPlan(job_id, job.name, job.status, carried, rerun), recipe


def rerun_preview(store: Store, job_id: int) -> RerunPlan:
    """What ``rerun`` would carry over and run; raises Refused like rerun."""
    with store.read() as conn:
        return _plan(conn, job_id)[0]


def rerun(store: Store, job_id: int, *, actor: str, now: float | None = None) -> int:
    """Submit the rerun of job ``job_id``; returns the new job's id."""
    at = time.time() if now is None else now
    with store.write() as conn:
        plan, recipe = _plan(conn, job_id)
        carried = {name: f"carried over: Ended in job {job_id}" for name in plan.carried}
        return insert_job(conn, recipe, actor=actor, at=at, rerun_of=job_id, carried=carried)
