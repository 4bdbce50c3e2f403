"""The names statements are run by: the reader's variants and the flows' keys. Both the
statement builders (``engine.store``) and the code that runs them by name import these.
"""

from __future__ import annotations

from typing import Any

# The list's sort columns and the shapes of its text filter (see Reader.list_jobs).
SORTS = ("id", "name", "status", "started", "submitted_by")
TEXT_KINDS = ("none", "digits", "words")


# The keys of the flows' statements (``engine.store.flow_statements``) among the reads'.
FLOW = "flow:"


def variant_key(name: str, **variant: Any) -> str:
    """A statement's name with the options that select its variant:
    ``list_jobs|descending=1|sort=name|statuses=0|text=none``."""
    parts = [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(variant.items())]
    return "|".join([name, *parts])


def jobs_key(*, ids: bool, statuses: bool, name: bool) -> str:
    """The key of the statement selecting a bulk action's jobs by these filters
    (``engine.store.flow_statements``: one statement per combination)."""
    return "bulk.jobs/" + "".join(c for c, on in (("i", ids), ("s", statuses), ("n", name)) if on)


# -- the flows' statements -----------------------------------------------------------------
# engine.store.flow_statements builds each under its name; engine.flows runs it by that
# name. A status move's name stands for its statements: NAME/events and NAME/update (on
# PostgreSQL also NAME/both, the two in one), run by ``engine.flows.base.move``.

ABORT_ABORTING = "abort.aborting"
ABORT_DISRUPTED = "abort.disrupted"
ABORT_DRAIN = "abort.drain"
ABORT_JOB = "abort.job"
ABORT_LIVE_SERVERS = "abort.live_servers"
ABORT_TASKS = "abort.tasks"

APPROVAL_DECIDE = "approval.decide"
APPROVAL_TASK_BY_ID = "approval.task_by_id"
APPROVAL_TASK_BY_NAME = "approval.task_by_name"

BULK_EXIST = "bulk.exist"
BULK_RECHECK = "bulk.recheck"

CANCEL_CANCELING = "cancel.canceling"
CANCEL_DIDNT_RUN = "cancel.didnt_run"
CANCEL_JOB_CANCELED = "cancel.job_canceled"
CANCEL_JOB_CANCELING = "cancel.job_canceling"
CANCEL_TASK_COUNTS = "cancel.task_counts"

EVENT = "event"

FINALIZE_CANCELED = "finalize.canceled"
FINALIZE_ENDED = "finalize.ended"
FINALIZE_ERROR = "finalize.error"
FINALIZE_FINISHING = "finalize.finishing"
FINALIZE_FIRST_FAILURE = "finalize.first_failure"

JOB_TREE = "job.tree"
JOB_VIEW = "job.view"
JOB_WAITING = "job.waiting"
JOB_WITHHOLD = "job.withhold"

LOGS_ATTEMPTS = "logs.attempts"
LOGS_JOB = "logs.job"
LOGS_JOB_ATTEMPT = "logs.job_attempt"
LOGS_JOB_STATUS = "logs.job_status"
LOGS_RUN = "logs.run"
LOGS_RUN_BACK = "logs.run_back"
LOGS_TASKS = "logs.tasks"
LOGS_TEXTS = "logs.texts"

RERUN_DEPS = "rerun.deps"
RERUN_ENDED = "rerun.ended"
RERUN_RECIPE = "rerun.recipe"
RERUN_TASKS = "rerun.tasks"

SERVER_FORGET = "server.forget"
SERVER_ONE = "server.one"
SERVER_RUNNING_TASKS = "server.running_tasks"

SETTING = "setting"
SETTING_INSERT = "setting.insert"
SETTING_UPDATE = "setting.update"

SUBMIT_ANALYZE = "submit.analyze"
SUBMIT_DEP = "submit.dep"
SUBMIT_JOB = "submit.job"
SUBMIT_RECIPE = "submit.recipe"
SUBMIT_TASK = "submit.task"
SUBMIT_TASK_IDS = "submit.task_ids"
SUBMIT_TASKS_ESTIMATE = "submit.tasks_estimate"

# The moves a decision picks by the status it reaches.
JOB_MOVES = {"withhold": JOB_WITHHOLD, "waiting": JOB_WAITING}
FINALIZE_MOVES = {"canceled": FINALIZE_CANCELED, "ended": FINALIZE_ENDED, "error": FINALIZE_ERROR}
