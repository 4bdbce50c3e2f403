"""`python`: call an importable ``module:function(ctx, **params)``.

Every task key besides ``function`` is passed through as a keyword argument, so this
action declares ``open_params`` and the recipe loader accepts unknown keys for it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from engine.actions.base import Action, Param
from engine.actions.context import ActionError, TaskContext

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"^({_DOTTED}):({_DOTTED})$")

_PREFIX = "_batchdeck_recipe_"
# Modules found beside a recipe, by the absolute path of their file (a package: its
# __init__.py).
_BESIDE: dict[str, ModuleType] = {}
# One load beside a recipe at a time: it puts the recipe's directory on sys.path.
_BESIDE_LOCK = threading.Lock()


def _beside(directory: str, top: str) -> str | None:
    """The file of the top-level module ``top`` in ``directory``, if it is there."""
    package = os.path.join(directory, top, "__init__.py")
    if os.path.isfile(package):
        return package
    module = os.path.join(directory, top + ".py")
    return module if os.path.isfile(module) else None


def _load_beside(path: str, top: str) -> ModuleType:
    """Load a recipe's own top-level module (or package) from its file, once per path.

    Under a name unique to the path, not ``top``: two recipe folders that each have a
    ``helpers.py`` must each run their own (``import_module`` would hand both the first
    one loaded, by name, from ``sys.modules``).
    """
    cached = _BESIDE.get(path)
    if cached is not None:
        return cached
    digest = hashlib.sha1(path.encode()).hexdigest()[:12]
    unique = f"{_PREFIX}{digest}_{top}"
    is_package = os.path.basename(path) == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        unique, path, submodule_search_locations=[os.path.dirname(path)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered, as an import would be: relative imports and submodules need it.
    sys.modules[unique] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique, None)
        raise
    _BESIDE[path] = module
    return module


def _import(module_name: str, directory: str | None) -> ModuleType:
    if directory is None:
        return importlib.import_module(module_name)
    top, _, rest = module_name.partition(".")
    path = _beside(directory, top)
    with _BESIDE_LOCK:
        # Only while loading: the module's own plain imports of its neighbours work, and
        # a recipe's folder does not shadow other modules for good.
        sys.path.insert(0, directory)
        before = set(sys.modules)
        try:
            if path is None:
                # An installed module ("tests.blocking_fn", "tui.demo.tasks"), or a rarer
                # kind beside the recipe (a compiled module, a namespace package): by name.
                return importlib.import_module(module_name)
            module = _load_beside(path, top)
            if rest:
                module = importlib.import_module(f"{module.__name__}.{rest}")
            return module
        finally:
            if directory in sys.path:
                sys.path.remove(directory)
            if path is not None:
                _forget_neighbours(set(sys.modules) - before, directory)


def _forget_neighbours(names: set[str], directory: str) -> None:
    """Drop from ``sys.modules`` the neighbours just imported by their plain names.

    The module that imported one keeps it; another recipe's folder with a neighbour of
    the same name (its own ``common.py``) then gets its own rather than this one.
    """
    inside = os.path.join(directory, "")
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if not name.startswith(_PREFIX) and file and os.path.abspath(file).startswith(inside):
            sys.modules.pop(name, None)


def load_function(target: str, recipe_path: str | None) -> Callable[..., Any]:
    """Import ``module:function``, looking beside the recipe file first.

    Blocking (an import runs the module's code): call it from a thread.
    """
    match = _TARGET.match(target)
    if not match:
        raise ActionError(f"function {target!r} is not of the form module:function")
    module_name, attr_path = match.groups()
    directory = os.path.dirname(os.path.abspath(recipe_path)) if recipe_path else None
    try:
        module = _import(module_name, directory)
    except ImportError as exc:
        raise ActionError(f"cannot import module {module_name!r}: {exc}") from exc
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
    # A heavy import must not freeze the event loop the console and the engine share.
    fn = await asyncio.to_thread(load_function, function, ctx.recipe_path)
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
