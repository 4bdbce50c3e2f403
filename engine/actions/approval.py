"""`approval`: wait until an operator approves or rejects ("Request task approval")."""

from __future__ import annotations

import asyncio

from engine.actions._tasks import cancel_and_wait
from engine.actions.base import Action, Param
from engine.actions.context import ActionError, TaskCanceled, TaskContext


async def run(ctx: TaskContext, prompt: str) -> str:
    ctx.log(f"waiting for approval: {prompt}")
    decision = asyncio.ensure_future(ctx.wait_approval())
    cancel = asyncio.ensure_future(ctx.wait_cancel())
    try:
        await asyncio.wait({decision, cancel}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*(t for t in (decision, cancel) if not t.done()))
    # A decision that arrived together with the cancel still counts: the operator gave it.
    if decision.done() and not decision.cancelled():
        verdict, actor = decision.result()
        if verdict == "approved":
            return f"approved by {actor}"
        raise ActionError(f"rejected by {actor}")
    raise TaskCanceled("canceled while waiting for approval")


ACTION = Action(
    name="approval",
    run=run,
    params=(Param("prompt", str, required=False, default="approve to continue"),),
    long=True,
    doc="Wait until an operator approves (Ended) or rejects (Error) in the console.",
)
