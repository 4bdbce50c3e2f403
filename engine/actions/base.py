"""The action interface and its parameter schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    kind: type | tuple[type, ...]  # str, int, float, bool, list (of str)
    required: bool = True
    default: Any = None
    is_path: bool = False  # resolved relative to the recipe file at load time
    choices: tuple[Any, ...] = ()
    minimum: float | None = None


@dataclass(frozen=True)
class Action:
    name: str
    run: Callable[..., Awaitable[str | None]]  # async def run(ctx, **params) -> message
    params: tuple[Param, ...] = ()
    long: bool = False  # honours cancel: stops at its next safe point as Canceled
    doc: str = ""
    # Extra checks beyond the schema; returns an error text for the field, or None.
    check: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
