"""Hold, release and approval decisions as flows (``engine.flows.base``): one transaction
each; ``at`` defaults to now; a request that cannot be done raises a ``Refusal``."""

from __future__ import annotations

from engine.core.refusal import Refusal
from engine.core.statuses import LABELS
from engine.flows.base import Transaction, add_event, at_or_now, job_view, move
from engine.sql import keys


def _hold_move(
    transaction: Transaction,
    job_id: int,
    source: str,
    target: str,
    *,
    actor: str,
    needs: str,
    verb: str,
    at: float | None,
) -> None:
    with transaction() as sql:
        job = job_view(sql, job_id)
        if job.status != source:
            raise Refusal("status", f"Job {job_id} is {LABELS[job.status]}: {needs}")
        move(
            sql,
            keys.JOB_MOVES[target],
            at=at_or_now(at),
            actor=actor,
            reason=f"{verb} by {actor}",
            job_id=job_id,
        )


def hold(transaction: Transaction, job_id: int, *, actor: str, at: float | None = None) -> str:
    _hold_move(
        transaction,
        job_id,
        "waiting",
        "withhold",
        actor=actor,
        verb="held",
        needs="only a Waiting job can be held",
        at=at,
    )
    return f"Job {job_id} Withhold"


def release(transaction: Transaction, job_id: int, *, actor: str, at: float | None = None) -> str:
    _hold_move(
        transaction,
        job_id,
        "withhold",
        "waiting",
        actor=actor,
        verb="released",
        needs="only a held job can be released",
        at=at,
    )
    return f"Job {job_id} released (Waiting)"


def decide_approval(
    transaction: Transaction,
    job_id: int,
    task: str | int,
    *,
    approve: bool,
    actor: str,
    at: float | None = None,
) -> str:
    """Approve or reject the approval task ``task`` (its id, or its name) of the job."""
    with transaction() as sql:
        job_view(sql, job_id)
        if str(task).isdigit():
            rows = sql.rows(keys.APPROVAL_TASK_BY_ID, {"job_id": job_id, "task_id": int(task)})
        else:
            rows = sql.rows(keys.APPROVAL_TASK_BY_NAME, {"job_id": job_id, "name": str(task)})
        if not rows:
            raise Refusal("missing", f"Job {job_id} has no task {task!r}")
        tid, name, action, status, decided = rows[0]
        if action != "approval":
            raise Refusal("input", f"Task {name} of job {job_id} is not an approval task")
        if status not in ("executing", "canceling"):
            raise Refusal(
                "status",
                f"Task {name} of job {job_id} is {LABELS[status]}: it is not waiting for approval",
            )
        if decided:
            raise Refusal("status", f"Task {name} of job {job_id} was already {decided}")
        word = "approved" if approve else "rejected"
        sql.run(keys.APPROVAL_DECIDE, {"task_id": tid, "word": word, "by": actor})
        add_event(
            sql,
            at=at_or_now(at),
            actor=actor,
            kind="approval",
            job_id=job_id,
            task_id=tid,
            reason=f"{word} by {actor}",
        )
    return f"Task {name} of job {job_id} {word}"
