"""Who may do what: the ``managers`` setting (D365's "batch job manager").

Unset (the default), everyone is a manager, as before the setting existed. When set
(Unix user names and ``@group`` names, comma-separated):

- abort and enhanced abort need a manager;
- cancel needs the job's submitter or a manager;
- changing a setting needs a manager.

A refusal is one line naming the rule and the user, and it is recorded in the audit
(an event of kind ``refused``) in a transaction of its own, since the refused request
itself writes nothing.

What this protects: an operator using batchdeck from aborting other people's jobs by
mistake or by habit. What it does not: on SQLite, anyone who can write the database
file can write the rows directly (see README, "Who may abort").
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, select

from engine.core.identity import current_actor

# The rule itself needs no database layer: the command line's light cancel applies it too.
from engine.core.manager_rule import (  # noqa: F401
    Action,
    NotAllowed,
    Who,
    is_manager,
    refusal,
    user_groups,
)
from engine.flows import base as flows
from engine.flows import settings as setting_flows
from engine.store.db import Store
from engine.store.flow_statements import flow_sql, flow_transaction
from engine.store.tables import job


def who(conn: Connection, actor: str | None = None) -> Who:
    return flows.who(flow_sql(conn), actor or current_actor())


def whoami(store: Store, actor: str | None = None) -> Who:
    """Who am I, and am I a manager: for the console's header."""
    with store.read() as conn:
        return who(conn, actor)


def job_refusal(conn: Connection, w: Who, action: Action, job_id: int) -> str | None:
    """Why ``w`` may not do ``action`` to job ``job_id`` (None: allowed, or no such job)."""
    if w.manager:
        return None
    row = conn.execute(select(job.c.submitted_by).where(job.c.id == job_id)).first()
    return refusal(w, action, row.submitted_by if row else None)


def may(
    store: Store, action: Action, job_id: int | None = None, *, actor: str | None = None
) -> str | None:
    """May I do ``action`` (to job ``job_id``)? None if so, else the one-line refusal.

    For the console, to hide what the user may not do; the request itself checks again.
    """
    with store.read() as conn:
        w = who(conn, actor)
        if job_id is None:
            return refusal(w, action)
        return job_refusal(conn, w, action, job_id)


def audit_refusal(
    store: Store, actor: str, text: str, *, job_id: int | None = None, now: float | None = None
) -> None:
    """Record a refusal in the audit, in its own transaction (``flows.audit_refusal``)."""
    at = time.time() if now is None else now
    flows.audit_refusal(lambda: flow_transaction(store), text, actor=actor, job_id=job_id, at=at)


def put_setting(
    store: Store, key: str, value: str, *, actor: str, now: float | None = None
) -> None:
    """Change a setting, if ``actor`` is a manager; audited either way
    (``setting_flows.put``)."""
    at = time.time() if now is None else now
    try:
        setting_flows.put(lambda: flow_transaction(store), key, value, actor=actor, at=at)
    except flows.Refused as exc:
        raise NotAllowed(str(exc)) from None
