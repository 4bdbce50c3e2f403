"""How a cancel (and an abort) will stop each running task: one table, from the actions.

Operators choose between cancel, abort and enhanced abort from this:

- ``safe_point``: a long action (``Action.long``) stops at its next safe point, Canceled;
- ``finishes``: the task runs to its end first (short actions, ``shell`` with
  ``on_cancel = "finish"``, a ``call_job`` waiting for its child);
- ``sigterm``: ``shell`` with ``on_cancel = "terminate"`` gets SIGTERM;
- ``restart``: only a server restart stops it (an unmanaged wait: ``blocking_wait``, a
  plain-function ``python`` callable running in a thread);
- ``checkpoint``: a ``python`` callable whose code batchdeck could not read: a safe point
  if it calls ``ctx.checkpoint()``, else it finishes first.

For ``python``, the callable's source is read (never imported: no code runs) to tell
which applies: ``async def`` or plain ``def``, and whether it calls ``checkpoint``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

from engine.core.views import TaskView
from engine.sql import keys
from engine.sql.protocol import Sql


@dataclass(frozen=True)
class StopsBy:
    key: str  # safe_point, finishes, sigterm, restart, checkpoint
    cancel: str  # how a cancel stops it, in words
    abort: str  # what an abort does to it, in words

    def to_json(self) -> dict[str, str]:
        return asdict(self)


SAFE_POINT = StopsBy("safe_point", "at its next safe point", "stopped at once")
FINISHES = StopsBy("finishes", "finishes first", "stopped at once")
SIGTERM = StopsBy("sigterm", "gets SIGTERM", "SIGKILL to its process group")
RESTART = StopsBy(
    "restart",
    "only a server restart stops it",
    "Aborting until its unmanaged wait returns; an enhanced abort restarts the server",
)
CHECKPOINT = StopsBy(
    "checkpoint",
    "safe point if it calls checkpoint(), else finishes first",
    "stopped at once, unless it is in an unmanaged wait (then only a server restart)",
)
# A plain function runs in a thread: a cancel reaches it only through checkpoint(), and
# an abort not at all.
THREAD_SAFE_POINT = StopsBy(
    "safe_point",
    "at its next safe point (checkpoint())",
    "Aborting until the function returns; an enhanced abort restarts the server",
)
ASYNC_FINISHES = StopsBy(
    "finishes", "finishes first (it never calls checkpoint())", "stopped at once"
)


# A remote long action: a cancel is carried over to the remote service.
REMOTE = StopsBy(
    "safe_point",
    "aborts the remote job",
    "sends the remote abort (short wait), then stopped",
)


def _shell(params: dict[str, Any], _recipe: str | None) -> StopsBy:
    return FINISHES if params.get("on_cancel", "terminate") == "finish" else SIGTERM


def _python(params: dict[str, Any], recipe: str | None) -> StopsBy:
    return python_stops_by(str(params.get("function", "")), recipe)


# The actions whose stop is not told by ``Action.long`` alone.
RULES: dict[str, Callable[[dict[str, Any], str | None], StopsBy]] = {
    "shell": _shell,
    "python": _python,
    "blocking_wait": lambda _p, _r: RESTART,
    "salesforce_bulk": lambda _p, _r: REMOTE,
    "http_job": lambda _p, _r: REMOTE,
}


def stops_by(action: str, params: dict[str, Any] | str, recipe_path: str | None = None) -> StopsBy:
    """How a cancel will stop a running task of ``action`` with these ``params``."""
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    rule = RULES.get(action)
    if rule is not None:
        return rule(params, recipe_path)
    # Imported here: the actions bring httpx and the remote clients (~0.3 s of a bulk
    # cancel's process on the light path, which asks of no action but the running ones).
    from engine.actions import get_action

    spec = get_action(action)
    return SAFE_POINT if spec is not None and spec.long else FINISHES


_TARGET = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


def _module_file(module: str, recipe_path: str | None) -> str | None:
    """The source file of ``module``, beside the recipe first, without importing it."""
    parts = module.split(".")
    roots: list[str] = []
    if recipe_path:
        roots.append(os.path.dirname(os.path.abspath(recipe_path)))
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        if spec.submodule_search_locations:
            roots += [os.path.dirname(p) for p in spec.submodule_search_locations]
        elif spec.origin and len(parts) == 1 and spec.origin.endswith(".py"):
            return spec.origin
    for root in roots:
        base = os.path.join(root, *parts)
        for path in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(path):
                return path
    return None


@lru_cache(maxsize=256)
def _function_kind(path: str, mtime: float, name: str) -> tuple[str, bool, bool] | None:
    """("async" or "plain", calls checkpoint, calls run_blocking) for the top-level
    function ``name``."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            checks = any(
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr in ("checkpoint", "wait_cancel", "cancel_requested")
                or isinstance(n, ast.Attribute)
                and n.attr == "cancel_requested"
                for n in ast.walk(node)
            )
            blocks = any(
                isinstance(n, ast.Attribute) and n.attr == "run_blocking" for n in ast.walk(node)
            )
            style = "async" if isinstance(node, ast.AsyncFunctionDef) else "plain"
            return (style, checks, blocks)
    return None


def python_stops_by(function: str, recipe_path: str | None) -> StopsBy:
    match = _TARGET.match(function)
    if not match:
        return CHECKPOINT
    path = _module_file(match.group(1), recipe_path)
    if path is None:
        return CHECKPOINT
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return CHECKPOINT
    kind = _function_kind(path, mtime, match.group(2))
    if kind is None:
        return CHECKPOINT
    style, checks, blocks = kind
    if style == "plain" or (blocks and not checks):
        # A plain function runs in a thread; an async one that calls run_blocking() may
        # sit in a thread too: only a restart frees it there.
        return THREAD_SAFE_POINT if checks else RESTART
    if blocks:
        return StopsBy(SAFE_POINT.key, SAFE_POINT.cancel, CHECKPOINT.abort)
    return SAFE_POINT if checks else ASYNC_FINISHES


_TASK_VIEW = frozenset(f.name for f in fields(TaskView))


def tasks_in(sql: Sql, job_id: int, statuses: list[str]) -> list[TaskView]:
    """The job's tasks in ``statuses``, each with how a cancel and an abort stop it."""
    return [
        TaskView(
            **{k: v for k, v in r._asdict().items() if k in _TASK_VIEW},
            stops_by=stops_by(r.action, r.params, r.recipe_path),
        )
        for r in sql.rows(keys.ABORT_TASKS, {"job_id": job_id, "statuses": statuses})
    ]
