"""Operator requests, each one transaction in the database: the engine reacts to them.

Cancel, abort, enhanced abort, hold/release and approve/reject, for whoever asks
(the console, bulk actions, the command line on PostgreSQL): each runs its flow
(``engine.flows`` and its kin) on a SQLAlchemy connection, the same flow the command
line runs on the light path. The engine serving the job's servers notices the commit
through ``PRAGMA data_version`` and stops the running work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import (
    Connection,
    func,
    select,
)

from engine import abort_flow, flows, permissions, request_flows
from engine.abort_flow import AbortPlan, DisruptedJob  # noqa: F401 - their home before
from engine.db import Store
from engine.dialect import glob, in_list
from engine.flow_statements import JOB_COLUMNS, flow_sql, flow_transaction
from engine.flows import Refused  # noqa: F401 - the requests' refusal, as before
from engine.identity import current_actor, user_name
from engine.query import JobView
from engine.statuses import JOB_TERMINAL
from engine.tables import job as job_t
from engine.tables import task


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def get_job(conn: Connection, job_id: int) -> JobView:
    return flows.job_view(flow_sql(conn), job_id)


def cancel(
    store: Store, job_id: int, *, actor: str, reason: str | None = None, now: float | None = None
) -> str:
    """Cancel one job (``engine.flows.cancel``, the transaction the light path runs too)."""
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
    """Cancel the job and every job it called (``engine.flows.cancel_tree``)."""
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
    """Abort as planned by ``abort_preview`` (``engine.abort_flow.abort``, the flow the
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


# -- beyond one job at a time: bulk cancel and abort -----------------------------------

BULK_KINDS = ("cancel", "abort", "enhanced_abort")


@dataclass(frozen=True)
class BulkJob:
    job: JobView
    refusal: str | None  # None: it will be acted on
    abort: AbortPlan | None = None  # abort kinds: what it will stop (the confirmed plan)


@dataclass
class BulkPlan:
    """What a bulk cancel or abort will do to each job it selected, and what it refuses.

    The console's bulk confirmation and ``batchdeck cancel/abort --all`` both show this;
    ``bulk_apply`` then acts on exactly the jobs listed here as acted on.
    """

    kind: str  # cancel, abort, enhanced_abort
    jobs: list[BulkJob] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # ids asked for that do not exist

    @property
    def act(self) -> list[BulkJob]:
        return [j for j in self.jobs if j.refusal is None]

    @property
    def refused(self) -> list[BulkJob]:
        return [j for j in self.jobs if j.refusal is not None]

    def counts(self) -> dict[str, int]:
        """Jobs acted on, by status."""
        out: dict[str, int] = {}
        for j in self.act:
            out[j.job.status] = out.get(j.job.status, 0) + 1
        return out


@dataclass(frozen=True)
class BulkResult:
    job_id: int
    done: bool
    text: str  # "Job 12 Canceling" or the refusal


def select_jobs(
    conn: Connection,
    *,
    job_ids: list[int] | None = None,
    statuses: list[str] | None = None,
    name: str | None = None,
    user: str | None = None,
) -> list[JobView]:
    """The jobs a bulk action considers. Without ``job_ids`` or ``statuses``: every job
    not in a final status (the others could only be refused)."""
    stmt = select(*JOB_COLUMNS).order_by(job_t.c.id)
    if job_ids is not None:
        stmt = stmt.where(in_list(job_t.c.id, job_ids))
    if statuses:
        stmt = stmt.where(job_t.c.status.in_(statuses))
    elif job_ids is None:
        stmt = stmt.where(job_t.c.status.not_in(sorted(JOB_TERMINAL)))
    if name:
        stmt = stmt.where(glob(job_t.c.name, name))
    jobs = [flows.view_of(r) for r in conn.execute(stmt)]
    if user:
        jobs = [j for j in jobs if user_name(j.submitted_by) == user]
    return jobs


def bulk_plan(
    store: Store,
    kind: str,
    *,
    actor: str,
    job_ids: list[int] | None = None,
    statuses: list[str] | None = None,
    name: str | None = None,
    user: str | None = None,
) -> BulkPlan:
    """Plan a bulk ``kind`` (cancel, abort, enhanced_abort) on the jobs selected by ids
    (marked rows) and/or filters. Changes nothing. Raises Refused when ``actor`` may
    not do ``kind`` at all (abort without being a manager)."""
    if kind not in BULK_KINDS:
        raise ValueError(f"unknown bulk action {kind!r}")
    with store.read() as conn:
        w = permissions.who(conn, actor)
        if kind != "cancel":
            denied = permissions.refusal(w, kind)  # type: ignore[arg-type]
            if denied:
                raise Refused(denied)
        jobs = select_jobs(conn, job_ids=job_ids, statuses=statuses, name=name, user=user)
        plan = BulkPlan(kind)
        if job_ids is not None:
            found = {j.id for j in jobs}
            exist = set(
                conn.execute(select(job_t.c.id).where(in_list(job_t.c.id, job_ids))).scalars()
            )
            plan.missing = sorted(set(job_ids) - exist - found)
        for job in jobs:
            if kind == "cancel":
                why = flows.cancel_refusal_for(w, job)
                plan.jobs.append(BulkJob(job, why))
                continue
            try:
                plan.jobs.append(BulkJob(job, None, _abort_plan(conn, job, kind != "abort")))
            except Refused as exc:
                plan.jobs.append(BulkJob(job, str(exc)))
    return plan


def _for_job(job_id: int, text: str) -> str:
    """A refusal as one line naming the job once."""
    return text if text.startswith(f"Job {job_id}") else f"Job {job_id}: {text}"


def bulk_apply(
    store: Store,
    plan: BulkPlan,
    *,
    actor: str,
    reason: str | None = None,
    now: float | None = None,
) -> list[BulkResult]:
    """Carry out ``plan``: one transaction per job, on exactly the jobs it acts on (a job
    that matches the filter only now is left alone). Each job is checked again as it is
    reached; an abort whose tasks grew since the plan is refused for that job. Returns
    one result per job of the plan, refused ones included."""
    at = _now(now)
    results: list[BulkResult] = []
    for item in plan.jobs:
        job = item.job
        if item.refusal is not None:
            if item.refusal.startswith("Cancel needs"):
                permissions.audit_refusal(store, actor, item.refusal, job_id=job.id, now=at)
            results.append(BulkResult(job.id, False, _for_job(job.id, item.refusal)))
            continue
        try:
            if plan.kind == "cancel":
                text = cancel(store, job.id, actor=actor, reason=reason, now=at)
            else:
                text = abort(
                    store,
                    job.id,
                    actor=actor,
                    enhanced=plan.kind == "enhanced_abort",
                    confirmed=item.abort,
                    now=at,
                )
        except Refused as exc:
            results.append(BulkResult(job.id, False, _for_job(job.id, str(exc))))
        else:
            results.append(BulkResult(job.id, True, text))
    return results


@dataclass(frozen=True)
class CancelPreview:
    """What the console needs before it asks: the job, why a cancel would be refused
    now (None: it would not), and what it would do to the job's tasks."""

    job: JobView | None  # None: there is no such job (the refusal says so)
    refusal: str | None
    not_started: int = 0  # Waiting/Ready tasks: they become Didn't run
    running: int = 0  # Executing tasks: they become Canceling and wind down


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
    return CancelPreview(
        job,
        refusal,
        not_started=counts.get("waiting", 0) + counts.get("ready", 0),
        running=counts.get("executing", 0),
    )
