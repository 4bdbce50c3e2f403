"""Abort and enhanced abort as flows (``engine.flows.base``): the plan an operator confirms,
and the transaction that carries it out."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core.manager_rule import refusal
from engine.core.refusal import Refusal
from engine.core.setting_values import bounded
from engine.core.statuses import JOB_TERMINAL, LABELS
from engine.core.views import JobView, TaskView
from engine.flows.base import (
    Transaction,
    add_event,
    at_or_now,
    audit_refusal,
    cancel_in,
    finalize_jobs,
    job_view,
    move,
    setting,
    who,
)
from engine.flows.stopping import tasks_in
from engine.sql import keys
from engine.sql.protocol import Sql


@dataclass(frozen=True)
class DisruptedJob:
    id: int
    name: str
    tasks: tuple[str, ...]


@dataclass
class AbortPlan:
    """What an abort will stop, computed by the same code that then carries it out."""

    job: JobView
    enhanced: bool
    cancel_first: bool
    tasks: list[TaskView] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    disrupted: list[DisruptedJob] = field(default_factory=list)
    drain_seconds: float = 0.0


def plan(sql: Sql, job: JobView, enhanced: bool) -> AbortPlan:
    """What an abort of ``job`` would stop now; a Refusal when it cannot."""
    if job.system:
        raise Refusal("status", "System jobs cannot be aborted")
    if job.status in JOB_TERMINAL:
        raise Refusal("status", f"Job {job.id} already {LABELS[job.status]}")
    if job.status in ("waiting", "withhold"):
        raise Refusal(
            "status", f"Job {job.id} is {LABELS[job.status]}: nothing is running to abort"
        )
    if enhanced and setting(sql, "enhanced_abort") != "on":
        raise Refusal("setting", "Enhanced abort is turned off in settings")
    cancel_first = job.status == "executing"
    statuses = ["executing"] if cancel_first else ["canceling"]
    if enhanced:
        statuses.append("aborting")
    tasks = tasks_in(sql, job.id, statuses)
    if not tasks and not cancel_first:
        stuck = tasks_in(sql, job.id, ["aborting"])
        if stuck:
            raise Refusal(
                "status",
                f"Job {job.id}: {', '.join(t.name for t in stuck)} already Aborting, "
                "in an unmanaged wait; only an enhanced abort (restart) frees it",
            )
        raise Refusal("status", f"Job {job.id} has no Canceling task to abort")
    out = AbortPlan(job=job, enhanced=enhanced, cancel_first=cancel_first, tasks=tasks)
    if enhanced:
        out.servers = sorted({t.server for t in tasks if t.server})
        out.drain_seconds = bounded("drain_seconds", setting(sql, "drain_seconds"))
        if out.servers:
            names: dict[int, list[str]] = {}
            job_names: dict[int, str] = {}
            for jid, jname, tname in sql.rows(
                keys.ABORT_DISRUPTED, {"servers": out.servers, "job_id": job.id}
            ):
                names.setdefault(jid, []).append(tname)
                job_names[jid] = jname
            out.disrupted = [DisruptedJob(j, job_names[j], tuple(n)) for j, n in names.items()]
    return out


def _denied(sql: Sql, actor: str, enhanced: bool) -> Refusal | None:
    return refusal(who(sql, actor), "enhanced_abort" if enhanced else "abort")


def preview(
    sql: Sql, job_id: int, *, enhanced: bool = False, actor: str | None = None
) -> AbortPlan:
    """The plan, read only; a Refusal as ``abort`` would give. With ``actor``, also
    refused (not recorded: nothing was tried) when the ``managers`` rule does not let
    ``actor`` abort."""
    job = job_view(sql, job_id)
    if actor is not None:
        denied = _denied(sql, actor, enhanced)
        if denied:
            raise denied
    return plan(sql, job, enhanced)


def _beyond(now: AbortPlan, confirmed: AbortPlan) -> list[str]:
    """What ``now`` would stop or disrupt that the operator did not see in ``confirmed``."""
    seen_tasks = {t.id for t in confirmed.tasks}
    seen_jobs = {d.id for d in confirmed.disrupted}
    new = [f"task {t.name}" for t in now.tasks if t.id not in seen_tasks]
    new += [f"server {s}" for s in now.servers if s not in confirmed.servers]
    new += [f"job {d.id} {d.name}" for d in now.disrupted if d.id not in seen_jobs]
    return new


def live_servers(sql: Sql, at: float) -> list[str]:
    """Servers an engine holds a live lease on (leases in the database's time)."""
    ttl = bounded("lease_seconds", setting(sql, "lease_seconds"))
    return [r.name for r in sql.rows(keys.ABORT_LIVE_SERVERS, {"since": sql.db_now(at) - ttl})]


def abort(
    transaction: Transaction,
    job_id: int,
    *,
    actor: str,
    enhanced: bool = False,
    confirmed: AbortPlan | None = None,
    at: float | None = None,
) -> str:
    """Abort as ``preview`` plans it, in one transaction (``at``: default now). With
    ``confirmed`` (the plan the operator read and accepted), refuse if the plan has grown
    since: the operator decides on what will be stopped and disrupted, not on what it has
    become. Every refusal raises it; one by the ``managers`` rule is first recorded in the
    audit, in a transaction of its own."""
    at = at_or_now(at)
    with transaction() as sql:
        job = job_view(sql, job_id)
        denied = _denied(sql, actor, enhanced)
        if denied is None:
            done = _abort_in(sql, job, actor=actor, enhanced=enhanced, confirmed=confirmed, at=at)
    if denied is not None:
        audit_refusal(transaction, denied.text, actor=actor, job_id=job_id, at=at)
        raise denied
    return done


def _abort_in(
    sql: Sql,
    job: JobView,
    *,
    actor: str,
    enhanced: bool,
    confirmed: AbortPlan | None,
    at: float,
) -> str:
    now = plan(sql, job, enhanced)
    if confirmed is not None:
        grown = _beyond(now, confirmed)
        if grown:
            raise Refusal(
                "changed",
                "The abort plan changed since you confirmed it: it would now "
                f"also stop or disrupt {', '.join(grown)}. Nothing done; look again",
            )
    if now.cancel_first:
        cancel_in(sql, job.id, job.status, actor=actor, words=None, at=at)
    how = "enhanced abort" if enhanced else "abort"
    n = move(
        sql, keys.ABORT_ABORTING, at=at, actor=actor, reason=f"{how} by {actor}", job_id=job.id
    )
    # With no engine behind a server, the abort stays requested (Aborting): only an
    # engine can make sure the task's code runs nowhere, and its start-up recovery does
    # that before the task is reported Aborted.
    live = live_servers(sql, at)
    sql.run(keys.ABORT_JOB, {"job_id": job.id, "by": actor, "at": at})
    if enhanced:
        for name in [s for s in now.servers if s in live]:
            sql.run(
                keys.ABORT_DRAIN,
                {"name": name, "deadline": at + now.drain_seconds, "job_id": job.id},
            )
            add_event(
                sql,
                at=at,
                actor=actor,
                kind="server",
                server=name,
                job_id=job.id,
                reason=f"draining for restart ({how} of job {job.id})",
            )
    finalize_jobs(sql, [job.id], at=at)
    first = "Canceled and aborting" if now.cancel_first else "Aborting"
    text = f"{first} job {job.id}: {n} task{'s' if n != 1 else ''}"
    if enhanced and now.servers:
        text += f"; restarting {', '.join(now.servers)}"
    return text
