"""`call_job`: start a child job from another recipe, waiting for it (sync) or not (async).

Not a long action: a canceled parent does not cancel its child, so a sync task keeps
waiting for the child to end (SPEC "Child jobs").
"""

from __future__ import annotations

import os
from typing import Any

from engine.actions.base import Action, Param
from engine.actions.context import ActionError, TaskContext


async def run(ctx: TaskContext, recipe: str, mode: str) -> str:
    # A run after an interruption (engine stopped, server restart) finds the child the
    # first run started: it waits for that one instead of running the recipe twice.
    job_id = ctx.child_job_id
    if job_id is None:
        job_id = await ctx.submit_child(recipe, mode)
    else:
        ctx.log(f"resuming: job {job_id} was started by attempt {ctx.attempt - 1}")
    if mode == "async":
        return f"started job {job_id} (async)"
    ctx.log(f"waiting for job {job_id}")
    status = await ctx.wait_job(job_id)
    if status == "ended":
        return f"job {job_id} Ended"
    raise ActionError(f"child job {job_id} {status}")


def _check(params: dict[str, Any]) -> tuple[str, str] | None:
    if not os.path.isfile(params["recipe"]):
        return "recipe", f"no such file: {params['recipe']}"
    return None


ACTION = Action(
    name="call_job",
    run=run,
    params=(
        Param("recipe", str, is_path=True),
        Param("mode", str, required=False, default="sync", choices=("sync", "async")),
    ),
    long=False,
    doc="Start a child job from another recipe; sync waits for it, async does not.",
    check=_check,
)
