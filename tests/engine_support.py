"""Helpers for engine tests: recipes written to real files, polling without timed asserts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engine.flows import base as flows
from engine.recipes import load_recipe
from engine.store.db import Store
from tests.waiting import until  # noqa: F401 - the engine tests import it from here

R = TypeVar("R")


def reading(store: Store, flow: Callable[..., R], *args: Any, **kw: Any) -> R:
    """``flow(sql, *args, **kw)`` in one read transaction of ``store`` (``Store.reading``)."""
    with store.reading() as sql:
        return flow(sql, *args, **kw)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def write_recipe(directory: Path, name: str, tasks: list[dict[str, Any]], **top: Any) -> Path:
    lines = [f"name = {json.dumps(name)}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for t in tasks:
        lines.append("\n[[task]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in t.items()]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def submit_tasks(
    store: Store, directory: Path, name: str, tasks: list[dict[str, Any]], **top: Any
) -> int:
    return flows.submit(
        store.transaction, load_recipe(write_recipe(directory, name, tasks, **top)), actor="tester"
    )


def sql(conn: Any, query: str, params: tuple = ()) -> Any:
    """A query written with ``?`` placeholders, on either database."""
    if conn.dialect.name == "postgresql":
        query = query.replace("?", "%s")
    return conn.exec_driver_sql(query, params)


def job_status(store: Store, job_id: int) -> str:
    with store.read() as conn:
        return sql(conn, "SELECT status FROM job WHERE id=?", (job_id,)).scalar_one()


def task_row(store: Store, job_id: int, name: str) -> dict[str, Any]:
    with store.read() as conn:
        res = sql(conn, "SELECT * FROM task WHERE job_id=? AND name=?", (job_id, name))
        return dict(zip(res.keys(), res.one(), strict=True))


def task_statuses(store: Store, job_id: int) -> dict[str, str]:
    with store.read() as conn:
        return dict(
            sql(
                conn, "SELECT name, status FROM task WHERE job_id=? ORDER BY seq", (job_id,)
            ).fetchall()
        )


def job_row(store: Store, job_id: int) -> dict[str, Any]:
    with store.read() as conn:
        res = sql(conn, "SELECT * FROM job WHERE id=?", (job_id,))
        return dict(zip(res.keys(), res.one(), strict=True))


def events(store: Store, job_id: int) -> list[dict[str, Any]]:
    with store.read() as conn:
        res = sql(conn, "SELECT * FROM event WHERE job_id=? ORDER BY id", (job_id,))
        keys = list(res.keys())
        return [dict(zip(keys, r, strict=True)) for r in res.fetchall()]
