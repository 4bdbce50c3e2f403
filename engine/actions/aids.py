"""Test and demo aids: `fail` (fail with a message) and `blocking_wait` (an unmanaged wait)."""

from __future__ import annotations

import asyncio
import time

from engine.actions._tasks import fmt_seconds
from engine.actions.base import ONE_YEAR_S, Action, Param
from engine.actions.context import ActionError, TaskContext


async def run_fail(ctx: TaskContext, message: str, delay: float) -> str:
    if delay:
        ctx.log(f"failing in {fmt_seconds(delay)} s")
        await asyncio.sleep(delay)
    raise ActionError(message)


async def run_blocking_wait(ctx: TaskContext, seconds: float) -> str:
    ctx.log(f"blocking for {fmt_seconds(seconds)} s in a thread (an unmanaged wait)")
    # Deliberately uninterruptible: an abort shows Aborting until the sleep returns.
    await ctx.run_blocking(time.sleep, seconds)
    return f"blocked {seconds:g} s"


FAIL = Action(
    name="fail",
    run=run_fail,
    params=(
        Param("message", str, required=False, default="failed on purpose"),
        Param("delay", float, required=False, default=0.0, minimum=0, maximum=ONE_YEAR_S),
    ),
    doc="Fail with a message, after an optional delay.",
)

BLOCKING_WAIT = Action(
    name="blocking_wait",
    run=run_blocking_wait,
    params=(Param("seconds", float, minimum=0, maximum=ONE_YEAR_S),),
    doc="Block in a thread for N seconds: an unmanaged wait that an abort cannot interrupt.",
)
