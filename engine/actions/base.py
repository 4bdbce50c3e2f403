"""The action interface and its parameter schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Bounds for numeric parameters. A value past them is a typo or an attack, never a plan:
# a wait of 1e300 s never ends, 2**63 - 1 rows per chunk is one chunk that cancel cannot
# stop, and integers past 64 bits do not fit a SQLite column.
ONE_YEAR_S = 365 * 86400
MAX_CHUNK_ROWS = 1_000_000
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Param:
    name: str
    kind: type | tuple[type, ...]  # str, int, float, bool, list (of str)
    required: bool = True
    default: Any = None
    is_path: bool = False  # resolved relative to the recipe file at load time
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None  # every int and float parameter has one


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
