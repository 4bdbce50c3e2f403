"""Rerun what did not end: a new job from the recipe as it was at submit, in which the
tasks that Ended are carried over as Ended (not run again) and every other task runs.

Only ever on request: nothing in the engine reruns or retries a job after a deliberate
cancel or abort. The plan and the rerun are flows (``engine.flows.base``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.core.refusal import Refusal
from engine.core.statuses import JOB_TERMINAL, LABELS
from engine.flows.base import Transaction, at_or_now, insert_job, job_view
from engine.recipes import Recipe, TaskSpec, recipe_from_json
from engine.sql import keys
from engine.sql.protocol import Sql


@dataclass(frozen=True)
class RerunPlan:
    job_id: int
    name: str
    status: str
    carried: tuple[str, ...]  # tasks that Ended: carried over, not run again
    rerun: tuple[str, ...]  # every other task: runs in the new job


def _recipe(sql: Sql, job_id: int) -> Recipe:
    """The recipe as stored at submit; for a job stored without one, its task rows."""
    row = sql.rows(keys.RERUN_RECIPE, {"job_id": job_id})[0]
    if row.recipe_json:
        return recipe_from_json(row.recipe_json)
    tasks = sql.rows(keys.RERUN_TASKS, {"job_id": job_id})
    names = {t.id: t.name for t in tasks}
    after: dict[int, list[str]] = {}
    for d in sql.rows(keys.RERUN_DEPS, {"job_id": job_id}):
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


def plan(sql: Sql, job_id: int) -> tuple[RerunPlan, Recipe]:
    """What a rerun of ``job_id`` carries over and runs, and the recipe; a Refusal if
    there is nothing to rerun."""
    job = job_view(sql, job_id)
    if job.status not in JOB_TERMINAL:
        raise Refusal(
            "status",
            f"Job {job_id} is {LABELS[job.status]}: only a job in a final status "
            "(Canceled, Ended, Error) can be rerun",
        )
    recipe = _recipe(sql, job_id)
    ended = {r.name for r in sql.rows(keys.RERUN_ENDED, {"job_id": job_id})}
    carried = tuple(t.name for t in recipe.tasks if t.name in ended)
    rerun = tuple(t.name for t in recipe.tasks if t.name not in ended)
    if not rerun:
        raise Refusal(
            "status", f"Job {job_id} {LABELS[job.status]}: every task Ended, nothing to rerun"
        )
    return RerunPlan(job_id, job.name, job.status, carried, rerun), recipe


def preview(sql: Sql, job_id: int) -> RerunPlan:
    """What a rerun of ``job_id`` would carry over and run; a Refusal as ``rerun`` gives."""
    return plan(sql, job_id)[0]


def rerun(
    transaction: Transaction,
    job_id: int,
    *,
    actor: str,
    at: float | None = None,
) -> int:
    """Submit the rerun of job ``job_id`` in one transaction (``at``: default now); the
    new job's id. A Refusal if the job is not in a final status or every task Ended."""
    with transaction() as sql:
        p, recipe = plan(sql, job_id)
        carried = {name: f"carried over: Ended in job {job_id}" for name in p.carried}
        return insert_job(
            sql, recipe, actor=actor, at=at_or_now(at), rerun_of=job_id, carried=carried
        )
