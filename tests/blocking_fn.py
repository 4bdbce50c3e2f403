"""A `python` action for tests: an unmanaged wait that ends when a file appears."""

from __future__ import annotations

import time
from pathlib import Path


def _block(path: str) -> None:
    Path(path + ".started").touch()
    deadline = time.monotonic() + 120
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


async def block_until(ctx, path: str) -> str:  # noqa: ANN001
    await ctx.run_blocking(_block, path)
    Path(path + ".after").touch()  # must not happen when the task was aborted
    return "released"


async def log_three(ctx) -> str:  # noqa: ANN001
    """Three lines through ``ctx.log``: each kept in the task's log."""
    for word in ("one", "two", "three"):
        ctx.log(word)
    return "logged"
