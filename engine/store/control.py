"""Operator requests, each one transaction in the database: the engine reacts to them.

Cancel, abort, enhanced abort, hold/release and approve/reject, for whoever asks
(the console, bulk actions, the command line on PostgreSQL): each runs its flow
(``engine.flows.base`` and its kin) on a SQLAlchemy connection, the same flow the command
line runs on the light path. The engine serving the job's servers notices the commit
through ``PRAGMA data_version`` and stops the running work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    select,
)

from engine.core.identity import current_actor
from engine.core.views import JobView
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import bulk as bulk_flow
from engine.flows import requests as request_flows
from engine.flows.abort import AbortPlan, DisruptedJob  # noqa: F401 - their home before
from engine.flows.base import Refused  # noqa: F401 - the requests' refusal, as before
from engine.flows.bulk import BULK_KINDS, BulkJob, BulkPlan, BulkResult  # noqa: F401 - as before
from engine.store import permissions
from engine.store.db import Store
from engine.store.flow_statements import flow_sql, flow_transaction
from engine.store.tables import task


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def get_job(conn: Connection, job_id: int) -> JobView:
    return flows.job_view(flow_sql(conn), job_id)


def cancel(
    store: Store, job_id: int, *, actor: str, reason: str | None = None, now: float | None = None
) -> str:
    """Cancel one job (``engine.flows.base.cancel``, the transaction the light path runs too)."""
    return flows.cancel(
        lambda: flow_transaction(store), job_id, actor=actor, words=reason, at=_now(now)
    )


def job_tree(conn: Connection, job_id: int) -> list[JobView]:
    """The job and all its descendants, parents before children."""
    return flows.job_tree(flow_sql(conn), job_id)


def cancel_tree_preview(
    store: Store, job_id: int, *, actor: str | None = None
) -> list[tuple[JobView, str | None]]:
    """Each job of the tree with the reason it would be skipped (None: it will be canceled);
    the ``managers`` rule is applied for ``actor`` (default: the current user)."""
    with store.read() as conn:
        w = permissions.who(conn, actor)
        return [(job, flows.cancel_refusal_for(w, job)) for job in job_tree(conn, job_id)]


def cancel_refusal(store: Store, job_id: int, *, actor: str | None = None) -> str | None:
    """Why ``cancel`` would refuse this job now (one line), or None if it would not.

    Includes the ``managers`` rule for ``actor`` (default: the current user)."""
    with store.read() as conn:
        sql = flow_sql(conn)
        ((_, why),) = flows.cancel_dry_run(sql, job_id, actor=actor or current_actor(), tree=False)
        return why


def cancel_with_children(
    store: Store, job_id: int, *, actor: str, reason: str | None = None, now: float | None = None
) -> str:
    """Cancel the job and every job it called (``engine.flows.base.cancel_tree``)."""
    return flows.cancel_tree(
        lambda: flow_transaction(store), job_id, actor=actor, words=reason, at=_now(now)
    )


def _abort_plan(conn: Connection, job: JobView, enhanced: bool) -> AbortPlan:
    return abort_flow.plan(flow_sql(conn), job, enhanced)


def abort_preview(
    store: Store, job_id: int, *, enhanced: bool = False, actor: str | None = None
) -> AbortPlan:
    """What ``abort`` would stop, without changing anything; raises Refused like abort.

    With ``actor``, also refuses (without recording it: nothing was attempted) when the
    ``managers`` setting does not let ``actor`` abort."""
    with store.read() as conn:
        return abort_flow.preview(flow_sql(conn), job_id, enhanced=enhanced, actor=actor)


def abort(
    store: Store,
    job_id: int,
    *,
    actor: str,
    enhanced: bool = False,
    confirmed: AbortPlan | None = None,
    now: float | None = None,
) -> str:
    """Abort as planned by ``abort_preview`` (``engine.flows.abort.abort``, the flow the
    command line runs on the light path)."""
    return abort_flow.abort(
        lambda: flow_transaction(store),
        job_id,
        actor=actor,
        enhanced=enhanced,
        confirmed=confirmed,
        at=_now(now),
    )


def hold(store: Store, job_id: int, *, actor: str, now: float | None = None) -> str:
    return request_flows.hold(lambda: flow_transaction(store), job_id, actor=actor, at=_now(now))


def release(store: Store, job_id: int, *, actor: str, now: float | None = None) -> str:
    return request_flows.release(lambda: flow_transaction(store), job_id, actor=actor, at=_now(now))


def decide_approval(
    store: Store,
    job_id: int,
    task: str | int,
    *,
    approve: bool,
    actor: str,
    now: float | None = None,
) -> str:
    return request_flows.decide_approval(
        lambda: flow_transaction(store), job_id, task, approve=approve, actor=actor, at=_now(now)
    )


# -- beyond one job at a time: bulk cancel and abort (``engine.flows.bulk``) ------------


def bulk_plan(store: Store, kind: str, *, actor: str, **filters: Any) -> BulkPlan:
    """Plan a bulk ``kind`` on the jobs selected by ``job_ids`` and/or the filters
    (``bulk_flow.plan``). Changes nothing; raises Refused as it does."""
    with store.read() as conn:
        return bulk_flow.plan(flow_sql(conn), kind, actor=actor, **filters)


def bulk_apply(
    store: Store,
    plan: BulkPlan,
    *,
    actor: str,
    reason: str | None = None,
    now: float | None = None,
) -> list[BulkResult]:
    """Carry out ``plan``, one transaction per job (``bulk_flow.apply``)."""
    return bulk_flow.apply(
        lambda: flow_transaction(store), plan, actor=actor, reason=reason, at=_now(now)
    )


@dataclass(frozen=True)
class CancelPreview:
    """What the console needs before it asks: the job, why a cancel would be refused
    now (None: it would not), and what it would do to the job's tasks."""

    job: JobView | None  # None: there is no such job (the refusal says so)
    refusal: str | None
    not_started: int = 0  # Waiting/Ready tasks: they become Didn't run
    running: int = 0  # Executing tasks: they become Canceling and wind down
    tasks: tuple[Any, ...] = ()  # those tasks (TaskView), each with how a cancel stops it


def cancel_preview(store: Store, job_id: int, *, actor: str | None = None) -> CancelPreview:
    """One read for a cancel confirmation: the job, the refusal (the ``managers`` rule for
    ``actor`` included) and the plan together. ``cancel`` checks the refusal again when
    it runs, in its own transaction."""
    with store.read() as conn:
        try:
            job = get_job(conn, job_id)
        except Refused as exc:
            return CancelPreview(None, str(exc))
        w = permissions.who(conn, actor)
        refusal = flows.cancel_refusal_for(w, job)
        rows = conn.execute(
            select(task.c.status, func.count())
            .where(task.c.job_id == job_id)
            .group_by(task.c.status)
        ).all()
        counts = {status: n for status, n in rows}
        running = counts.get("executing", 0)
        tasks = abort_flow.tasks_in(flow_sql(conn), job_id, ["executing"]) if running else []
    return CancelPreview(
        job,
        refusal,
        not_started=counts.get("waiting", 0) + counts.get("ready", 0),
        running=running,
        tasks=tuple(tasks),
    )
