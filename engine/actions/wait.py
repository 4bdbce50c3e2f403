"""`wait`: sleep N seconds (Scheduler "Wait"); a cancel stops it at once."""

from __future__ import annotations

import asyncio

from engine.actions._tasks import cancel_and_wait, fmt_seconds
from engine.actions.base import ONE_YEAR_S, Action, Param
from engine.actions.context import TaskCanceled, TaskContext

# Progress is worth refreshing about once a second: finer would only add writes.
_TICK = 1.0


async def run(ctx: TaskContext, seconds: float) -> str:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + seconds
    ctx.progress(0, seconds, "s")
    cancel = asyncio.ensure_future(ctx.wait_cancel())
    try:
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.wait({cancel}, timeout=min(_TICK, remaining))
            waited = min(loop.time() - start, seconds)
            ctx.progress(waited)
            if cancel.done():
                raise TaskCanceled(f"waited {fmt_seconds(waited)} s of {fmt_seconds(seconds)} s")
    finally:
        await cancel_and_wait(cancel)
    ctx.progress(seconds)
    return f"waited {fmt_seconds(seconds)} s"


ACTION = Action(
    name="wait",
    run=run,
    params=(Param("seconds", float, minimum=0, maximum=ONE_YEAR_S),),
    long=True,
    doc="Sleep N seconds; a cancel stops it at once (Canceled).",
)
