"""A task for bench/cancel_seen.py: a long action that notes the moment it sees its cancel."""

from __future__ import annotations

import asyncio
import time

from engine.actions.context import TaskCanceled


async def watch(ctx, out: str) -> None:  # noqa: ANN001 - the engine's TaskContext
    ctx.progress(0, 1, "probe")
    try:
        while True:
            ctx.checkpoint()
            await asyncio.sleep(0.0002)
    except TaskCanceled:
        with open(out, "w") as f:
            f.write(repr(time.time()))
        raise
