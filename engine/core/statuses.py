"""Job and task statuses, and the one transition table that decides every status change.

Statuses are stored and printed in snake case (``didnt_run``); ``LABELS`` holds the
words an operator reads ("Didn't run").
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    WAITING = "waiting"
    WITHHOLD = "withhold"
    EXECUTING = "executing"
    CANCELING = "canceling"
    CANCELED = "canceled"
    ENDED = "ended"
    ERROR = "error"


class TaskStatus(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    EXECUTING = "executing"
    CANCELING = "canceling"
    DIDNT_RUN = "didnt_run"
    CANCELED = "canceled"
    ABORTING = "aborting"
    ABORTED = "aborted"
    ENDED = "ended"
    ERROR = "error"


J, T = JobStatus, TaskStatus

LABELS: dict[str, str] = {
    "waiting": "Waiting",
    "withhold": "Withhold",
    "ready": "Ready",
    "executing": "Executing",
    "canceling": "Canceling",
    "canceled": "Canceled",
    "didnt_run": "Didn't run",
    "aborting": "Aborting",
    "aborted": "Aborted",
    "ended": "Ended",
    "error": "Error",
}

# The groups the console's `f` filter cycles through (after "all"); `--status` takes them
# too. A status of the same name ("waiting", "ended") means that status alone there.
STATUS_GROUPS: dict[str, tuple[str, ...]] = {
    "running": ("executing", "canceling"),
    "waiting": ("waiting", "withhold"),
    "failed": ("error", "canceled"),
    "ended": ("ended",),
}


def with_groups(values: list[str] | None, known: list[str]) -> list[str] | None:
    """``--status`` values: each a status of ``known`` or a group's name (its statuses);
    raises ValueError naming the first that is neither."""
    if not values:
        return values
    out: list[str] = []
    for v in values:
        group = (v,) if v in known else STATUS_GROUPS.get(v)
        if group is None:
            names = ", ".join([*known, *(g for g in STATUS_GROUPS if g not in known)])
            raise ValueError(f"--status {v!r}: unknown status (known: {names})")
        out += [s for s in group if s not in out]
    return out


JOB_TERMINAL = frozenset({J.CANCELED, J.ENDED, J.ERROR})
TASK_TERMINAL = frozenset({T.DIDNT_RUN, T.CANCELED, T.ABORTED, T.ENDED, T.ERROR})
TASK_NOT_STARTED = frozenset({T.WAITING, T.READY})
TASK_RUNNING = frozenset({T.EXECUTING, T.CANCELING, T.ABORTING})
# Ended otherwise than by its work done: any of these makes a finished job an Error.
TASK_FAILED = TASK_TERMINAL - {T.ENDED}

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    J.WAITING: frozenset({J.WITHHOLD, J.EXECUTING, J.CANCELED, J.ERROR}),
    J.WITHHOLD: frozenset({J.WAITING, J.CANCELED}),
    J.EXECUTING: frozenset({J.CANCELING, J.ENDED, J.ERROR}),
    J.CANCELING: frozenset({J.CANCELED}),
    J.CANCELED: frozenset(),
    J.ENDED: frozenset(),
    J.ERROR: frozenset(),
}

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.WAITING: frozenset({T.READY, T.DIDNT_RUN}),
    T.READY: frozenset({T.EXECUTING, T.DIDNT_RUN}),
    # executing -> ready: interrupted by a server restart or a dead engine, run again.
    T.EXECUTING: frozenset({T.ENDED, T.ERROR, T.CANCELING, T.READY}),
    # canceling -> canceled also covers a graceful task interrupted by a restart.
    T.CANCELING: frozenset({T.ENDED, T.ERROR, T.CANCELED, T.ABORTING}),
    T.ABORTING: frozenset({T.ABORTED}),
    T.DIDNT_RUN: frozenset(),
    T.CANCELED: frozenset(),
    T.ABORTED: frozenset(),
    T.ENDED: frozenset(),
    T.ERROR: frozenset(),
}


class IllegalTransition(ValueError):
    """Raised when a status change is not in the transition table; nothing is written."""


def job_sources(target: str) -> frozenset[str]:
    """The job statuses from which ``target`` may be reached."""
    return frozenset(s.value for s, targets in JOB_TRANSITIONS.items() if target in targets)


def task_sources(target: str) -> frozenset[str]:
    """The task statuses from which ``target`` may be reached."""
    return frozenset(s.value for s, targets in TASK_TRANSITIONS.items() if target in targets)


def check_task(current: str, target: str) -> None:
    if target not in TASK_TRANSITIONS[TaskStatus(current)]:
        raise IllegalTransition(f"task {LABELS[current]} -> {LABELS[target]} is not allowed")


# What a finished run of a task means, given the status the database holds when the
# engine reports it. A cancel or abort written by another process may have landed
# while the task was running, so the outcome is resolved against the current status.
OUTCOMES = ("ended", "error", "canceled", "aborted", "interrupted")


def resolve_outcome(current: str, outcome: str, *, attempts_left: bool = True) -> str | None:
    """The status a task moves to when its run ends with ``outcome``; None: leave it.

    ``interrupted`` means the engine stopped the run without anyone asking (a server
    restart of another job's abort, or the engine shutting down).
    """
    if current not in TASK_RUNNING:
        return None  # not running (settled, or never started): there is no run to report
    if current == T.ABORTING:
        return T.ABORTED  # abort wins: the result of the run is discarded
    if outcome == "interrupted":
        if current == T.CANCELING:
            return T.CANCELED
        if current == T.EXECUTING:
            return T.READY if attempts_left else T.ERROR
        return None
    if outcome == "aborted":
        # An asyncio cancel with no abort recorded: treat as an interruption.
        return resolve_outcome(current, "interrupted", attempts_left=attempts_left)
    if outcome == "canceled":
        return T.CANCELED if current == T.CANCELING else T.ERROR
    if outcome in ("ended", "error"):
        return outcome if current in (T.EXECUTING, T.CANCELING) else None
    raise ValueError(f"unknown outcome {outcome!r}")


def job_status_after(current: str, counts: dict[str, int]) -> str | None:
    """The status a started job moves to given its tasks' status counts, or None.

    Only finishing moves are decided here; starting, holding and canceling are
    requests made elsewhere.
    """
    running = sum(counts.get(s, 0) for s in TASK_RUNNING)
    pending = sum(counts.get(s, 0) for s in TASK_NOT_STARTED)
    if current == J.CANCELING and running == 0:
        return J.CANCELED
    if current == J.EXECUTING and running == 0 and pending == 0:
        failed = sum(counts.get(s, 0) for s in TASK_FAILED)
        return J.ERROR if failed else J.ENDED
    return None


def no_such_job(job_id: int) -> str:
    return f"Job {job_id} does not exist"
