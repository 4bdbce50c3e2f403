"""The demo's python action, copied beside the demo recipes as ``demo_tasks.py``.

``nightly-import.toml`` calls it as ``function = "demo_tasks:crunch"``: the python action
imports modules from the recipe's own directory first.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def crunch(ctx: Any, batches: int = 90, seconds_per_batch: float = 1.0) -> str:
    """Score leads batch by batch: a long action, with a safe point before each batch."""
    batches = int(batches)
    pause = float(seconds_per_batch)
    ctx.progress(0, batches, "batches")
    ctx.log(f"scoring {batches} batches of leads")
    for done in range(batches):
        # A cancel stops here, between batches: the task ends Canceled, work so far kept.
        ctx.checkpoint(f"scored {done} of {batches} batches")
        await asyncio.sleep(pause)
        ctx.progress(done + 1)
        ctx.log(f"scored batch {done + 1} of {batches}")
    return f"scored {batches} batches"
