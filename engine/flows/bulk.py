"""Bulk cancel and abort as flows (``engine.flows.base``): the plan an operator confirms (the
console's marked rows, ``batchdeck cancel/abort --all``), then the cancels in chunks of
jobs, a transaction each, or one transaction per abort.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core.identity import user_name
from engine.core.manager_rule import refusal
from engine.core.refusal import Refusal
from engine.core.statuses import LABELS, no_such_job
from engine.core.views import JobView
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows.abort import AbortPlan, DisruptedJob
from engine.flows.base import Transaction, at_or_now
from engine.sql import keys
from engine.sql.keys import jobs_key
from engine.sql.protocol import Sql

BULK_KINDS = ("cancel", "abort", "enhanced_abort")


@dataclass(frozen=True)
class BulkJob:
    job: JobView
    refusal: Refusal | None  # None: it will be acted on
    abort: AbortPlan | None = None  # abort kinds: what it will stop (the confirmed plan)


@dataclass
class BulkPlan:
    """What a bulk cancel or abort will do to each job it selected, and what it refuses.

    The console's bulk confirmation and ``batchdeck cancel/abort --all`` both show this;
    ``apply`` then acts on exactly the jobs listed here as acted on.
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

    @property
    def servers(self) -> list[str]:
        """Servers an enhanced abort of the jobs acted on restarts (every job's plan)."""
        return sorted({s for j in self.act if j.abort is not None for s in j.abort.servers})

    @property
    def drain_seconds(self) -> float:
        return max((j.abort.drain_seconds for j in self.act if j.abort is not None), default=0.0)

    @property
    def disrupted(self) -> list[DisruptedJob]:
        """Every other job those restarts interrupt: the jobs acted on are not "other"."""
        acted = {j.job.id for j in self.act}
        names: dict[int, str] = {}
        tasks: dict[int, list[str]] = {}
        for j in self.act:
            for d in j.abort.disrupted if j.abort is not None else []:
                if d.id in acted:
                    continue
                names[d.id] = d.name
                have = tasks.setdefault(d.id, [])
                have += [t for t in d.tasks if t not in have]
        return [DisruptedJob(i, names[i], tuple(tasks[i])) for i in sorted(names)]

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
    sql: Sql,
    *,
    job_ids: list[int] | None = None,
    statuses: list[str] | None = None,
    name: str | None = None,
    user: str | None = None,
) -> list[JobView]:
    """The jobs a bulk action considers. Without ``job_ids`` or ``statuses``: every job
    not in a final status (the others could only be refused)."""
    params: dict[str, object] = {}
    if job_ids is not None:
        params["ids"] = job_ids
    if statuses:
        params["statuses"] = statuses
    if name:
        params["name"] = name
    key = jobs_key(ids=job_ids is not None, statuses=bool(statuses), name=bool(name))
    jobs = [flows.view_of(r) for r in sql.rows(key, params)]
    if user:
        jobs = [j for j in jobs if user_name(j.submitted_by) == user]
    return jobs


def plan(
    sql: Sql,
    kind: str,
    *,
    actor: str,
    job_ids: list[int] | None = None,
    statuses: list[str] | None = None,
    name: str | None = None,
    user: str | None = None,
) -> BulkPlan:
    """Plan a bulk ``kind`` (cancel, abort, enhanced_abort) on the jobs selected by ids
    (marked rows) and/or filters. Changes nothing. Raises a Refusal (``rule``) when
    ``actor`` may not do ``kind`` at all (abort without being a manager)."""
    if kind not in BULK_KINDS:
        raise ValueError(f"unknown bulk action {kind!r}")
    w = flows.who(sql, actor)
    if kind != "cancel":
        denied = refusal(w, kind)  # type: ignore[arg-type]
        if denied:
            raise denied
    jobs = select_jobs(sql, job_ids=job_ids, statuses=statuses, name=name, user=user)
    out = BulkPlan(kind)
    if job_ids is not None:
        found = {j.id for j in jobs}
        exist = {r.id for r in sql.rows(keys.BULK_EXIST, {"ids": job_ids})}
        out.missing = sorted(set(job_ids) - exist - found)
    for job in jobs:
        if kind == "cancel":
            out.jobs.append(BulkJob(job, flows.cancel_refusal(w, job)))
            continue
        try:
            out.jobs.append(BulkJob(job, None, abort_flow.plan(sql, job, kind != "abort")))
        except Refusal as exc:
            out.jobs.append(BulkJob(job, exc))
    return out


def _for_job(job_id: int, why: Refusal | None) -> str:
    """A refusal as one line naming the job once."""
    text = "" if why is None else str(why)
    return text if text.startswith(f"Job {job_id}") else f"Job {job_id}: {text}"


# Jobs canceled in one transaction: a few ms of the write lock on either database, so
# another operator's single cancel is never held up for long.
CHUNK_JOBS = 500


def _cancel_in_chunks(
    transaction: Transaction,
    bulk: BulkPlan,
    *,
    actor: str,
    reason: str | None,
    at: float,
) -> dict[int, BulkResult]:
    """The cancels of ``bulk``, ``CHUNK_JOBS`` jobs a transaction; each job is checked
    again in its chunk's transaction. A refusal by the ``managers`` rule, at the plan (in
    the first transaction) or now, is recorded in the audit."""
    results: dict[int, BulkResult] = {}
    todo = [j.job.id for j in bulk.act]
    audit = [(j.job.id, j.refusal) for j in bulk.refused if j.refusal and j.refusal.audited]
    chunks = [todo[i : i + CHUNK_JOBS] for i in range(0, len(todo), CHUNK_JOBS)]
    if audit and not chunks:
        chunks = [[]]
    for n, chunk in enumerate(chunks):
        with transaction() as sql:
            refused: list[tuple[int, Refusal]] = list(audit) if n == 0 else []
            w = flows.who(sql, actor)
            now = {j.id: j for j in sql.rows(keys.BULK_RECHECK, {"ids": chunk})} if chunk else {}
            running: list[int] = []
            waiting: list[int] = []
            for job_id in chunk:
                job = now.get(job_id)
                if job is None:
                    why: Refusal | None = Refusal("missing", no_such_job(job_id))
                else:
                    why = flows.cancel_refusal(w, job)
                if why is None:
                    (running if job.status == "executing" else waiting).append(job_id)
                    continue
                if why.audited:
                    refused.append((job_id, why))
                results[job_id] = BulkResult(job_id, False, _for_job(job_id, why))
            for job_id, why in refused:
                flows.add_event(
                    sql, at=at, actor=actor, kind="refused", job_id=job_id, reason=why.text
                )
            canceled = flows.cancel_many(sql, running, waiting, actor=actor, words=reason, at=at)
            for job_id in running + waiting:
                status = "canceled" if job_id in canceled else "canceling"
                results[job_id] = BulkResult(job_id, True, f"Job {job_id} {LABELS[status]}")
    return results


def apply(
    transaction: Transaction,
    bulk: BulkPlan,
    *,
    actor: str,
    reason: str | None = None,
    at: float | None = None,
) -> list[BulkResult]:
    """Carry out ``bulk`` on exactly the jobs it acts on (a job that matches the filter
    only now is left alone): a cancel in chunks of ``CHUNK_JOBS`` jobs, a transaction
    each; an abort, a transaction per job. Each job is checked again as it is reached;
    an abort whose tasks grew since the plan is refused for that job. Returns one result
    per job of the plan, refused ones included. ``at``: default now."""
    at = at_or_now(at)
    if bulk.kind == "cancel":
        done = _cancel_in_chunks(transaction, bulk, actor=actor, reason=reason, at=at)
        return [
            done.get(j.job.id) or BulkResult(j.job.id, False, _for_job(j.job.id, j.refusal))
            for j in bulk.jobs
        ]
    results: list[BulkResult] = []
    for item in bulk.jobs:
        job = item.job
        if item.refusal is not None:
            if item.refusal.audited:
                flows.audit_refusal(
                    transaction, item.refusal.text, actor=actor, job_id=job.id, at=at
                )
            results.append(BulkResult(job.id, False, _for_job(job.id, item.refusal)))
            continue
        try:
            if bulk.kind == "cancel":
                text = flows.cancel(transaction, job.id, actor=actor, words=reason, at=at)
            else:
                text = abort_flow.abort(
                    transaction,
                    job.id,
                    actor=actor,
                    enhanced=bulk.kind == "enhanced_abort",
                    confirmed=item.abort,
                    at=at,
                )
        except Refusal as exc:
            results.append(BulkResult(job.id, False, _for_job(job.id, exc)))
        else:
            results.append(BulkResult(job.id, True, text))
    return results
