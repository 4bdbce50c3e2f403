"""The result of an inline Reader's read (``Reader(path, inline=True)``) without an event
loop: its coroutines never wait, so sending them ``None`` once runs them to the end. A
command line then answers without starting an event loop."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")


def complete(coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` to its end and return its result. Raises RuntimeError (the coroutine
    closed) if it waits on anything: only an inline Reader's reads may be run this way."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("an inline read waited on something")
