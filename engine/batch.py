"""The engine's database work, done in its writer thread, many changes per transaction.

One ``tick`` writes the progress and outcomes gathered since the last one, claims
Ready tasks for free slots, and reads back what operators asked for (cancel, abort,
approvals, drains) — all in one BEGIN IMMEDIATE transaction, so that a task
transition costs a few rows of work and not a commit of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from engine import settings
from engine.statuses import TASK_RUNNING, resolve_outcome
from engine.writes import (
    IN_IDS,
    add_event,
    after_task_changes,
    finalize_jobs,
    ids_json,
    move_job,
    move_tasks,
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
    params: dict
    attempt: int
    server: str
    recipe_path: str | None
    child_job_id: int | None = None  # a job an earlier attempt of this task started
    token: str = ""


@dataclass
class TickIn:
    at: float
    outcomes: list[Outcome] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    free: dict[str, int] = field(default_factory=dict)  # server -> free slots (online only)
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


def write_progress(conn: Connection, items: Iterable[Progress]) -> None:
    rows = [
        (p.done, p.total, p.unit, p.message, p.output, p.child_job_id, p.task_id, p.token, p.token)
        for p in items
    ]
    if rows:
        conn.exec_driver_sql(
            "UPDATE task SET progress_done=?, progress_total=COALESCE(?, progress_total), "
            "progress_unit=COALESCE(?, progress_unit), message=COALESCE(?, message), "
            "output=COALESCE(?, output), child_job_id=COALESCE(?, child_job_id) WHERE id=? "
            # Fenced: a run whose claim was taken over writes nothing.
            "AND (claim_token=? OR ? IS NULL)",
            rows,
        )


def apply_outcomes(
    conn: Connection, outcomes: list[Outcome], *, at: float, actor: str = "engine"
) -> dict[int, str]:
    """Resolve each run's outcome against the task's current status and write it."""
    if not outcomes:
        return {}
    by_id = {o.task_id: o for o in outcomes}
    current = conn.exec_driver_sql(
        f"SELECT id, job_id, status, attempt, max_attempts, child_job_id, claim_token FROM task "
        f"WHERE id IN {IN_IDS}",
        (ids_json(by_id),),
    ).fetchall()
    groups: dict[tuple[str, str, str | None], list[int]] = {}
    jobs: set[int] = set()
    orphans: list[tuple[int, int]] = []
    for tid, job_id, status, attempt, max_attempts, child, token in current:
        o = by_id[tid]
        if o.token is not None and o.token != token:
            continue  # a stale run's report (fenced): another claim owns the task now
        left = o.requeue_always or attempt < max_attempts
        target = resolve_outcome(status, o.outcome, attempts_left=left)
        if target is None:
            continue
        reason = o.reason or o.message
        groups.setdefault((status, target, reason), []).append(tid)
        jobs.add(job_id)
        if target == "aborted" and child:
            orphans.append((tid, child))
    # Messages first, so the status event and the final message agree; a late report
    # for a task already settled elsewhere changes nothing of it.
    moving = {tid for tids in groups.values() for tid in tids}
    msgs = [
        (o.message, o.message if o.outcome == "error" else None, o.task_id)
        for o in outcomes
        if o.message and o.task_id in moving
    ]
    if msgs:
        conn.exec_driver_sql("UPDATE task SET message=?, error=COALESCE(?, error) WHERE id=?", msgs)
    changed: dict[int, str] = {}
    for (status, target, reason), tids in groups.items():
        where = f"id IN {IN_IDS} AND status=?"
        if target == "ready":
            sets, params = (
                (
                    ", attempt=attempt+1, server=NULL, started_at=NULL, "
                    "progress_done=0, approval=NULL, claim_token=NULL"
                ),
                (),
            )
        else:
            sets, params = ", ended_at=?", (at,)
            if target == "error" and reason:
                sets, params = ", ended_at=?, error=?, message=?", (at, reason, reason)
        move_tasks(
            conn,
            target,
            where,
            (ids_json(tids), status),
            at=at,
            actor=actor,
            reason=reason,
            sets=sets,
            set_params=params,
        )
        changed.update(dict.fromkeys(tids, target))
    for tid, child in orphans:
        n = conn.exec_driver_sql(
            "UPDATE job SET orphaned=1 WHERE id=? AND status NOT IN ('canceled', 'ended', 'error')",
            (child,),
        ).rowcount
        if n:
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
    for server, n in free.items():
        if n <= 0:
            continue
        ids = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT t.id FROM task t JOIN job j ON j.id = t.job_id "
                f"WHERE t.status='ready' AND j.status IN ('waiting', 'executing') "
                f"AND t.id NOT IN {IN_IDS} ORDER BY t.id LIMIT ?",
                (ids_json(taken), n),
            )
        ]
        if not ids:
            break
        taken.extend(ids)
        move_tasks(
            conn,
            "executing",
            f"id IN {IN_IDS}",
            (ids_json(ids),),
            at=at,
            actor="engine",
            reason=f"started on {server}",
            sets=", server=?, started_at=?, ended_at=NULL, message=NULL, claim_token=?",
            set_params=(server, at, token),
            event_server=server,
        )
        for r in conn.exec_driver_sql(
            "SELECT t.id, t.job_id, t.name, t.action, t.params, t.attempt, j.recipe_path, "
            f"t.child_job_id FROM task t JOIN job j ON j.id = t.job_id WHERE t.id IN {IN_IDS} "
            "ORDER BY t.id",
            (ids_json(ids),),
        ):
            claimed.append(
                Claimed(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], server, r[6], r[7], token)
            )
    for job_id in sorted({c.job_id for c in claimed}):
        move_job(
            conn,
            job_id,
            "executing",
            at=at,
            actor="engine",
            reason="first task started",
            sets=", started_at=?",
            set_params=(at,),
        )
    return claimed


def tick(conn: Connection, inp: TickIn) -> TickOut:
    write_progress(conn, inp.progress)
    apply_outcomes(conn, inp.outcomes, at=inp.at)
    out = TickOut()
    if inp.servers:
        for name, status, deadline, job_id, lease_owner in conn.exec_driver_sql(
            f"SELECT name, status, drain_deadline, restart_job_id, lease_owner FROM server "
            f"WHERE name IN {IN_IDS}",
            (json.dumps(inp.servers),),
        ):
            out.servers[name] = (status, deadline, job_id)
            if inp.owner and lease_owner != inp.owner:
                out.lost.append(name)
    # A drain written since the engine last looked must stop claims in this very batch,
    # and an engine claims only where it holds the lease (fencing).
    free = {
        s: n
        for s, n in inp.free.items()
        if out.servers.get(s, ("online",))[0] == "online" and s not in out.lost
    }
    out.claimed = claim(conn, free, at=inp.at, token=inp.token)
    running = inp.running + [c.task_id for c in out.claimed]
    if running:
        for tid, status, approval, by in conn.exec_driver_sql(
            f"SELECT id, status, approval, approval_by FROM task WHERE id IN {IN_IDS}",
            (ids_json(running),),
        ):
            out.task_state[tid] = (status, approval, by)
    if inp.watched_jobs:
        for jid, status in conn.exec_driver_sql(
            f"SELECT id, status FROM job WHERE id IN {IN_IDS}", (ids_json(inp.watched_jobs),)
        ):
            out.job_status[jid] = status
    return out


# -- leases and recovery ----------------------------------------------------------------


class LeaseRefused(Exception):
    """Another live engine already serves one of the servers."""


def claim_leases(conn: Connection, servers: dict[str, int], owner: str, *, at: float) -> None:
    ttl = settings.lease_seconds(conn)
    for name, slots in servers.items():
        row = conn.exec_driver_sql(
            "SELECT lease_owner, heartbeat_at FROM server WHERE name=?", (name,)
        ).fetchone()
        if row and row[0] and row[0] != owner and row[1] and row[1] > at - ttl:
            raise LeaseRefused(
                f"server {name} is already served by engine {row[0]} "
                f"(heartbeat {max(0.0, at - row[1]):.1f} s ago); stop it first"
            )
        conn.exec_driver_sql(
            "INSERT INTO server(name, slots, status, lease_owner, heartbeat_at) "
            "VALUES (?, ?, 'online', ?, ?) ON CONFLICT(name) DO UPDATE SET slots=excluded.slots, "
            "status='online', drain_deadline=NULL, restart_job_id=NULL, pid=NULL, "
            "note=CASE WHEN server.lease_owner IS NOT NULL AND server.lease_owner != "
            "excluded.lease_owner AND server.status != 'offline' THEN 'taken over from engine ' "
            "|| server.lease_owner || ', whose lease had expired' ELSE NULL END, "
            "lease_owner=excluded.lease_owner, heartbeat_at=excluded.heartbeat_at",
            (name, slots, owner, at),
        )
        add_event(
            conn,
            at=at,
            actor="engine",
            kind="server",
            server=name,
            reason=f"online with {slots} slots (engine {owner})",
        )


def heartbeat(conn: Connection, servers: list[str], owner: str, *, at: float) -> list[str]:
    """Renew our leases; returns the servers whose lease another engine has taken."""
    conn.exec_driver_sql(
        f"UPDATE server SET heartbeat_at=? WHERE name IN {IN_IDS} AND lease_owner=?",
        (at, json.dumps(servers), owner),
    )
    return [
        r[0]
        for r in conn.exec_driver_sql(
            f"SELECT name FROM server WHERE name IN {IN_IDS} AND "
            "(lease_owner IS NULL OR lease_owner != ?)",
            (json.dumps(servers), owner),
        )
    ]


def release_leases(conn: Connection, servers: list[str], owner: str, *, at: float) -> None:
    for name in servers:
        n = conn.exec_driver_sql(
            "UPDATE server SET status='offline', lease_owner=NULL, drain_deadline=NULL, "
            "restart_job_id=NULL, pid=NULL WHERE name=? AND lease_owner=?",
            (name, owner),
        ).rowcount
        if n:
            add_event(conn, at=at, actor="engine", kind="server", server=name, reason="offline")


def recover(conn: Connection, owner: str, *, at: float) -> dict[int, str]:
    """Nothing stays running without a live engine behind it.

    Tasks left running on a server no live engine holds (a dead process's, or ours
    from before) go back to Ready while attempts remain, else Error; Canceling ones
    finish canceling, Aborting ones are Aborted; their jobs are then finished.
    """
    ttl = settings.lease_seconds(conn)
    live_other = [
        r[0]
        for r in conn.exec_driver_sql(
            "SELECT name FROM server WHERE lease_owner IS NOT NULL AND lease_owner != ? "
            "AND heartbeat_at > ?",
            (owner, at - ttl),
        )
    ]
    conn.exec_driver_sql(
        f"UPDATE server SET status='offline', lease_owner=NULL WHERE name NOT IN {IN_IDS} "
        "AND (lease_owner IS NULL OR lease_owner != ?) AND status != 'offline'",
        (json.dumps(live_other), owner),
    )
    running = ",".join(f"'{s}'" for s in TASK_RUNNING)
    stale = [
        r[0]
        for r in conn.exec_driver_sql(
            f"SELECT id FROM task WHERE status IN ({running}) "
            f"AND (server IS NULL OR server NOT IN {IN_IDS})",
            (json.dumps(live_other),),
        )
    ]
    changed = apply_outcomes(
        conn,
        [Outcome(t, "interrupted", reason="interrupted: engine stopped") for t in stale],
        at=at,
        actor="recovery",
    )
    # A job can be left Canceling or Executing with nothing running (killed between
    # the last task's end and the job's); finish those too.
    finalize_jobs(
        conn,
        [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT id FROM job WHERE status IN ('executing', 'canceling')"
            )
        ],
        at=at,
    )
    return changed


def servers_without_engine(conn: Connection, owner: str, *, at: float) -> list[str]:
    """Servers no live engine holds (ours excepted): a dead engine's leftovers."""
    ttl = settings.lease_seconds(conn)
    return [
        r[0]
        for r in conn.exec_driver_sql(
            "SELECT name FROM server WHERE lease_owner IS NULL OR lease_owner = ? "
            "OR heartbeat_at IS NULL OR heartbeat_at <= ?",
            (owner, at - ttl),
        )
    ]


def note_server_process(
    conn: Connection, name: str, owner: str, pid: int | None, host: str
) -> None:
    conn.exec_driver_sql(
        "UPDATE server SET pid=?, host=? WHERE name=? AND lease_owner=?", (pid, host, name, owner)
    )


def note_lease_lost(conn: Connection, name: str, owner: str, *, at: float) -> None:
    why = f"engine {owner} stalled past its lease; another engine took it over"
    conn.exec_driver_sql("UPDATE server SET note=? WHERE name=?", (why, name))
    add_event(conn, at=at, actor="engine", kind="server", server=name, reason=why)


def holds_claim(conn: Connection, task_id: int, token: str) -> bool:
    row = conn.exec_driver_sql(
        "SELECT 1 FROM task WHERE id=? AND claim_token=? AND status IN "
        "('executing', 'canceling', 'aborting')",
        (task_id, token),
    ).fetchone()
    return row is not None


def record_child(conn: Connection, task_id: int, token: str, child_job_id: int) -> None:
    conn.exec_driver_sql(
        "UPDATE task SET child_job_id=? WHERE id=? AND claim_token=?",
        (child_job_id, task_id, token),
    )


def restart_begin(conn: Connection, server: str, owner: str, *, at: float, why: str) -> bool:
    """Mark the server Restarting; False (nothing written) if ``owner`` lost its lease."""
    n = conn.exec_driver_sql(
        "UPDATE server SET status='restarting' WHERE name=? AND lease_owner=?", (server, owner)
    ).rowcount
    if not n:
        return False
    add_event(
        conn, at=at, actor="engine", kind="server", server=server, reason=f"restarting: {why}"
    )
    return True


def restart_end(
    conn: Connection, server: str, owner: str, outcomes: list[Outcome], *, at: float
) -> None:
    apply_outcomes(conn, outcomes, at=at)  # fenced by each run's claim token
    n = conn.exec_driver_sql(
        "UPDATE server SET status='online', drain_deadline=NULL, restart_job_id=NULL "
        "WHERE name=? AND lease_owner=?",
        (server, owner),
    ).rowcount
    if not n:
        return  # another engine holds it now: its state is not ours to say
    add_event(conn, at=at, actor="engine", kind="server", server=server, reason="restarted: online")
