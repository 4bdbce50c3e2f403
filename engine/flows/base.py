"""The operators' decisions, each one transaction over an ``Sql`` (``engine.sql.protocol``):
the same code whichever path runs it, ``Store.transaction()`` on SQLAlchemy (the engine,
the console) or the light path on the checked-in SQL text (the command line).

Here: what every flow shares (``move``, events, settings, a job's finish), cancel and
submit. A request that cannot be done raises a ``Refusal``; nothing is written then.
The other flows: ``abort``, ``bulk``, ``requests`` (hold, release, approvals),
``rerun``, ``settings``, ``logs`` (reads), ``stopping`` (how each task stops).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.core.manager_rule import Who, refusal, who_with
from engine.core.refusal import Refusal
from engine.core.setting_values import DEFAULTS
from engine.core.statuses import JOB_TERMINAL, LABELS, job_status_after, no_such_job
from engine.core.views import JobView, TaskView
from engine.sql import keys
from engine.sql.protocol import Sql

if TYPE_CHECKING:
    from engine.recipes import Recipe, TaskSpec

# A write transaction of the caller's (``Store.transaction``, the light path's): each
# call opens one, committed when its block ends, rolled back on any exception.
Transaction = Callable[[], AbstractContextManager[Sql]]


def at_or_now(at: float | None) -> float:
    """A request's time: ``at`` as given, or now."""
    return time.time() if at is None else at


def move(sql: Sql, key: str, *, at: float, actor: str, reason: str | None, **params: Any) -> int:
    """A status move (``engine.store.writes.TaskMove`` / ``JobMove`` registered under ``key``):
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
        keys.EVENT,
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
    rows = sql.rows(keys.SETTING, {"key": f"setting.{key}"})
    value = rows[0].value if rows else None
    return value if value is not None else DEFAULTS[key]


def who(sql: Sql, actor: str | None = None) -> Who:
    """``actor`` (default: the current user) under the ``managers`` setting as stored:
    who they are and whether they are a manager (the console's header)."""
    return who_with(actor, setting(sql, "managers"))


def audit_refusal(
    transaction: Transaction,
    text: str,
    *,
    actor: str,
    job_id: int | None,
    at: float | None = None,
) -> None:
    """Record a refusal by the ``managers`` rule in the audit, in a transaction of its own:
    the refused request itself wrote nothing."""
    with transaction() as sql:
        add_event(
            sql, at=at_or_now(at), actor=actor, kind="refused", job_id=job_id, reason=str(text)
        )


def finalize_jobs(sql: Sql, job_ids: Iterable[int], *, at: float) -> list[int]:
    """Finish the started jobs among ``job_ids`` whose tasks allow it; returns those moved."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    jobs = sql.rows(keys.FINALIZE_FINISHING, {"ids": ids})
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
            first = sql.rows(keys.FINALIZE_FIRST_FAILURE, {"job_id": j.id})
            error = f"task {first[0].name}: {first[0].why}" if first else "a task did not end"
        if move(
            sql,
            keys.FINALIZE_MOVES[target],
            at=at,
            actor="engine",
            reason=error,
            job_id=j.id,
            error=error,
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
    move(sql, keys.CANCEL_DIDNT_RUN, **said, ids=running + waiting)
    done = set(waiting)
    if running:
        stopping = move(sql, keys.CANCEL_CANCELING, **said, ids=running)
        move(sql, keys.CANCEL_JOB_CANCELING, **said, ids=running, by=actor)
        # One job with a task now Canceling cannot finish yet: no need to read whether
        # it does (a third of a one-job cancel's statement time on PostgreSQL).
        if len(running) > 1 or not stopping:
            done.update(finalize_jobs(sql, running, at=at))
    if waiting:
        move(sql, keys.CANCEL_JOB_CANCELED, **said, ids=waiting, by=actor)
    return done


def job_view(sql: Sql, job_id: int) -> JobView:
    """The job as the console and the command line show it (its own columns); a Refusal
    (``missing``) if there is no such job."""
    rows = sql.rows(keys.JOB_VIEW, {"job_id": job_id})
    if not rows:
        raise Refusal("missing", no_such_job(job_id))
    return view_of(rows[0])


def view_of(r: Any) -> JobView:
    """A row of the job's columns (``flow_statements.JOB_COLUMNS``) as its JobView."""
    return JobView(**r._asdict() | {"system": bool(r.system), "orphaned": bool(r.orphaned)})


def cancel_refusal(w: Who, job: Any) -> Refusal | None:
    """Why ``w`` may not cancel ``job`` (a JobView, or a row of its id, status, system and
    submitted_by) now: the ``managers`` rule (kind ``rule``), else what the job is or its
    status (kind ``status``). None: the cancel goes ahead."""
    denied = refusal(w, "cancel", job.submitted_by)
    if denied is not None:
        return denied
    if job.system:
        return Refusal("status", "System jobs cannot be canceled")
    if job.status in JOB_TERMINAL:
        return Refusal("status", f"Job {job.id} already {LABELS[job.status]}")
    if job.status == "canceling":
        return Refusal("status", f"Job {job.id} is already Canceling: nothing to do")
    return None


def job_tree(sql: Sql, job_id: int) -> list[JobView]:
    """The job and all its descendants, parents before children; a Refusal (``missing``)
    if there is no such job."""
    job_view(sql, job_id)
    return [view_of(r) for r in sql.rows(keys.JOB_TREE, {"job_id": job_id})]


def cancel_dry_run(
    sql: Sql, job_id: int, *, actor: str | None = None, tree: bool
) -> list[tuple[JobView, Refusal | None]]:
    """What a cancel would do, changing nothing: each job it would reach (``tree``: the job
    and every job it called, parents first) with why it would be refused for ``actor``
    (default: the current user), None where it would go ahead. A Refusal (``missing``)
    if there is no such job."""
    jobs = job_tree(sql, job_id) if tree else [job_view(sql, job_id)]
    w = who(sql, actor)
    return [(j, cancel_refusal(w, j)) for j in jobs]


@dataclass(frozen=True)
class CancelPreview:
    """What the console needs before it asks: the job, why a cancel would be refused
    now (None: it would not), and what it would do to the job's tasks."""

    job: JobView | None  # None: there is no such job (the refusal says so)
    refusal: Refusal | None
    not_started: int = 0  # Waiting/Ready tasks: they become Didn't run
    running: int = 0  # Executing tasks: they become Canceling and wind down
    tasks: tuple[TaskView, ...] = ()  # those tasks, each with how a cancel stops it


def cancel_preview(sql: Sql, job_id: int, *, actor: str | None = None) -> CancelPreview:
    """One read for a cancel's confirmation: the job, the refusal for ``actor`` (default:
    the current user) and the plan together. ``cancel`` checks again when it runs, in its
    own transaction."""
    # Imported here: the cancel itself (the command line's light path) needs no actions.
    from engine.flows.stopping import tasks_in

    try:
        job = job_view(sql, job_id)
    except Refusal as exc:
        return CancelPreview(None, exc)
    why = cancel_refusal(who(sql, actor), job)
    counts = {r.status: r.n for r in sql.rows(keys.CANCEL_TASK_COUNTS, {"job_id": job_id})}
    running = counts.get("executing", 0)
    return CancelPreview(
        job,
        why,
        not_started=counts.get("waiting", 0) + counts.get("ready", 0),
        running=running,
        tasks=tuple(tasks_in(sql, job_id, ["executing"]) if running else ()),
    )


def cancel(
    transaction: Transaction,
    job_id: int,
    *,
    actor: str,
    words: str | None = None,
    at: float | None = None,
) -> str:
    """Cancel one job: one transaction, after the ``managers`` rule and the job's status
    allow it (``cancel_refusal``); returns what the job became. ``at``: default now.
    Every refusal raises it; one by the rule is first recorded in the audit, in a
    transaction of its own (the refused cancel writes nothing)."""
    at = at_or_now(at)
    with transaction() as sql:
        job = job_view(sql, job_id)
        why = cancel_refusal(who(sql, actor), job)
        if why is not None and not why.audited:
            raise why
        if why is None:
            cancel_in(sql, job.id, job.status, actor=actor, words=words, at=at)
            status = job_view(sql, job_id).status
    if why is not None:
        audit_refusal(transaction, why.text, actor=actor, job_id=job_id, at=at)
        raise why
    return f"Job {job_id} {LABELS[status]}"


def cancel_tree(
    transaction: Transaction,
    job_id: int,
    *,
    actor: str,
    words: str | None = None,
    at: float | None = None,
) -> str:
    """Cancel the job and every job it called, in one transaction: each job the
    ``managers`` rule and its status allow; the others are skipped and named. A Refusal
    when none can be canceled (one by the rule then recorded in the audit)."""
    at = at_or_now(at)
    with transaction() as sql:
        tree = job_tree(sql, job_id)
        w = who(sql, actor)
        why = {j.id: cancel_refusal(w, j) for j in tree}
        todo = [j for j in tree if why[j.id] is None]
        for j in todo:
            cancel_in(sql, j.id, j.status, actor=actor, words=words, at=at)
        if todo and not w.manager:
            for j in tree:
                refused = why[j.id]
                if refused is not None and refused.audited:
                    add_event(
                        sql, at=at, actor=actor, kind="refused", job_id=j.id, reason=refused.text
                    )
    if not todo:
        text = f"No job in the tree of job {job_id} can be canceled: " + "; ".join(
            f"{j.id}: {why[j.id]}" for j in tree
        )
        by_rule = any((r := why[j.id]) is not None and r.audited for j in tree)
        if by_rule:
            audit_refusal(transaction, text, actor=actor, job_id=job_id, at=at)
        # Refused by the rule for one job at least: the whole refusal is the rule's.
        raise Refusal("rule" if by_rule else "status", text)
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
        keys.SUBMIT_JOB,
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
    sql.run(keys.SUBMIT_RECIPE, {"job_id": job_id, "recipe_json": recipe_to_json(recipe)})

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
        sql.run(keys.SUBMIT_TASK, rows)
    if len(rows) >= STATISTICS_MIN_TASKS:
        # PostgreSQL: a job this size in a table the planner knows little of would be
        # claimed by a plan that sorts every Ready task of it on each claim.
        (known,) = sql.rows(keys.SUBMIT_TASKS_ESTIMATE, {})
        if known.n is not None and (known.n < 0 or len(rows) * 10 >= known.n):
            sql.run(keys.SUBMIT_ANALYZE, {})
    deps = [(spec.name, dep) for spec in recipe.tasks for dep in spec.after]
    if deps:
        ids = {r.name: r.id for r in sql.rows(keys.SUBMIT_TASK_IDS, {"b_job_id": job_id})}
        sql.run(keys.SUBMIT_DEP, [{"b_task_id": ids[t], "b_dep_id": ids[d]} for t, d in deps])
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
    transaction: Transaction,
    recipe: Recipe,
    *,
    actor: str,
    system: bool | None = None,
    at: float | None = None,
) -> int:
    """Submit a validated recipe in one transaction (``at``: default now): the new job's
    id. ``system``: None takes the recipe's own."""
    with transaction() as sql:
        return insert_job(sql, recipe, actor=actor, at=at_or_now(at), system=system)
