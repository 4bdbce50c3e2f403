"""Small asyncio helpers shared by actions that race a cancel request against their work."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel helper tasks and wait until they are gone.

    Waiting matters: a helper left pending would outlive the action and be reported as
    "Task was destroyed but it is pending" when the loop closes.
    """
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def fmt_seconds(value: float) -> str:
    """12.0 -> "12", 0.25 -> "0.2": short enough for a one-line task message."""
    return f"{round(value, 1):g}"
