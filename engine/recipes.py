"""Recipe files (TOML) and recipes registered from Python: loading and validation.

Every problem becomes one ``RecipeError`` whose message is a single line naming the
file, and the task and field where there is one, so ``batchdeck recipes check`` and a
refused ``submit`` can print it as is.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.actions import ACTIONS
from engine.actions.base import MAX_INT, Action, Param

TOP_LEVEL_FIELDS = ("name", "system", "description", "max_attempts", "task")
TASK_FIELDS = ("name", "action", "after")
# A name is for reading in a list row; a longer one would pad every row of `list`.
MAX_NAME = 200
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class TaskSpec:
    name: str
    action: str
    after: tuple[str, ...]
    params: dict[str, Any]


@dataclass(frozen=True)
class Recipe:
    name: str
    path: str | None  # absolute path of the TOML file; None when registered from Python
    system: bool
    tasks: tuple[TaskSpec, ...]
    max_attempts: int = 3
    description: str = field(default="", compare=False)


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one line."""


class _Problem(Exception):
    """A problem found while validating; gains its file prefix in ``_build``."""

    def __init__(self, task: str | None, fld: str | None, problem: str) -> None:
        # ``task`` is the task's label as shown ("task 'load'", or "task #2" when unnamed).
        super().__init__(problem)
        self.task = task
        self.field = fld
        self.problem = problem


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _task_label(name: str) -> str:
    return f"task {name!r}"


def _error(origin: str, task: str | None, fld: str | None, problem: str) -> RecipeError:
    parts = [origin]
    if task is not None:
        parts.append(task)
    if fld is not None:
        parts.append(f"field {fld!r}")
    parts.append(problem)
    return RecipeError(_one_line(": ".join(parts)))


def _show(value: Any) -> str:
    """A value as it was written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file, and every recipe it calls; raises RecipeError."""
    return _Loader().load(path, str(path))


def _read(path: str | Path, origin: str) -> dict:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{origin}: no such file") from None
    except IsADirectoryError:
        raise RecipeError(f"{origin}: is a directory, not a recipe file") from None
    except OSError as exc:
        raise RecipeError(_one_line(f"{origin}: cannot read: {exc.strerror or exc}")) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{origin}: not valid UTF-8 (at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(_one_line(f"{origin}: not valid TOML: {exc}")) from None


def recipe_from_dict(data: dict, origin: str, base_dir: Path | None = None) -> Recipe:
    """A recipe registered from Python: the same validation as a file.

    Relative paths resolve against ``base_dir`` (the current directory if None).
    """
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: expected a table (dict), got {type(data).__name__}")
    base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    return _build(data, origin, base, None, _Loader())


def check_path(path: str | Path) -> list[tuple[str, str | None]]:
    """Validate a recipe file, or every ``*.toml`` under a directory (sorted, recursive).

    Returns ``(file, error or None)`` per file.
    """
    root = Path(path)
    files = sorted(root.rglob("*.toml")) if root.is_dir() else [root]
    results: list[tuple[str, str | None]] = []
    for file in files:
        try:
            load_recipe(file)
        except RecipeError as exc:
            results.append((str(file), str(exc)))
        else:
            results.append((str(file), None))
    return results


# -- recipes calling recipes -----------------------------------------------------------

# Deeper than this, a chain of calls is refused before it could exhaust the stack.
MAX_CALL_CHAIN = 100


class _CycleFound(Exception):
    """A call back to a recipe still being loaded; reported by that recipe's own task."""

    def __init__(self, start: str, chain: list[str]) -> None:
        super().__init__(start)
        self.start = start  # real path of the recipe the calls come back to
        self.chain = chain  # the files from the caller on, ending with that recipe


class _Loader:
    """One load: each recipe reached through ``call_job`` read once, and the calls under way.

    A recipe that calls itself, directly or through others, would start jobs without
    end; one that calls an invalid recipe would fail only when the call runs. Both are
    refused when the calling recipe is loaded.
    """

    def __init__(self) -> None:
        self._done: dict[str, Recipe | RecipeError] = {}  # by real path
        self._trail: list[str] = []  # real paths of the files being loaded, outermost first

    def load(self, path: str | Path, origin: str) -> Recipe:
        key = os.path.realpath(path)
        known = self._done.get(key)
        if isinstance(known, RecipeError):
            raise RecipeError(str(known))
        if known is not None:
            return known
        data = _read(path, origin)
        resolved = Path(os.path.abspath(path))
        self._trail.append(key)
        try:
            recipe = _build(data, origin, resolved.parent, str(resolved), self)
        except RecipeError as exc:
            self._done[key] = exc
            raise
        finally:
            self._trail.pop()
        self._done[key] = recipe
        return recipe

    def follow_calls(self, recipe: Recipe, origin: str) -> None:
        here = os.path.realpath(recipe.path) if recipe.path else None
        for spec in recipe.tasks:
            if spec.action != "call_job":
                continue
            label = _task_label(spec.name)
            target: str = spec.params["recipe"]
            key = os.path.realpath(target)
            try:
                if key in self._trail:  # itself, or a recipe on the way to it
                    raise _CycleFound(key, [target])
                if len(self._trail) >= MAX_CALL_CHAIN:
                    raise _Problem(
                        label, "recipe", f"recipes call one another more than {MAX_CALL_CHAIN} deep"
                    )
                self.load(target, _shown(target, origin))
            except RecipeError as exc:
                raise _Problem(label, "recipe", str(exc)) from None
            except _CycleFound as found:
                assert recipe.path is not None  # only a file can be called back
                chain = [recipe.path, *found.chain]
                if found.start != here:
                    raise _CycleFound(found.start, chain) from None
                start_dir = os.path.dirname(recipe.path)
                names = " -> ".join(os.path.relpath(p, start_dir) for p in chain)
                raise _Problem(label, "recipe", f"recipe cycle {names}") from None


def _shown(target: str, caller_origin: str) -> str:
    """A called recipe's path as an error shows it: relative where its caller's was."""
    return target if os.path.isabs(caller_origin) else os.path.relpath(target)


# -- validation ----------------------------------------------------------------------


def _build(data: dict, origin: str, base_dir: Path, path: str | None, loader: _Loader) -> Recipe:
    try:
        recipe = _validate(data, base_dir, path)
        loader.follow_calls(recipe, origin)
    except _Problem as p:
        raise _error(origin, p.task, p.field, p.problem) from None
    return recipe


def _validate(data: dict, base_dir: Path, path: str | None) -> Recipe:
    for key in data:
        if key not in TOP_LEVEL_FIELDS:
            raise _Problem(None, key, f"unknown field (known: {', '.join(TOP_LEVEL_FIELDS)})")
    name = _top(data, "name", str, required=True)
    if not name.strip():
        raise _Problem(None, "name", "must not be empty")
    _check_name_length(None, name)
    system = _top(data, "system", bool, default=False)
    description = _top(data, "description", str, default="")
    max_attempts = _top(data, "max_attempts", int, default=3)
    if max_attempts < 1:
        raise _Problem(None, "max_attempts", f"must be at least 1, got {max_attempts}")
    if max_attempts > MAX_ATTEMPTS:
        raise _Problem(
            None, "max_attempts", f"must be at most {MAX_ATTEMPTS}, got {_number(max_attempts)}"
        )
    raw_tasks = data.get("task")
    if raw_tasks is None:
        raise _Problem(None, "task", "missing: a recipe needs at least one [[task]]")
    if not isinstance(raw_tasks, list) or not all(isinstance(t, dict) for t in raw_tasks):
        raise _Problem(None, "task", "expected an array of tables ([[task]])")
    if not raw_tasks:
        raise _Problem(None, "task", "a recipe needs at least one [[task]]")

    tasks: list[TaskSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_tasks, start=1):
        spec = _task(raw, index, base_dir)
        if spec.name in seen:
            raise _Problem(_task_label(spec.name), "name", "duplicate task name")
        seen.add(spec.name)
        tasks.append(spec)
    for spec in tasks:
        for dep in spec.after:
            if dep not in seen:
                raise _Problem(_task_label(spec.name), "after", f"no task named {dep!r}")
    _check_cycles(tasks)
    return Recipe(
        name=name,
        path=path,
        system=system,
        tasks=tuple(tasks),
        max_attempts=max_attempts,
        description=description,
    )


def _top(data: dict, key: str, kind: type, *, required: bool = False, default: Any = None) -> Any:
    if key not in data:
        if required:
            raise _Problem(None, key, "missing")
        return default
    value = data[key]
    if not _is_kind(value, kind):
        raise _Problem(None, key, f"{_expected(kind)}, got {_show(value)}")
    return value


def _task(raw: dict, index: int, base_dir: Path) -> TaskSpec:
    label = f"task #{index}"
    name = raw.get("name")
    if name is None:
        raise _Problem(label, "name", "missing")
    if not isinstance(name, str):
        raise _Problem(label, "name", f"expected a string, got {_show(name)}")
    if not name.strip():
        raise _Problem(label, "name", "must not be empty")
    _check_name_length(label, name)
    label = _task_label(name)
    action_name = raw.get("action")
    if action_name is None:
        raise _Problem(label, "action", "missing")
    if not isinstance(action_name, str):
        raise _Problem(label, "action", f"expected a string, got {_show(action_name)}")
    action = ACTIONS.get(action_name)
    if action is None:
        raise _Problem(
            label, "action", f"unknown action {action_name!r} (known: {', '.join(sorted(ACTIONS))})"
        )
    after = raw.get("after", [])
    if isinstance(after, str):
        after = [after]  # a single dependency written without brackets
    if not isinstance(after, list) or not all(isinstance(d, str) for d in after):
        raise _Problem(label, "after", f"expected a list of task names, got {_show(after)}")
    params = _params(
        action, label, {k: v for k, v in raw.items() if k not in TASK_FIELDS}, base_dir
    )
    return TaskSpec(name=name, action=action_name, after=tuple(dict.fromkeys(after)), params=params)


def _params(action: Action, task: str, given: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    schema = {p.name: p for p in action.params}
    out: dict[str, Any] = {}
    passed_through: dict[str, Any] = {}
    for key, value in given.items():
        if key in schema:
            continue
        if action.extra.get("open_params"):
            passed_through[key] = value  # handed to the user's function as is
            continue
        known = ", ".join([*TASK_FIELDS, *schema]) or "none"
        raise _Problem(task, key, f"unknown parameter for action {action.name!r} (known: {known})")
    for param in action.params:
        if param.name not in given:
            if param.required:
                raise _Problem(task, param.name, "missing parameter")
            out[param.name] = (
                list(param.default) if isinstance(param.default, list) else param.default
            )
            continue
        out[param.name] = _param_value(param, task, given[param.name], base_dir)
    out.update(passed_through)
    if action.check is not None:
        found = action.check(out)
        if found is not None:
            raise _Problem(task, found[0], found[1])
    return out


def _param_value(param: Param, task: str, value: Any, base_dir: Path) -> Any:
    kinds = param.kind if isinstance(param.kind, tuple) else (param.kind,)
    if not any(_is_kind(value, k) for k in kinds):
        wanted = " or ".join(_expected(k).removeprefix("expected ") for k in kinds)
        raise _Problem(task, param.name, f"expected {wanted}, got {_show(value)}")
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and float in kinds
        and int not in kinds
    ):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Problem(task, param.name, f"expected a finite number, got {value}")
    if param.choices and value not in param.choices:
        options = ", ".join(repr(c) for c in param.choices)
        raise _Problem(task, param.name, f"expected one of {options}, got {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if param.minimum is not None and value < param.minimum:
            raise _Problem(
                task, param.name, f"must be at least {param.minimum:g}, got {_number(value)}"
            )
        most = param.maximum if param.maximum is not None else MAX_INT
        if value > most or value < -MAX_INT:
            raise _Problem(
                task, param.name, f"must be at most {_number(most)}, got {_number(value)}"
            )
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) and "\x00" in v for v in texts):
        # No path, argument or query can hold one: the task would fail with a ValueError.
        raise _Problem(task, param.name, "must not contain a NUL character")
    if param.is_path:
        if not value.strip():
            raise _Problem(task, param.name, "expected a path, got an empty string")
        value = os.path.abspath(base_dir / os.path.expanduser(value))
    if isinstance(value, list):
        value = list(value)
    return value


def _number(x: float) -> str:
    """A bound or a value as a reader writes it: 31536000, 0.5, 1e+300."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if len(str(x)) <= 24 else f"{x:.3e}"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}"


def _check_name_length(task: str | None, name: str) -> None:
    if len(name) > MAX_NAME:
        raise _Problem(task, "name", f"longer than {MAX_NAME} characters ({len(name):,})")


def _is_kind(value: Any, kind: type) -> bool:
    # TOML booleans are Python ints: true must not pass for an integer or a number.
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind)


def _expected(kind: type) -> str:
    return {
        str: "expected a string",
        int: "expected an integer",
        float: "expected a number",
        bool: "expected true or false",
        list: "expected a list of strings",
        dict: "expected a table",
    }.get(kind, f"expected {kind.__name__}")


def _check_cycles(tasks: list[TaskSpec]) -> None:
    """Depth-first along ``after``; iterative, since a recipe may chain thousands of tasks."""
    deps = {t.name: t.after for t in tasks}
    done: set[str] = set()  # known to reach no cycle
    for root in (t.name for t in tasks):
        if root in done:
            continue
        trail = [root]
        on_trail = {root}
        pending = [iter(deps[root])]
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                pending.pop()
                finished = trail.pop()
                on_trail.discard(finished)
                done.add(finished)
            elif dep in on_trail:
                cycle = trail[trail.index(dep) :] + [dep]
                raise _Problem(
                    _task_label(cycle[0]), "after", "dependency cycle " + " -> ".join(cycle)
                )
            elif dep not in done:
                trail.append(dep)
                on_trail.add(dep)
                pending.append(iter(deps[dep]))


# -- the recipe as stored with its job ------------------------------------------------


def recipe_to_json(recipe: Recipe) -> str:
    """The parsed recipe as stored with the job at submit (what a rerun runs)."""
    return json.dumps(
        {
            "name": recipe.name,
            "path": recipe.path,
            "system": recipe.system,
            "max_attempts": recipe.max_attempts,
            "description": recipe.description,
            "tasks": [
                {"name": t.name, "action": t.action, "after": list(t.after), "params": t.params}
                for t in recipe.tasks
            ],
        }
    )


def recipe_from_json(text: str) -> Recipe:
    data = json.loads(text)
    return Recipe(
        name=data["name"],
        path=data.get("path"),
        system=bool(data.get("system", False)),
        tasks=tuple(
            TaskSpec(t["name"], t["action"], tuple(t.get("after", ())), dict(t["params"]))
            for t in data["tasks"]
        ),
        max_attempts=int(data.get("max_attempts", 3)),
        description=data.get("description", ""),
    )
