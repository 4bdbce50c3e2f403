"""Turning a validated recipe into a job with its tasks and dependencies, in one transaction.

The transaction is ``engine.flows.insert_job``, run here on SQLAlchemy; the command line's
``submit`` runs the same flow on the light path (``engine.read_sql.LightSql``)."""

from __future__ import annotations

import time

from sqlalchemy import Connection

from engine import flows
from engine.db import Store
from engine.flow_statements import flow_sql, flow_transaction
from engine.recipes import Recipe, recipe_from_json, recipe_to_json  # noqa: F401


def insert_job(
    conn: Connection,
    recipe: Recipe,
    *,
    actor: str,
    at: float,
    system: bool | None = None,
    parent_id: int | None = None,
    parent_task_id: int | None = None,
    call_mode: str | None = None,
    rerun_of: int | None = None,
    carried: dict[str, str] | None = None,
) -> int:
    """Insert a job and its tasks (``flows.insert_job``) in ``conn``'s transaction."""
    return flows.insert_job(
        flow_sql(conn),
        recipe,
        actor=actor,
        at=at,
        system=system,
        parent_id=parent_id,
        parent_task_id=parent_task_id,
        call_mode=call_mode,
        rerun_of=rerun_of,
        carried=carried,
    )


def submit(
    store: Store,
    recipe: Recipe,
    *,
    actor: str,
    system: bool | None = None,
    now: float | None = None,
) -> int:
    at = time.time() if now is None else now
    return flows.submit(lambda: flow_transaction(store), recipe, actor=actor, system=system, at=at)
