"""The engine's database work, done in its writer thread, many changes per transaction.

One ``tick`` writes the progress and outcomes gathered since the last one, claims
Ready tasks for free slots, and reads back what operators asked for (cancel, abort,
approvals, drains) — all in one BEGIN IMMEDIATE transaction, so that a task
transition costs a few rows of work and not a commit of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from engine.core.statuses import TASK_RUNNING, resolve_outcome, task_sources
from engine.store import engine_settings
from engine.store.dialect import db_now, equals_any, in_list, one_of, upsert
from engine.store.models import READY_STATUSES
from engine.store.prepared import Prepared, together
from engine.store.tables import job, server, task
from engine.store.writes import (
    AT,
    JobMove,
    TaskMove,
    add_event,
    after_task_changes,
    finalize_jobs,
)


@dataclass
class Outcome:
    task_id: int
    outcome: str  # ended, error, canceled, aborted, interrupted
    message: str | None = None
    reason: str | None = None  # for interrupted: why
    requeue_always: bool = False  # a server restart requeues whatever the attempt count
    token: str | None = None  # the claim of the run; None: recovery, no run to match


@dataclass
class Progress:
    task_id: int
    done: float
    total: float | None
    unit: str | None
    message: str | None
    output: str | None
    child_job_id: int | None = None
    token: str | None = None


@dataclass
class Claimed:
    task_id: int
    job_id: int
    name: str
    action: str
    params_json: str  # as stored: the server parses it, not the writer thread
    attempt: int
    server: str
    recipe_path: str | None
    child_job_id: int | None = None  # a job an earlier attempt of this task started
    token: str = ""
    remote_job: str | None = None  # a remote job an earlier attempt started (follow it)


@dataclass
class TickIn:
    at: float
    outcomes: list[Outcome] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    # server -> free slots (online only), asked for when the claim is made: slots freed
    # while the tick's first statements ran are filled in this tick, not the next.
    free: Callable[[], dict[str, int]] = dict
    running: list[int] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    watched_jobs: list[int] = field(default_factory=list)
    owner: str = ""  # the engine: claims only on servers whose lease it holds
    token: str = ""  # the claim token of this batch's claims


@dataclass
class TickOut:
    claimed: list[Claimed] = field(default_factory=list)
    task_state: dict[int, tuple[str, str | None, str | None]] = field(default_factory=dict)
    servers: dict[str, tuple[str, float | None, int | None]] = field(default_factory=dict)
    job_status: dict[int, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # servers whose lease another engine holds


# Prepared statements of the hot path (every tick), their values bound by name.
# Fenced: a run whose claim was taken over writes nothing.
_FENCE = or_(
    task.c.claim_token == bindparam("b_token"), bindparam("b_token2", type_=String).is_(None)
)
_WRITE_PROGRESS = Prepared(
    update(task)
    .where(task.c.id == bindparam("b_id"), _FENCE)
    .values(
        progress_done=bindparam("b_done", type_=Float),
        progress_total=func.coalesce(bindparam("b_total", type_=Float), task.c.progress_total),
        progress_unit=func.coalesce(bindparam("b_unit", type_=String), task.c.progress_unit),
        message=func.coalesce(bindparam("b_message", type_=String), task.c.message),
        output=func.coalesce(bindparam("b_output", type_=String), task.c.output),
        child_job_id=func.coalesce(bindparam("b_child", type_=Integer), task.c.child_job_id),
    )
)
_OUTCOME_STATE = Prepared(
    select(
        task.c.id,
        task.c.job_id,
        task.c.status,
        task.c.attempt,
        task.c.max_attempts,
        task.c.child_job_id,
        task.c.claim_token,
    ).where(in_list(task.c.id, "ids"))
)
# A settled run's last words, in one statement: its final progress (which rides with
# its outcome) and its message. As two updates of the row before its status move they
# took a third of a wide tick's statement time.
_RUN_FINAL = Prepared(
    update(task)
    .where(task.c.id == bindparam("b_id"))
    .values(
        progress_done=func.coalesce(bindparam("b_done", type_=Float), task.c.progress_done),
        progress_total=func.coalesce(bindparam("b_total", type_=Float), task.c.progress_total),
        progress_unit=func.coalesce(bindparam("b_unit", type_=String), task.c.progress_unit),
        message=func.coalesce(bindparam("b_message", type_=String), task.c.message),
        output=func.coalesce(bindparam("b_output", type_=String), task.c.output),
        child_job_id=func.coalesce(bindparam("b_child", type_=Integer), task.c.child_job_id),
        error=func.coalesce(bindparam("b_error", type_=String), task.c.error),
    )
)
# PostgreSQL: the same for every settled run of a tick in one statement, its values as
# arrays (unnest), where an executemany of _RUN_FINAL cost 4-5 ms for a tick of 120 runs.
_FINAL_COLUMNS = {
    "done": Float,
    "total": Float,
    "unit": String,
    "message": String,
    "output": String,
    "child": Integer,
    "error": String,
}
_FINALS = (
    func.unnest(
        bindparam("a_id", type_=ARRAY(Integer)),
        *(bindparam(f"a_{name}", type_=ARRAY(kind)) for name, kind in _FINAL_COLUMNS.items()),
    )
    .table_valued("id", *_FINAL_COLUMNS)
    .render_derived(name="final")
)
_RUN_FINAL_PG = Prepared(
    update(task)
    .where(task.c.id == _FINALS.c.id)
    .values(
        progress_done=func.coalesce(_FINALS.c.done, task.c.progress_done),
        progress_total=func.coalesce(_FINALS.c.total, task.c.progress_total),
        progress_unit=func.coalesce(_FINALS.c.unit, task.c.progress_unit),
        message=func.coalesce(_FINALS.c.message, task.c.message),
        output=func.coalesce(_FINALS.c.output, task.c.output),
        child_job_id=func.coalesce(_FINALS.c.child, task.c.child_job_id),
        error=func.coalesce(_FINALS.c.error, task.c.error),
    )
)
_ORPHAN = Prepared(
    update(job)
    .where(
        job.c.id == bindparam("b_id"),
        ~one_of(job.c.status, ["canceled", "ended", "error"]),
    )
    .values(orphaned=True)
)
_OF_RUN = and_(in_list(task.c.id, "ids"), task.c.status == bindparam("from_status", type_=String))
# What a finished run moves its task to: the outcome resolved against the status.
_SETTLE = {
    # Back to Ready for another attempt: the run's traces go with it.
    "ready": TaskMove(
        "ready",
        _OF_RUN,
        {
            "attempt": task.c.attempt + 1,
            "server": None,
            "started_at": None,
            "progress_done": 0,
            "approval": None,
            "claim_token": None,
        },
    ),
    "error": TaskMove(
        "error",
        _OF_RUN,
        {
            "ended_at": AT,
            "error": func.coalesce(bindparam("why", type_=String), task.c.error),
            "message": func.coalesce(bindparam("why", type_=String), task.c.message),
        },
    ),
    **{
        target: TaskMove(target, _OF_RUN, {"ended_at": AT})
        for target in ("ended", "canceled", "aborted")
    },
}
# What a claim starts: the ready tasks, with all a run needs (a start changes none of it).
_READY = Prepared(
    select(
        task.c.id,
        task.c.job_id,
        task.c.name,
        task.c.action,
        task.c.params,
        task.c.attempt,
        job.c.recipe_path,
        task.c.child_job_id,
        task.c.remote_job,
        job.c.status.label("job_status"),
    )
    .join(job, job.c.id == task.c.job_id)
    .where(
        equals_any(task.c.status, READY_STATUSES),  # ix_task_ready
        one_of(job.c.status, ["waiting", "executing"]),
        ~in_list(task.c.id, "taken"),
    )
    .order_by(task.c.id)
    .limit(bindparam("n", type_=Integer))
    # PostgreSQL: engines on other hosts claim at once; each skips the rows another is
    # claiming (task rows only: other tasks of the same job stay claimable). SQLite
    # renders nothing here: its write lock already serializes claims.
    .with_for_update(skip_locked=True, of=task)
)
_START = TaskMove(
    "executing",
    in_list(task.c.id, "ids"),
    {
        "server": bindparam("server", type_=String),
        "started_at": AT,
        "ended_at": None,
        "message": None,
        "claim_token": bindparam("token", type_=String),
    },
    event_server=bindparam("server", type_=String),
)
_START_JOB = JobMove("executing", {"started_at": AT})
# PostgreSQL: the claim, its event rows and its moves in one statement (one round trip
# instead of three). Its shape needs no statistics: the job's status is read by key for
# each Ready task walked in id order, where a join let a planner without statistics of
# a new job's tasks (autovacuum's ANALYZE comes later) read every Ready task of the job
# by ix_task_job_status and sort them all, on every claim (5-9 ms a claim at 10,000
# Ready against 0.1-0.5). The transition table still decides: the rows are only those
# it lets start.
_JOB_STATUS = select(job.c.status).where(job.c.id == task.c.job_id).scalar_subquery()
_CLAIMABLE = (
    select(
        task.c.id,
        task.c.job_id,
        task.c.status,
        task.c.server,
        task.c.name,
        task.c.action,
        task.c.params,
        task.c.attempt,
        task.c.child_job_id,
        task.c.remote_job,
        _JOB_STATUS.label("job_status"),
    )
    .where(
        equals_any(task.c.status, READY_STATUSES),  # ix_task_ready_by_id
        one_of(task.c.status, task_sources("executing")),
        one_of(_JOB_STATUS, ["waiting", "executing"]),
        ~in_list(task.c.id, "taken"),
    )
    .order_by(task.c.id)
    .limit(bindparam("n", type_=Integer))
    .with_for_update(skip_locked=True, of=task)
    .cte("claimed")
)
_CLAIM_PG = Prepared(
    _START.of_rows(
        _CLAIMABLE,
        _CLAIMABLE.c.id,
        _CLAIMABLE.c.job_id,
        _CLAIMABLE.c.name,
        _CLAIMABLE.c.action,
        _CLAIMABLE.c.params,
        _CLAIMABLE.c.attempt,
        select(job.c.recipe_path)
        .where(job.c.id == _CLAIMABLE.c.job_id)
        .scalar_subquery()
        .label("recipe_path"),
        _CLAIMABLE.c.child_job_id,
        _CLAIMABLE.c.remote_job,
        _CLAIMABLE.c.job_status,
    ).order_by(_CLAIMABLE.c.id)
)
_SERVER_STATE = Prepared(
    select(
        server.c.name,
        server.c.status,
        server.c.drain_deadline,
        server.c.restart_job_id,
        server.c.lease_owner,
    ).where(in_list(server.c.name, "names"))
)
# Only the running tasks with something to act on: an operator's cancel or abort, an
# approval decided, or settled elsewhere. With hundreds running, reading every one of
# them back on every tick cost more than the tick's writes.
_TASK_STATE = Prepared(
    select(task.c.id, task.c.status, task.c.approval, task.c.approval_by).where(
        in_list(task.c.id, "ids"),
        or_(task.c.status != "executing", task.c.approval.is_not(None)),
    )
)
_JOB_STATE = Prepared(select(job.c.id, job.c.status).where(in_list(job.c.id, "ids")))
_STOPPING = Prepared(
    select(task.c.id, task.c.status).where(
        in_list(task.c.id, "ids"), one_of(task.c.status, ["canceling", "aborting"])
    )
)


def stopping(conn: Connection, running: list[int]) -> dict[int, str]:
    """Which of the ``running`` tasks an operator asked to stop: id -> canceling or
    aborting. A read: the engine tells the servers before its next write transaction."""
    return {r.id: r.status for r in _STOPPING(conn, {"ids": running})} if running else {}


_NO_PROGRESS = dict.fromkeys(("b_done", "b_total", "b_unit", "b_message", "b_output", "b_child"))


def _progress_params(p: Progress | None) -> dict[str, object]:
    """A progress report as the parameters of _WRITE_PROGRESS and _RUN_FINAL (None:
    none, every column kept as it is)."""
    if p is None:
        return dict(_NO_PROGRESS)
    return {
        "b_done": p.done,
        "b_total": p.total,
        "b_unit": p.unit,
        "b_message": p.message,
        "b_output": p.output,
        "b_child": p.child_job_id,
    }


def _as_arrays(rows: list[dict[str, object]]) -> dict[str, list[object]]:
    """_RUN_FINAL's rows as _RUN_FINAL_PG's arrays, one per column."""
    out: dict[str, list[object]] = {"a_id": [r["b_id"] for r in rows]}
    for name in _FINAL_COLUMNS:
        key = "b_child" if name == "child" else f"b_{name}"
        out[f"a_{name}"] = [r[key] for r in rows]
    return out


def write_progress(conn: Connection, items: Iterable[Progress]) -> None:
    rows = [
        {"b_id": p.task_id, "b_token": p.token, "b_token2": p.token, **_progress_params(p)}
        for p in items
    ]
    if rows:
        _WRITE_PROGRESS(conn, rows)


def write_runs(
    conn: Connection,
    outcomes: list[Outcome],
    progress: Iterable[Progress],
    *,
    at: float,
    current: list[Any] | None = None,
) -> dict[int, str]:
    """Runs' progress and outcomes: a run that settles its task has its final progress
    written with its message (``apply_outcomes``), every other report as progress."""
    reports = {p.task_id: p for p in progress}
    changed = apply_outcomes(conn, outcomes, at=at, final=reports, current=current)
    write_progress(conn, [p for p in reports.values() if p.task_id not in changed])
    return changed


def apply_outcomes(
    conn: Connection,
    outcomes: list[Outcome],
    *,
    at: float,
    actor: str = "engine",
    final: Mapping[int, Progress] | None = None,
    current: list[Any] | None = None,
) -> dict[int, str]:
    """Resolve each run's outcome against the task's current status and write it.
    ``final``: the runs' last progress reports, written for the tasks that move;
    ``current``: the tasks' rows as ``_OUTCOME_STATE`` reads them, if read already."""
    if not outcomes:
        return {}
    by_id = {o.task_id: o for o in outcomes}
    if current is None:
        current = _OUTCOME_STATE(conn, {"ids": list(by_id)}).all()
    groups: dict[tuple[str, str, str | None], list[int]] = {}
    jobs: set[int] = set()
    orphans: list[tuple[int, int]] = []
    for r in current:
        o = by_id[r.id]
        if o.token is not None and o.token != r.claim_token:
            continue  # a stale run's report (fenced): another claim owns the task now
        left = o.requeue_always or r.attempt < r.max_attempts
        target = resolve_outcome(r.status, o.outcome, attempts_left=left)
        if target is None:
            continue
        reason = o.reason or o.message
        groups.setdefault((r.status, target, reason), []).append(r.id)
        jobs.add(r.job_id)
        if target == "aborted" and r.child_job_id:
            orphans.append((r.id, r.child_job_id))
    # Messages first, so the status event and the final message agree; a late report
    # for a task already settled elsewhere changes nothing of it.
    moving = {tid for tids in groups.values() for tid in tids}
    final = final or {}
    last = []
    for o in by_id.values():
        p = final.get(o.task_id)
        if o.task_id not in moving or (p is None and not o.message):
            continue
        row = {"b_id": o.task_id, **_progress_params(p)}
        if o.message:  # the outcome's words over the last progress report's
            row["b_message"] = o.message
        row["b_error"] = o.message if o.outcome == "error" and o.message else None
        last.append(row)
    if last and conn.dialect.name == "postgresql":
        _RUN_FINAL_PG(conn, _as_arrays(last))
    elif last:
        _RUN_FINAL(conn, last)
    changed: dict[int, str] = {}
    by_move: dict[tuple[str, str], list[dict[str, object]]] = {}
    for (status, target, reason), tids in groups.items():
        by_move.setdefault((status, target), []).append(
            {"ids": tids, "from_status": status, "why": reason, "reason": reason}
        )
        changed.update(dict.fromkeys(tids, target))
    for (_status, target), rows in by_move.items():
        _SETTLE[target].each(conn, rows, at=at, actor=actor)
    for tid, child in orphans:
        if _ORPHAN(conn, {"b_id": child}).rowcount:
            add_event(
                conn,
                at=at,
                actor=actor,
                kind="note",
                job_id=child,
                reason=f"orphaned: the calling task {tid} was aborted; this job runs on",
            )
    after_task_changes(conn, changed, jobs, at=at)
    return changed


def claim(conn: Connection, free: dict[str, int], *, at: float, token: str = "") -> list[Claimed]:
    claimed: list[Claimed] = []
    taken: list[int] = []
    starting: set[int] = set()
    for name, n in free.items():
        if n <= 0:
            continue
        reason = f"started on {name}"
        if conn.dialect.name == "postgresql":
            rows = _CLAIM_PG(
                conn,
                {
                    "taken": taken,
                    "n": n,
                    "server": name,
                    "token": token,
                    "m_at": at,
                    "m_actor": "engine",
                    "m_reason": reason,
                },
            ).all()
            if not rows:
                break
            taken.extend(r.id for r in rows)
        else:
            rows = _READY(conn, {"taken": taken, "n": n}).all()
            if not rows:
                break
            ids = [r.id for r in rows]
            taken.extend(ids)
            _START(conn, at=at, actor="engine", reason=reason, ids=ids, server=name, token=token)
        for r in rows:
            if r.job_status == "waiting":
                starting.add(r.job_id)
            claimed.append(
                Claimed(
                    r.id,
                    r.job_id,
                    r.name,
                    r.action,
                    r.params,
                    r.attempt,
                    name,
                    r.recipe_path,
                    r.child_job_id,
                    token,
                    r.remote_job,
                )
            )
    for job_id in sorted(starting):
        _START_JOB(conn, at=at, actor="engine", reason="first task started", job_id=job_id)
    return claimed


def tick(conn: Connection, inp: TickIn) -> TickOut:
    # The reads that need nothing this tick writes go first, together (one round trip on
    # PostgreSQL): the settled runs' tasks, the servers, and the running tasks an
    # operator acted on (the tasks this tick claims are not among them: just moved to
    # Executing by this engine, there is nothing yet to tell their runs).
    reads: list[tuple[Prepared, dict[str, Any]]] = []
    if inp.outcomes:
        reads.append((_OUTCOME_STATE, {"ids": [o.task_id for o in inp.outcomes]}))
    if inp.servers:
        reads.append((_SERVER_STATE, {"names": inp.servers}))
    if inp.running:
        reads.append((_TASK_STATE, {"ids": inp.running}))
    results = iter(together(conn, *reads))
    current = next(results).all() if inp.outcomes else None
    servers = next(results) if inp.servers else []
    task_state = next(results) if inp.running else []
    write_runs(conn, inp.outcomes, inp.progress, at=inp.at, current=current)
    out = TickOut()
    for r in servers:
        out.servers[r.name] = (r.status, r.drain_deadline, r.restart_job_id)
        if inp.owner and r.lease_owner != inp.owner:
            out.lost.append(r.name)
    # A drain written since the engine last looked must stop claims in this very batch,
    # and an engine claims only where it holds the lease (fencing).
    free = {
        s: n
        for s, n in inp.free().items()
        if out.servers.get(s, ("online",))[0] == "online" and s not in out.lost
    }
    out.claimed = claim(conn, free, at=inp.at, token=inp.token)
    for r in task_state:
        out.task_state[r.id] = (r.status, r.approval, r.approval_by)
    if inp.watched_jobs:
        for r in _JOB_STATE(conn, {"ids": inp.watched_jobs}):
            out.job_status[r.id] = r.status

    return out


# -- leases and recovery ----------------------------------------------------------------


class LeaseRefused(Exception):
    """Another live engine already serves one of the servers."""


def claim_leases(conn: Connection, servers: dict[str, int], owner: str, *, at: float) -> None:
    ttl = engine_settings.lease_seconds(conn)
    now = db_now(conn, at)
    for name, slots in servers.items():
        row = conn.execute(
            select(server.c.lease_owner, server.c.heartbeat_at).where(server.c.name == name)
        ).first()
        if (
            row
            and row.lease_owner
            and row.lease_owner != owner
            and row.heartbeat_at
            and row.heartbeat_at > now - ttl
        ):
            raise LeaseRefused(
                f"server {name} is already served by engine {row.lease_owner} "
                f"(heartbeat {max(0.0, now - row.heartbeat_at):.1f} s ago); stop it first"
            )
        # Taking over a lease another engine let expire leaves a note for the operator.
        taken_over = case(
            (
                and_(
                    server.c.lease_owner.is_not(None),
                    server.c.lease_owner != literal(owner, String),
                    server.c.status != "offline",
                ),
                literal("taken over from engine ", String)
                + server.c.lease_owner
                + literal(", whose lease had expired", String),
            ),
            else_=None,
        )
        upsert(
            conn,
            server,
            {
                "name": name,
                "slots": slots,
                "status": "online",
                "lease_owner": owner,
                "heartbeat_at": now,
            },
            "name",
            {
                "slots": lambda new: new.slots,
                "status": "online",
                "drain_deadline": None,
                "restart_job_id": None,
                "pid": None,
                "note": taken_over,
                "lease_owner": lambda new: new.lease_owner,
                "heartbeat_at": lambda new: new.heartbeat_at,
            },
        )
        add_event(
            conn,
            at=at,
            actor="engine",
            kind="server",
            server=name,
            reason=f"online with {slots} slots (engine {owner})",
        )


_HEARTBEAT = (
    update(server)
    .where(in_list(server.c.name, "names"), server.c.lease_owner == bindparam("owner"))
    .values(heartbeat_at=bindparam("at"))
)
_LOST = select(server.c.name).where(
    in_list(server.c.name, "names"),
    or_(server.c.lease_owner.is_(None), server.c.lease_owner != bindparam("owner")),
)


def heartbeat(conn: Connection, servers: list[str], owner: str, *, at: float) -> list[str]:
    """Renew our leases; returns the servers whose lease another engine has taken."""
    conn.execute(_HEARTBEAT, {"names": servers, "owner": owner, "at": db_now(conn, at)})
    return list(conn.execute(_LOST, {"names": servers, "owner": owner}).scalars())


def release_leases(conn: Connection, servers: list[str], owner: str, *, at: float) -> None:
    for name in servers:
        n = conn.execute(
            update(server)
            .where(server.c.name == name, server.c.lease_owner == owner)
            .values(
                status="offline",
                lease_owner=None,
                drain_deadline=None,
                restart_job_id=None,
                pid=None,
            )
        ).rowcount
        if n:
            add_event(conn, at=at, actor="engine", kind="server", server=name, reason="offline")


def recover(conn: Connection, owner: str, *, at: float) -> dict[int, str]:
    """Nothing stays running without a live engine behind it.

    Tasks left running on a server no live engine holds (a dead process's, or ours
    from before) go back to Ready while attempts remain, else Error; Canceling ones
    finish canceling, Aborting ones are Aborted; their jobs are then finished.
    """
    ttl = engine_settings.lease_seconds(conn)
    now = db_now(conn, at)
    live_other = list(
        conn.execute(
            select(server.c.name).where(
                server.c.lease_owner.is_not(None),
                server.c.lease_owner != owner,
                server.c.heartbeat_at > now - ttl,
            )
        ).scalars()
    )
    conn.execute(
        update(server)
        .where(
            ~in_list(server.c.name, live_other),
            or_(server.c.lease_owner.is_(None), server.c.lease_owner != owner),
            server.c.status != "offline",
        )
        .values(status="offline", lease_owner=None)
    )
    orphaned = or_(task.c.server.is_(None), ~in_list(task.c.server, live_other))
    return _recover_tasks(conn, orphaned, "interrupted: engine stopped", at=at)


def _recover_tasks(
    conn: Connection, where: ColumnElement[bool], why: str, *, at: float
) -> dict[int, str]:
    """The running tasks ``where`` selects, as runs interrupted for ``why`` (back to
    Ready while attempts remain); then every started job that may now finish."""
    stale = list(
        conn.execute(
            select(task.c.id).where(task.c.status.in_(sorted(TASK_RUNNING)), where)
        ).scalars()
    )
    changed = apply_outcomes(
        conn, [Outcome(t, "interrupted", reason=why) for t in stale], at=at, actor="recovery"
    )
    # A job can be left Canceling or Executing with nothing running (killed between
    # the last task's end and the job's); finish those too.
    finalize_jobs(
        conn,
        conn.execute(
            select(job.c.id).where(job.c.status.in_(["executing", "canceling"]))
        ).scalars(),
        at=at,
    )
    return changed


def servers_without_engine(conn: Connection, owner: str, *, at: float) -> list[str]:
    """Servers no live engine holds (ours excepted): a dead engine's leftovers."""
    ttl = engine_settings.lease_seconds(conn)
    now = db_now(conn, at)
    return list(
        conn.execute(
            select(server.c.name).where(
                or_(
                    server.c.lease_owner.is_(None),
                    server.c.lease_owner == owner,
                    server.c.heartbeat_at.is_(None),
                    server.c.heartbeat_at <= now - ttl,
                )
            )
        ).scalars()
    )


def note_server_process(
    conn: Connection, name: str, owner: str, pid: int | None, host: str
) -> None:
    conn.execute(
        update(server)
        .where(server.c.name == name, server.c.lease_owner == owner)
        .values(pid=pid, host=host)
    )


def note_lease_lost(conn: Connection, name: str, owner: str, *, at: float) -> None:
    why = f"engine {owner} stalled past its lease; another engine took it over"
    conn.execute(update(server).where(server.c.name == name).values(note=why))
    add_event(conn, at=at, actor="engine", kind="server", server=name, reason=why)


_HOLDS_CLAIM = select(task.c.id).where(
    task.c.id == bindparam("id"),
    task.c.claim_token == bindparam("token"),
    task.c.status.in_(["executing", "canceling", "aborting"]),
)


def holds_claim(conn: Connection, task_id: int, token: str) -> bool:
    return conn.execute(_HOLDS_CLAIM, {"id": task_id, "token": token}).first() is not None


def record_child(conn: Connection, task_id: int, token: str, child_job_id: int) -> None:
    conn.execute(
        update(task)
        .where(task.c.id == task_id, task.c.claim_token == token)
        .values(child_job_id=child_job_id)
    )


def record_remote_job(conn: Connection, task_id: int, token: str, remote_job: str) -> bool:
    """Store a run's remote job on its task, if the run still holds the task's claim."""
    res = conn.execute(
        update(task)
        .where(
            task.c.id == task_id,
            task.c.claim_token == token,
            task.c.status.in_(["executing", "canceling", "aborting"]),
        )
        .values(remote_job=remote_job)
    )
    return res.rowcount == 1


def restart_begin(conn: Connection, name: str, owner: str, *, at: float, why: str) -> bool:
    """Mark the server Restarting; False (nothing written) if ``owner`` lost its lease."""
    n = conn.execute(
        update(server)
        .where(server.c.name == name, server.c.lease_owner == owner)
        .values(status="restarting")
    ).rowcount
    if not n:
        return False
    add_event(conn, at=at, actor="engine", kind="server", server=name, reason=f"restarting: {why}")
    return True


def restart_end(conn: Connection, name: str, owner: str, *, at: float) -> None:
    """The restarted server back Online, if ``owner`` still holds it."""
    n = conn.execute(
        update(server)
        .where(server.c.name == name, server.c.lease_owner == owner)
        .values(status="online", drain_deadline=None, restart_job_id=None)
    ).rowcount
    if not n:
        return  # another engine holds it now: its state is not ours to say
    add_event(conn, at=at, actor="engine", kind="server", server=name, reason="restarted: online")


def call_depth(job_id: int) -> Select:
    """How many jobs deep ``job_id`` sits in its chain of callers (itself counted)."""
    up = select(job.c.id, job.c.parent_id).where(job.c.id == job_id).cte("up", recursive=True)
    j = job.alias("j")
    up = up.union_all(select(j.c.id, j.c.parent_id).join(up, j.c.id == up.c.parent_id))
    return select(func.count()).select_from(up)
