"""Waiting for a condition: the suite's one way to synchronise with an engine, a console
or a subprocess. Never a sleep followed by an assert: poll until the condition holds,
and fail only after a bound generous enough for a 2-core machine with its CPU busy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

POLL_S = 0.02
BOUND_S = 30.0  # a generous cap, not a speed target


async def until(
    test: Callable[[], T], what: str = "condition", *, pilot: Any = None, bound: float = BOUND_S
) -> T:
    """Poll ``test()`` until it returns something truthy, and return that.

    With a Textual ``pilot``, each poll also lets the screen process its pending
    messages (``pilot.pause``), so what the test reads next is what is painted."""
    deadline = time.monotonic() + bound
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last seen: {value!r}")
        if pilot is not None:
            await pilot.pause(POLL_S)
        else:
            await asyncio.sleep(POLL_S)


def until_sync(
    test: Callable[[], T], what: str = "condition", *, bound: float = BOUND_S, poll: float = 0.05
) -> T:
    """``until`` for code with no event loop (tests driving subprocesses)."""
    deadline = time.monotonic() + bound
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last seen: {value!r}")
        time.sleep(poll)
