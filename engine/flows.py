"""Transactions written once and run on either path: SQLAlchemy's or the light one.

A flow names its statements by key (``engine.flow_statements`` builds them from the
tables) and runs them through an ``Sql``: ``PreparedSql`` on a SQLAlchemy connection
(the engine, the console, every command), or ``engine.read_sql.LightSql`` on a plain
``sqlite3`` connection running their rendered text, so that ``batchdeck cancel`` need
not import SQLModel (~0.6 s) to write one transaction. The decisions (who may, which
status may move, when a job has finished) live here once, whichever path runs them.
Here: the core (``Sql``, ``move``, events, settings, a job's finish), cancel and submit;
``engine.abort_flow``: abort; ``engine.request_flows``: hold, release, approvals.
No SQLAlchemy here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from engine.manager_rule import Who, refusal, refused_by_rule, who_with
from engine.query import JobView
from engine.setting_values import DEFAULTS
from engine.statuses import LABELS, cancel_refused, job_status_after, no_such_job

if TYPE_CHECKING:
    from engine.recipes import Recipe, TaskSpec

Params = Mapping[str, Any]


class Refused(Exception):
    """The request cannot be done; the message is one line for the operator."""


class Sql(Protocol):
    """The statements of ``engine.flow_statements``, run by key in one transaction."""

    def rows(self, key: str, params: Params) -> list[Any]:
        """A read's rows, their columns as attributes."""
        ...

    def run(self, key: str, params: Params | Sequence[Params]) -> int:
        """A write (several parameter sets: one ``executemany``); its row count."""
        ...

    def db_now(self, fallback: float) -> float:
        """The time leases are compared in: the database's clock on PostgreSQL,
        ``fallback`` (the caller's clock, injectable in tests) on SQLite."""
        ...

    @property
    def moves_in_one(self) -> bool:
        """A move's event rows and rows in one statement (``KEY/both``): PostgreSQL."""
        ...


def move(sql: Sql, key: str, *, at: float, actor: str, reason: str | None, **params: Any) -> int:
    """A status move (``engine.writes.TaskMove`` / ``JobMove`` registered under ``key``):
    its event rows, then its rows; the count moved."""
    p = {**params, "m_at": at, "m_actor": actor, "m_reason": reason}
    if sql.moves_in_one:
        return sql.run(f"{key}/both", p)
    sql.run(f"{key}/events", p)
    return sql.run(f"{key}/update", p)


def add_event(
    sql: Sql,
    *,
    at: float,
    actor: str,
    kind: str,
    reason: str | None = None,
    job_id: int | None = None,
    task_id: int | None = None,
    server: str | None = None,
) -> None:
    sql.run(
        "event",
        {
            "at": at,
            "job_id": job_id,
            "task_id": task_id,
            "server": server,
            "kind": kind,
            "actor": actor,
            "reason": reason,
        },
    )


def setting(sql: Sql, key: str) -> str:
    rows = sql.rows("setting", {"key": f"setting.{key}"})
    value = rows[0].value if rows else None
    return value if value is not None else DEFAULTS[key]


def who(sql: Sql, actor: str) -> Who:
    """``actor`` under the ``managers`` setting as stored."""
    return who_with(actor, setting(sql, "managers"))


def audit_refusal(
    transaction: Callable[[], AbstractContextManager[Sql]],
    text: str,
    *,
    actor: str,
    job_id: int | None,
    at: float,
) -> None:
    """Record a refusal by the ``managers`` rule in the audit, in a transaction of its own:
    the refused request itself wrote nothing."""
    with transaction() as sql:
        add_event(sql, at=at, actor=actor, kind="refused", job_id=job_id, reason=text)


def finalize_jobs(sql: Sql, job_ids: Iterable[int], *, at: float) -> list[int]:
    """Finish the started jobs among ``job_ids`` whose tasks allow it; returns those moved."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    jobs = sql.rows("finalize.finishing", {"ids": ids})
    if not jobs:
        return []
    moved = []
    for j in jobs:
        # The probe has found nothing running (nor left to start, if Executing): of the
        # counts the decision reads, only "some task failed" can be non-zero.
        target = job_status_after(j.status, {"error": 1} if j.failed else {})
        if target is None:
            continue
        error = None
        if target == "error":
            first = sql.rows("finalize.first_failure", {"job_id": j.id})
            error = f"task {first[0].name}: {first[0].why}" if first else "a task did not end"
        if move(
            sql, f"finalize.{target}", at=at, actor="engine", reason=error, job_id=j.id, error=error
        ):
            moved.append(j.id)
    return moved


# -- cancel -------------------------------------------------------------------------------


def cancel_reason(actor: str, words: str | None) -> str:
    reason = f"Job canceled by {actor}"
    words = (words or "").strip()
    return f"{reason}: {words}" if words else reason


def cancel_in(
    sql: Sql, job_id: int, status: str, *, actor: str, words: str | None, at: float
) -> None:
    """Cancel one job whose cancel is allowed (``cancel_many`` of it)."""
    running = [job_id] if status == "executing" else []
    cancel_many(sql, running, [] if running else [job_id], actor=actor, words=words, at=at)


def cancel_many(
    sql: Sql, running: list[int], waiting: list[int], *, actor: str, words: str | None, at: float
) -> set[int]:
    """Cancel the jobs whose cancel is allowed, a few statements for all: their
    not-started tasks Didn't run, running ones Canceling; ``running`` (the jobs that were
    Executing) Canceling, or Canceled once nothing runs; ``waiting`` (nothing started)
    Canceled at once. Returns the jobs now Canceled."""
    said = {"at": at, "actor": actor, "reason": cancel_reason(actor, words)}
    if not running and not waiting:
        return set()
    move(sql, "cancel.didnt_run", **said, ids=running + waiting)
    done = set(waiting)
    if running:
        stopping = move(sql, "cancel.canceling", **said, ids=running)
        move(sql, "cancel.job_canceling", **said, ids=running, by=actor)
        # One job with a task now Canceling cannot finish yet: no need to read whether
        # it does (a third of a one-job cancel's statement time on PostgreSQL).
        if len(running) > 1 or not stopping:
            done.update(finalize_jobs(sql, running, at=at))
    if waiting:
        move(sql, "cancel.job_canceled", **said, ids=waiting, by=actor)
    return done


def job_view(sql: Sql, job_id: int) -> JobView:
    """The job as the console and the command line show it (its own columns); Refused
    if there is no such job."""
    rows = sql.rows("job.view", {"job_id": job_id})
    if not rows:
        raise Refused(no_such_job(job_id))
    return view_of(rows[0])


def view_of(r: Any) -> JobView:
    """A row of the job's columns (``flow_statements.JOB_COLUMNS``) as its JobView."""
    return JobView(**r._asdict() | {"system": bool(r.system), "orphaned": bool(r.orphaned)})


def cancel_refusal_for(w: Who, job: Any) -> str | None:
    """Why ``w`` may not cancel ``job`` (a JobView, or a row of its id, status, system and
    submitted_by) now, by the ``managers`` rule or by its status; None: the cancel goes
    ahead."""
    return refusal(w, "cancel", job.submitted_by) or cancel_refused(job.id, job.status, job.system)


def job_tree(sql: Sql, job_id: int) -> list[JobView]:
    """The job and all its descendants, parents before children; Refused if no such job."""
    job_view(sql, job_id)
    return [view_of(r) for r in sql.rows("job.tree", {"job_id": job_id})]


def cancel_dry_run(
    sql: Sql, job_id: int, *, actor: str, tree: bool
) -> list[tuple[int, str | None]]:
    """What a cancel would do, changing nothing: each job it would reach (``tree``: the job
    and every job it called) with why it would be refused, None where it would go
    ahead. A job that does not exist is a refusal in those words too."""
    try:
        jobs = job_tree(sql, job_id) if tree else [job_view(sql, job_id)]
    except Refused as exc:
        return [(job_id, str(exc))]
    w = who(sql, actor)
    return [(j.id, cancel_refusal_for(w, j)) for j in jobs]


def cancel(
    transaction: Callable[[], AbstractContextManager[Sql]],
    job_id: int,
    *,
    actor: str,
    words: str | None,
    at: float,
) -> str:
    """Cancel one job: one transaction, after the ``managers`` rule and the job's status
    allow it; returns what the job became. A refusal by the rule is recorded in the audit
    in a transaction of its own (the refused cancel writes nothing); every refusal raises
    Refused. ``transaction()``: a write transaction, committed when it ends."""
    with transaction() as sql:
        job = job_view(sql, job_id)
        denied = refusal(who(sql, actor), "cancel", job.submitted_by)
        if denied is None:
            why = cancel_refused(job.id, job.status, job.system)
            if why is not None:
                raise Refused(why)
            cancel_in(sql, job.id, job.status, actor=actor, words=words, at=at)
            status = job_view(sql, job_id).status
    if denied is not None:
        audit_refusal(transaction, denied, actor=actor, job_id=job_id, at=at)
        raise Refused(denied)
    return f"Job {job_id} {LABELS[status]}"


def cancel_tree(
    transaction: Callable[[], AbstractContextManager[Sql]],
    job_id: int,
    *,
    actor: str,
    words: str | None,
    at: float,
) -> str:
    """Cancel the job and every job it called, in one transaction: each job the
    ``managers`` rule and its status allow; the others are skipped and named. Refused
    when none can be canceled (a refusal by the rule then recorded in the audit)."""
    with transaction() as sql:
        tree = job_tree(sql, job_id)
        w = who(sql, actor)
        why = {j.id: cancel_refusal_for(w, j) for j in tree}
        todo = [j for j in tree if why[j.id] is None]
        for j in todo:
            cancel_in(sql, j.id, j.status, actor=actor, words=words, at=at)
        if todo and not w.manager:
            for j in tree:
                if refused_by_rule(why[j.id]):
                    add_event(
                        sql, at=at, actor=actor, kind="refused", job_id=j.id, reason=why[j.id]
                    )
    if not todo:
        text = f"No job in the tree of job {job_id} can be canceled: " + "; ".join(
            f"{j.id}: {why[j.id]}" for j in tree
        )
        if any(refused_by_rule(why[j.id]) for j in tree):
            audit_refusal(transaction, text, actor=actor, job_id=job_id, at=at)
        raise Refused(text)
    skipped = [f"job {j.id} ({why[j.id]})" for j in tree if j not in todo]
    text = f"Canceled {len(todo)} job{'s' if len(todo) != 1 else ''} of the tree of job {job_id}"
    return text + (f"; skipped {', '.join(skipped)}" if skipped else "")


# -- submit -------------------------------------------------------------------------------

# A job of at least this many tasks that adds a tenth or more to the task table has
# PostgreSQL's statistics of it taken again in its submit (``TaskStatistics``): 20-40
# ms for 20,000 tasks, within the submit's own cost of a few hundred.
STATISTICS_MIN_TASKS = 1000


def insert_job(
    sql: Sql,
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
    """Insert a job and its tasks. ``carried``: task name -> message, for the tasks a
    rerun carries over as Ended (they do not run again; their dependents can start)."""
    from engine.recipes import recipe_to_json

    carried = carried or {}
    (row,) = sql.rows(
        "submit.job",
        {
            "name": recipe.name,
            "recipe_path": recipe.path,
            "system": recipe.system if system is None else system,
            "submitted_by": actor,
            "submitted_at": at,
            "parent_id": parent_id,
            "parent_task_id": parent_task_id,
            "call_mode": call_mode,
            "rerun_of": rerun_of,
        },
    )
    job_id = row.id
    sql.run("submit.recipe", {"job_id": job_id, "recipe_json": recipe_to_json(recipe)})

    def status(spec: TaskSpec) -> str:
        if spec.name in carried:
            return "ended"
        return "ready" if all(d in carried for d in spec.after) else "waiting"

    # One executemany: the job's own values are the same in every row.
    rows = [
        {
            "b_job_id": job_id,
            "b_max_attempts": recipe.max_attempts,
            "b_seq": seq,
            "b_name": spec.name,
            "b_action": spec.action,
            "b_params": json.dumps(spec.params),
            "b_status": status(spec),
            "b_message": carried.get(spec.name),
            "b_ended_at": at if spec.name in carried else None,
        }
        for seq, spec in enumerate(recipe.tasks)
    ]
    if rows:
        sql.run("submit.task", rows)
    if len(rows) >= STATISTICS_MIN_TASKS:
        # PostgreSQL: a job this size in a table the planner knows little of would be
        # claimed by a plan that sorts every Ready task of it on each claim.
        (known,) = sql.rows("submit.tasks_estimate", {})
        if known.n is not None and (known.n < 0 or len(rows) * 10 >= known.n):
            sql.run("submit.analyze", {})
    deps = [(spec.name, dep) for spec in recipe.tasks for dep in spec.after]
    if deps:
        ids = {r.name: r.id for r in sql.rows("submit.task_ids", {"b_job_id": job_id})}
        sql.run("submit.dep", [{"b_task_id": ids[t], "b_dep_id": ids[d]} for t, d in deps])
    how = f"called by job {parent_id} ({call_mode})" if parent_id else "submitted"
    what = f"{len(rows)} task{'s' if len(rows) != 1 else ''}"
    if rerun_of is not None:
        how = f"rerun of job {rerun_of}"
        names = [spec.name for spec in recipe.tasks if spec.name in carried]
        what += f", {len(names)} carried over as Ended" + (
            f" ({', '.join(names)})" if names else ""
        )
    add_event(sql, at=at, actor=actor, kind="request", job_id=job_id, reason=f"{how}: {what}")
    return job_id


def submit(
    transaction: Callable[[], AbstractContextManager[Sql]],
    recipe: Recipe,
    *,
    actor: str,
    system: bool | None,
    at: float,
) -> int:
    """Submit a validated recipe: the new job's id."""
    with transaction() as sql:
        return insert_job(sql, recipe, actor=actor, at=at, system=system)
