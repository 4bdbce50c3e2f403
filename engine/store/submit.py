"""Turning a validated recipe into a job with its tasks and dependencies, in one transaction.

The transaction is ``engine.flows.base.insert_job``, run here on SQLAlchemy; the command line's
``submit`` runs the same flow on the light path (``engine.sql.light.LightSql``)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from engine.flows import base as flows
from engine.recipes import Recipe, recipe_from_json, recipe_to_json  # noqa: F401
from engine.store.db import Store
from engine.store.flow_statements import flow_sql, flow_transaction


def insert_job(conn: Connection, recipe: Recipe, **how: Any) -> int:
    """Insert a job and its tasks (``flows.insert_job``, whose keywords ``how`` takes) in
    ``conn``'s transaction."""
    return flows.insert_job(flow_sql(conn), recipe, **how)


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
