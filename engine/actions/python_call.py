"""`python`: call an importable ``module:function(ctx, **params)``.

Every task key besides ``function`` is passed through as a keyword argument, so this
action declares ``open_params`` and the recipe loader accepts unknown keys for it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from engine.actions.base import Action, Param
from engine.context import ActionError, TaskContext

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"^({_DOTTED}):({_DOTTED})$")


def load_function(target: str, recipe_path: str | None) -> Callable[..., Any]:
    """Import ``module:function``, looking beside the recipe file first."""
    match = _TARGET.match(target)
    if not match:
        raise ActionError(f"function {target!r} is not of the form module:function")
    module_name, attr_path = match.groups()
    extra = os.path.dirname(os.path.abspath(recipe_path)) if recipe_path else None
    # Only for the import: a recipe's helper modules should not shadow others for good.
    if extra:
        sys.path.insert(0, extra)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ActionError(f"cannot import module {module_name!r}: {exc}") from exc
    finally:
        if extra and extra in sys.path:
            sys.path.remove(extra)
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ActionError(f"module {module_name!r} has no {attr_path!r}") from None
    if not callable(obj):
        raise ActionError(f"{target} is not callable")
    return obj


async def run(ctx: TaskContext, function: str, **kwargs: Any) -> str | None:
    fn = load_function(function, ctx.recipe_path)
    if inspect.iscoroutinefunction(fn):
        result = await fn(ctx, **kwargs)
    else:
        # A plain function may block: it runs in a thread, an unmanaged wait.
        result = await ctx.run_blocking(functools.partial(fn, ctx, **kwargs))
    if result is None:
        return None
    return result if isinstance(result, str) else str(result)


def _check(params: dict[str, Any]) -> tuple[str, str] | None:
    if not _TARGET.match(params["function"]):
        return "function", f"expected 'module:function', got {params['function']!r}"
    return None


ACTION = Action(
    name="python",
    run=run,
    params=(Param("function", str),),
    long=True,
    doc="Call module:function(ctx, **params); async functions are awaited, others run "
        "in a thread (an unmanaged wait).",
    check=_check,
    extra={"open_params": True},
)
