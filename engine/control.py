"""Operator requests, each one transaction in the database: the engine reacts to them.

Cancel, abort, enhanced abort, hold/release and approve/reject are written here by
whoever asks (console, command line); the engine serving the job's servers notices
the commit through ``PRAGMA data_version`` and stops the running work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import Connection

from engine import settings
from engine.db import Store
from engine.statuses import JOB_TERMINAL, LABELS
from engine.writes import IN_IDS, add_event, finalize_jobs, ids_json, move_job, move_tasks


class Refused(Exception):
    """The request cannot be done; the message is one line for the operator."""


@dataclass(frozen=True)
class JobRow:
    id: int
    name: str
    status: str
    system: bool
    parent_id: int | None


@dataclass(frozen=True)
class PlanTask:
    id: int
    job_id: int
    name: str
    server: str | None
    status: str
    started_at: float | None
    progress_done: float
    progress_total: float | None
    progress_unit: str | None


@dataclass(frozen=True)
class DisruptedJob:
    id: int
    name: str
    tasks: tuple[str, ...]


@dataclass
class AbortPlan:
    """What an abort will stop, computed by the same code that then carries it out."""

    job: JobRow
    enhanced: bool
    cancel_first: bool
    tasks: list[PlanTask] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    disrupted: list[DisruptedJob] = field(default_factory=list)
    drain_seconds: float = 0.0


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def live_servers(conn: Connection, now: float) -> list[str]:
    ttl = settings.lease_seconds(conn)
    rows = conn.exec_driver_sql(
        "SELECT name FROM server WHERE lease_owner IS NOT NULL AND heartbeat_at > ?",
        (now - ttl,),
    )
    return [r[0] for r in rows]


def get_job(conn: Connection, job_id: int) -> JobRow:
    row = conn.exec_driver_sql(
        "SELECT id, name, status, system, parent_id FROM job WHERE id=?", (job_id,)
    ).fetchone()
    if row is None:
        raise Refused(f"Job {job_id} does not exist")
    return JobRow(row[0], row[1], row[2], bool(row[3]), row[4])


def cancel_reason(actor: str, words: str | None) -> str:
    reason = f"Job canceled by {actor}"
    words = (words or "").strip()
    return f"{reason}: {words}" if words else reason


def _check_cancel(job: JobRow) -> None:
    if job.system:
        raise Refused("System jobs cannot be canceled")
    if job.status in JOB_TERMINAL:
        raise Refused(f"Job {job.id} already {LABELS[job.status]}")
    if job.status == "canceling":
        raise Refused(f"Job {job.id} is already Canceling: nothing to do")


def _cancel_in(conn: Connection, job: JobRow, actor: str, words: str | None, at: float) -> None:
    reason = cancel_reason(actor, words)
    move_tasks(
        conn,
        "didnt_run",
        "job_id=? AND status IN ('waiting', 'ready')",
        (job.id,),
        at=at,
        actor=actor,
        reason=reason,
        sets=", ended_at=?",
        set_params=(at,),
    )
    move_tasks(
        conn,
        "canceling",
        "job_id=? AND status='executing'",
        (job.id,),
        at=at,
        actor=actor,
        reason=reason,
    )
    fields = ", canceled_by=?, canceled_at=?, cancel_reason=?"
    if job.status == "executing":
        move_job(
            conn,
            job.id,
            "canceling",
            at=at,
            actor=actor,
            reason=reason,
            sets=fields,
            set_params=(actor, at, reason),
        )
        finalize_jobs(conn, [job.id], at=at)
    else:  # nothing started: straight to Canceled
        move_job(
            conn,
            job.id,
            "canceled",
            at=at,
            actor=actor,
            reason=reason,
            sets=fields + ", ended_at=?",
            set_params=(actor, at, reason, at),
        )


def cancel(
    store: Store, job_id: int, *, actor: str, reason: str | None = None, now: float | None = None
) -> str:
    at = _now(now)
    with store.write() as conn:
        job = get_job(conn, job_id)
        _check_cancel(job)
        _cancel_in(conn, job, actor, reason, at)
        status = get_job(conn, job_id).status
    return f"Job {job_id} {LABELS[status]}"


def job_tree(conn: Connection, job_id: int) -> list[JobRow]:
    """The job and all its descendants, parents before children."""
    get_job(conn, job_id)
    rows = conn.exec_driver_sql(
        "WITH RECURSIVE tree(id, depth) AS (SELECT ?, 0 UNION ALL "
        "SELECT j.id, tree.depth + 1 FROM job j JOIN tree ON j.parent_id = tree.id) "
        "SELECT j.id, j.name, j.status, j.system, j.parent_id FROM tree JOIN job j "
        "ON j.id = tree.id ORDER BY tree.depth, j.id",
        (job_id,),
    )
    return [JobRow(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]


def cancel_tree_preview(store: Store, job_id: int) -> list[tuple[JobRow, str | None]]:
    """Each job of the tree with the reason it would be skipped (None: it will be canceled)."""
    with store.read() as conn:
        return [(job, _refusal(job)) for job in job_tree(conn, job_id)]


def cancel_refusal(store: Store, job_id: int) -> str | None:
    """Why ``cancel`` would refuse this job now (one line), or None if it would not."""
    with store.read() as conn:
        try:
            return _refusal(get_job(conn, job_id))
        except Refused as exc:
            return str(exc)


def _refusal(job: JobRow) -> str | None:
    try:
        _check_cancel(job)
    except Refused as exc:
        return str(exc)
    return None


def cancel_with_children(
    store: Store, job_id: int, *, actor: str, reason: str | None = None, now: float | None = None
) -> str:
    at = _now(now)
    with store.write() as conn:
        tree = job_tree(conn, job_id)
        todo = [job for job in tree if _refusal(job) is None]
        if not todo:
            raise Refused(
                f"No job in the tree of job {job_id} can be canceled: "
                + "; ".join(f"{j.id}: {_refusal(j)}" for j in tree)
            )
        for job in todo:
            _cancel_in(conn, job, actor, reason, at)
    skipped = [f"job {j.id} ({_refusal(j)})" for j in tree if j not in todo]
    text = f"Canceled {len(todo)} job{'s' if len(todo) != 1 else ''} of the tree of job {job_id}"
    return text + (f"; skipped {', '.join(skipped)}" if skipped else "")


def _plan_tasks(conn: Connection, where: str, params: tuple) -> list[PlanTask]:
    rows = conn.exec_driver_sql(
        "SELECT id, job_id, name, server, status, started_at, progress_done, progress_total, "
        f"progress_unit FROM task WHERE {where} ORDER BY id",
        params,
    )
    return [PlanTask(*r) for r in rows]


def _abort_plan(conn: Connection, job: JobRow, enhanced: bool) -> AbortPlan:
    if job.system:
        raise Refused("System jobs cannot be aborted")
    if job.status in JOB_TERMINAL:
        raise Refused(f"Job {job.id} already {LABELS[job.status]}")
    if job.status in ("waiting", "withhold"):
        raise Refused(f"Job {job.id} is {LABELS[job.status]}: nothing is running to abort")
    if enhanced and not settings.enhanced_abort_on(conn):
        raise Refused("Enhanced abort is turned off in settings")
    cancel_first = job.status == "executing"
    statuses = ["executing"] if cancel_first else ["canceling"]
    if enhanced:
        statuses.append("aborting")
    tasks = _plan_tasks(
        conn,
        f"job_id=? AND status IN ({','.join('?' * len(statuses))})",
        (job.id, *statuses),
    )
    if not tasks and not cancel_first:
        stuck = _plan_tasks(conn, "job_id=? AND status='aborting'", (job.id,))
        if stuck:
            raise Refused(
                f"Job {job.id}: {', '.join(t.name for t in stuck)} already Aborting, "
                "in an unmanaged wait; only an enhanced abort (restart) frees it"
            )
        raise Refused(f"Job {job.id} has no Canceling task to abort")
    plan = AbortPlan(job=job, enhanced=enhanced, cancel_first=cancel_first, tasks=tasks)
    if enhanced:
        plan.servers = sorted({t.server for t in tasks if t.server})
        plan.drain_seconds = settings.drain_seconds(conn)
        if plan.servers:
            names: dict[int, list[str]] = {}
            job_names: dict[int, str] = {}
            for jid, jname, tname in conn.exec_driver_sql(
                "SELECT j.id, j.name, t.name FROM task t JOIN job j ON j.id = t.job_id "
                f"WHERE t.server IN {IN_IDS} AND t.job_id != ? "
                "AND t.status IN ('executing', 'canceling', 'aborting') ORDER BY j.id, t.id",
                (ids_json(plan.servers), job.id),
            ):
                names.setdefault(jid, []).append(tname)
                job_names[jid] = jname
            plan.disrupted = [DisruptedJob(j, job_names[j], tuple(n)) for j, n in names.items()]
    return plan


def abort_preview(store: Store, job_id: int, *, enhanced: bool = False) -> AbortPlan:
    """What ``abort`` would stop, without changing anything; raises Refused like abort."""
    with store.read() as conn:
        return _abort_plan(conn, get_job(conn, job_id), enhanced)


def _beyond(plan: AbortPlan, confirmed: AbortPlan) -> list[str]:
    """What ``plan`` would stop or disrupt that the operator did not see in ``confirmed``."""
    seen_tasks = {t.id for t in confirmed.tasks}
    seen_jobs = {d.id for d in confirmed.disrupted}
    new = [f"task {t.name}" for t in plan.tasks if t.id not in seen_tasks]
    new += [f"server {s}" for s in plan.servers if s not in confirmed.servers]
    new += [f"job {d.id} {d.name}" for d in plan.disrupted if d.id not in seen_jobs]
    return new


def abort(
    store: Store,
    job_id: int,
    *,
    actor: str,
    enhanced: bool = False,
    confirmed: AbortPlan | None = None,
    now: float | None = None,
) -> str:
    """Abort as planned by ``abort_preview``. With ``confirmed`` (the plan the operator
    read and accepted), refuse if the plan has grown since: the operator decides on what
    will be stopped and disrupted, not on what it has become."""
    at = _now(now)
    with store.write() as conn:
        job = get_job(conn, job_id)
        plan = _abort_plan(conn, job, enhanced)
        if confirmed is not None:
            grown = _beyond(plan, confirmed)
            if grown:
                raise Refused(
                    "The abort plan changed since you confirmed it: it would now "
                    f"also stop or disrupt {', '.join(grown)}. Nothing done; "
                    "look again"
                )
        if plan.cancel_first:
            _cancel_in(conn, job, actor, None, at)
        how = "enhanced abort" if enhanced else "abort"
        reason = f"{how} by {actor}"
        n = move_tasks(
            conn,
            "aborting",
            "job_id=? AND status='canceling'",
            (job.id,),
            at=at,
            actor=actor,
            reason=reason,
        )
        # Nobody is running tasks on a server without a live engine: they stop now.
        live = live_servers(conn, at)
        move_tasks(
            conn,
            "aborted",
            f"job_id=? AND status='aborting' AND (server IS NULL OR server NOT IN {IN_IDS})",
            (job.id, ids_json(live)),
            at=at,
            actor=actor,
            reason=f"{reason} (no engine running it)",
            sets=", ended_at=?",
            set_params=(at,),
        )
        conn.exec_driver_sql(
            "UPDATE job SET aborted_by=?, aborted_at=? WHERE id=?", (actor, at, job.id)
        )
        if enhanced:
            servers = [s for s in plan.servers if s in live]
            for name in servers:
                conn.exec_driver_sql(
                    "UPDATE server SET status='draining', drain_deadline=?, restart_job_id=? "
                    "WHERE name=?",
                    (at + plan.drain_seconds, job.id, name),
                )
                add_event(
                    conn,
                    at=at,
                    actor=actor,
                    kind="server",
                    server=name,
                    job_id=job.id,
                    reason=f"draining for restart ({how} of job {job.id})",
                )
        finalize_jobs(conn, [job.id], at=at)
    first = "Canceled and aborting" if plan.cancel_first else "Aborting"
    text = f"{first} job {job_id}: {n} task{'s' if n != 1 else ''}"
    if enhanced and plan.servers:
        text += f"; restarting {', '.join(plan.servers)}"
    return text


def _hold_move(
    store: Store,
    job_id: int,
    source: str,
    target: str,
    *,
    actor: str,
    needs: str,
    verb: str,
    now: float | None,
) -> None:
    at = _now(now)
    with store.write() as conn:
        job = get_job(conn, job_id)
        if job.status != source:
            raise Refused(f"Job {job_id} is {LABELS[job.status]}: {needs}")
        move_job(conn, job_id, target, at=at, actor=actor, reason=f"{verb} by {actor}")


def hold(store: Store, job_id: int, *, actor: str, now: float | None = None) -> str:
    _hold_move(
        store,
        job_id,
        "waiting",
        "withhold",
        actor=actor,
        verb="held",
        needs="only a Waiting job can be held",
        now=now,
    )
    return f"Job {job_id} Withhold"


def release(store: Store, job_id: int, *, actor: str, now: float | None = None) -> str:
    _hold_move(
        store,
        job_id,
        "withhold",
        "waiting",
        actor=actor,
        verb="released",
        needs="only a held job can be released",
        now=now,
    )
    return f"Job {job_id} released (Waiting)"


def decide_approval(
    store: Store,
    job_id: int,
    task: str | int,
    *,
    approve: bool,
    actor: str,
    now: float | None = None,
) -> str:
    at = _now(now)
    with store.write() as conn:
        get_job(conn, job_id)
        col, value = ("id", int(task)) if str(task).isdigit() else ("name", str(task))
        row = conn.exec_driver_sql(
            f"SELECT id, name, action, status, approval FROM task WHERE job_id=? AND {col}=?",
            (job_id, value),
        ).fetchone()
        if row is None:
            raise Refused(f"Job {job_id} has no task {task!r}")
        tid, name, action, status, decided = row
        if action != "approval":
            raise Refused(f"Task {name} of job {job_id} is not an approval task")
        if status not in ("executing", "canceling"):
            raise Refused(
                f"Task {name} of job {job_id} is {LABELS[status]}: it is not waiting for approval"
            )
        if decided:
            raise Refused(f"Task {name} of job {job_id} was already {decided}")
        word = "approved" if approve else "rejected"
        conn.exec_driver_sql(
            "UPDATE task SET approval=?, approval_by=? WHERE id=?", (word, actor, tid)
        )
        add_event(
            conn,
            at=at,
            actor=actor,
            kind="approval",
            job_id=job_id,
            task_id=tid,
            reason=f"{word} by {actor}",
        )
    return f"Task {name} of job {job_id} {word}"


@dataclass(frozen=True)
class CancelPreview:
    """What the console needs before it asks: the job, why a cancel would be refused
    now (None: it would not), and what it would do to the job's tasks."""

    job: JobRow | None  # None: there is no such job (the refusal says so)
    refusal: str | None
    not_started: int = 0  # Waiting/Ready tasks: they become Didn't run
    running: int = 0  # Executing tasks: they become Canceling and wind down


def cancel_preview(store: Store, job_id: int) -> CancelPreview:
    """One read for a cancel confirmation: the job, the refusal and the plan together.
    ``cancel`` checks the refusal again when it runs, in its own transaction."""
    with store.read() as conn:
        try:
            job = get_job(conn, job_id)
        except Refused as exc:
            return CancelPreview(None, str(exc))
        counts = dict(
            conn.exec_driver_sql(
                "SELECT status, count(*) FROM task WHERE job_id=? GROUP BY status", (job_id,)
            ).fetchall()
        )
    return CancelPreview(
        job,
        _refusal(job),
        not_started=counts.get("waiting", 0) + counts.get("ready", 0),
        running=counts.get("executing", 0),
    )
