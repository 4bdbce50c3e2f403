"""The statements of ``engine.flows.base``, by key, built from the tables.

``flow_sql(conn)`` runs a flow on a SQLAlchemy connection; ``statements()`` is what
``engine.sql.light`` renders into SQL text for the light path, so both run the very
same text.
"""

from __future__ import annotations

from dataclasses import fields
from itertools import product

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.sql import ClauseElement

from engine.core.statuses import JOB_TERMINAL
from engine.core.views import JobView, TaskView
from engine.sql import keys
from engine.sql.keys import jobs_key
from engine.store.dialect import TaskStatistics, glob, in_list, one_of
from engine.store.log_statements import LOG_READS
from engine.store.prepared import Prepared, PreparedSql
from engine.store.tables import job, job_recipe, meta, server, task, taskdep
from engine.store.writes import AT, JobMove, TaskMove, statement_keys
from engine.store.writes import STATEMENTS as WRITES

# The views' fields that are columns (engine.query): read by name.
JOB_COLUMNS = [job.c[f.name] for f in fields(JobView) if f.name in job.c]
_TASK_COLUMNS = [task.c[f.name] for f in fields(TaskView) if f.name in task.c]


def _job_tree() -> Select:
    # Typed: PostgreSQL must know the recursive term's column type from the first row.
    start = cast(bindparam("job_id", type_=Integer), Integer)
    tree = select(start.label("id"), literal(0).label("depth")).cte("tree", recursive=True)
    child = job.alias("j")
    tree = tree.union_all(
        select(child.c.id, tree.c.depth + 1).join(tree, child.c.parent_id == tree.c.id)
    )
    return select(*JOB_COLUMNS).join(tree, job.c.id == tree.c.id).order_by(tree.c.depth, job.c.id)


def _bulk_jobs() -> dict[str, Prepared]:
    """A bulk action's jobs, one statement per combination of its filters (marked ids,
    statuses, a name pattern): without ids or statuses, the jobs not in a final status."""
    out = {}
    for ids, statuses, name in product((False, True), repeat=3):
        stmt = select(*JOB_COLUMNS).order_by(job.c.id)
        if ids:
            stmt = stmt.where(in_list(job.c.id, "ids"))
        if statuses:
            stmt = stmt.where(in_list(job.c.status, "statuses"))
        elif not ids:
            stmt = stmt.where(~one_of(job.c.status, JOB_TERMINAL))
        if name:
            stmt = stmt.where(glob(job.c.name, "", name="name"))
        out[jobs_key(ids=ids, statuses=statuses, name=name)] = Prepared(stmt)
    return out


_OF_JOB = task.c.job_id == bindparam("job_id", type_=Integer)
_OF_JOBS = in_list(task.c.job_id, "ids")
_CANCEL_FIELDS = {
    "canceled_by": bindparam("by", type_=String),
    "canceled_at": AT,
    "cancel_reason": bindparam("m_reason", type_=String),
}

# Prepared once: a cancel of 10,000 tasks is two set-based statements per move, and
# compiling them again on every cancel cost more than SQLite's own work on the events.
STATEMENTS: dict[str, Prepared] = {
    **WRITES,
    **statement_keys(
        {
            keys.SETTING: Prepared(
                select(meta.c.value).where(meta.c.key == bindparam("key", type_=String))
            ),
            keys.SETTING_UPDATE: Prepared(
                update(meta)
                .where(meta.c.key == bindparam("key", type_=String))
                .values(value=bindparam("value", type_=String))
            ),
            keys.SETTING_INSERT: Prepared(
                insert(meta).values(
                    key=bindparam("key", type_=String), value=bindparam("value", type_=String)
                )
            ),
            # A job as the views show it: its columns named as JobView's fields.
            keys.JOB_VIEW: Prepared(
                select(*JOB_COLUMNS).where(job.c.id == bindparam("job_id", type_=Integer))
            ),
            # The job and its descendants, parents first (a recursive CTE over parent_id).
            keys.JOB_TREE: Prepared(_job_tree()),
            # A cancel's confirmation: the job's tasks by status.
            keys.CANCEL_TASK_COUNTS: Prepared(
                select(task.c.status, func.count().label("n"))
                .where(_OF_JOB)
                .group_by(task.c.status)
            ),
            # A cancel's moves, for the jobs ``:ids`` at once (one job, a tree, a bulk chunk).
            keys.CANCEL_DIDNT_RUN: TaskMove(
                "didnt_run",
                and_(_OF_JOBS, one_of(task.c.status, ["waiting", "ready"])),
                {"ended_at": AT},
            ),
            keys.CANCEL_CANCELING: TaskMove(
                "canceling", and_(_OF_JOBS, task.c.status == "executing")
            ),
            keys.CANCEL_JOB_CANCELING: JobMove(
                "canceling", _CANCEL_FIELDS, where=in_list(job.c.id, "ids")
            ),
            keys.CANCEL_JOB_CANCELED: JobMove(
                "canceled", {**_CANCEL_FIELDS, "ended_at": AT}, where=in_list(job.c.id, "ids")
            ),
            keys.ABORT_TASKS: Prepared(
                select(*_TASK_COLUMNS, task.c.params, job.c.recipe_path)
                .join(job, job.c.id == task.c.job_id)
                .where(_OF_JOB, in_list(task.c.status, "statuses"))
                .order_by(task.c.id)
            ),
            # Jobs whose tasks run on the servers an enhanced abort restarts.
            keys.ABORT_DISRUPTED: Prepared(
                select(job.c.id, job.c.name, task.c.name)
                .join(job, job.c.id == task.c.job_id)
                .where(
                    in_list(task.c.server, "servers"),
                    task.c.job_id != bindparam("job_id", type_=Integer),
                    one_of(task.c.status, ["executing", "canceling", "aborting"]),
                )
                .order_by(job.c.id, task.c.id)
            ),
            keys.ABORT_ABORTING: TaskMove("aborting", and_(_OF_JOB, task.c.status == "canceling")),
            keys.ABORT_LIVE_SERVERS: Prepared(
                select(server.c.name).where(
                    server.c.lease_owner.is_not(None),
                    server.c.heartbeat_at > bindparam("since", type_=Float),
                )
            ),
            keys.ABORT_JOB: Prepared(
                update(job)
                .where(job.c.id == bindparam("job_id", type_=Integer))
                .values(
                    aborted_by=bindparam("by", type_=String),
                    aborted_at=bindparam("at", type_=Float),
                )
            ),
            keys.ABORT_DRAIN: Prepared(
                update(server)
                .where(server.c.name == bindparam("name", type_=String))
                .values(
                    status="draining",
                    drain_deadline=bindparam("deadline", type_=Float),
                    restart_job_id=bindparam("job_id", type_=Integer),
                )
            ),
            # servers --forget (engine.server_names)
            keys.SERVER_ONE: Prepared(
                select(
                    server.c.name, server.c.status, server.c.lease_owner, server.c.heartbeat_at
                ).where(server.c.name == bindparam("name", type_=String))
            ),
            keys.SERVER_RUNNING_TASKS: Prepared(
                select(func.count()).where(
                    task.c.server == bindparam("name", type_=String),
                    one_of(task.c.status, ["executing", "canceling", "aborting"]),
                )
            ),
            keys.SERVER_FORGET: Prepared(
                delete(server).where(server.c.name == bindparam("name", type_=String))
            ),
            keys.JOB_WITHHOLD: JobMove("withhold"),
            keys.JOB_WAITING: JobMove("waiting"),
            **{
                f"approval.task_by_{by}": Prepared(
                    select(
                        task.c.id, task.c.name, task.c.action, task.c.status, task.c.approval
                    ).where(_OF_JOB, column == bindparam(param, type_=kind))
                )
                for by, column, param, kind in (
                    ("id", task.c.id, "task_id", Integer),
                    ("name", task.c.name, "name", String),
                )
            },
            keys.APPROVAL_DECIDE: Prepared(
                update(task)
                .where(task.c.id == bindparam("task_id", type_=Integer))
                .values(
                    approval=bindparam("word", type_=String),
                    approval_by=bindparam("by", type_=String),
                )
            ),
            keys.RERUN_RECIPE: Prepared(
                select(job.c.name, job.c.recipe_path, job.c.system, job_recipe.c.recipe_json)
                .outerjoin(job_recipe, job_recipe.c.job_id == job.c.id)
                .where(job.c.id == bindparam("job_id", type_=Integer))
            ),
            keys.RERUN_TASKS: Prepared(
                select(task.c.id, task.c.name, task.c.action, task.c.params, task.c.max_attempts)
                .where(_OF_JOB)
                .order_by(task.c.seq, task.c.id)
            ),
            keys.RERUN_DEPS: Prepared(
                select(taskdep.c.task_id, taskdep.c.dep_id)
                .join(task, task.c.id == taskdep.c.task_id)
                .where(_OF_JOB)
                .order_by(taskdep.c.task_id, taskdep.c.dep_id)
            ),
            keys.RERUN_ENDED: Prepared(
                select(task.c.name).where(_OF_JOB, task.c.status == "ended")
            ),
            keys.SUBMIT_JOB: Prepared(
                insert(job)
                .values(
                    name=bindparam("name", type_=String),
                    recipe_path=bindparam("recipe_path", type_=String),
                    status="waiting",
                    system=bindparam("system", type_=Boolean),
                    submitted_by=bindparam("submitted_by", type_=String),
                    submitted_at=bindparam("submitted_at", type_=Float),
                    parent_id=bindparam("parent_id", type_=Integer),
                    parent_task_id=bindparam("parent_task_id", type_=Integer),
                    call_mode=bindparam("call_mode", type_=String),
                    orphaned=False,
                    rerun_of=bindparam("rerun_of", type_=Integer),
                )
                .returning(job.c.id)
            ),
            keys.SUBMIT_RECIPE: Prepared(
                insert(job_recipe).values(
                    job_id=bindparam("job_id", type_=Integer),
                    recipe_json=bindparam("recipe_json", type_=String),
                )
            ),
            # One executemany for a job's tasks: a 20,000-task job spent most of its
            # submit in SQLAlchemy's per-row parameter handling before this was prepared.
            keys.SUBMIT_TASK: Prepared(
                insert(task).values(
                    job_id=bindparam("b_job_id", type_=Integer),
                    seq=bindparam("b_seq", type_=Integer),
                    name=bindparam("b_name", type_=String),
                    action=bindparam("b_action", type_=String),
                    params=bindparam("b_params", type_=String),
                    status=bindparam("b_status", type_=String),
                    attempt=1,
                    max_attempts=bindparam("b_max_attempts", type_=Integer),
                    progress_done=0,
                    message=bindparam("b_message", type_=String),
                    ended_at=bindparam("b_ended_at", type_=Float),
                )
            ),
            keys.SUBMIT_TASK_IDS: Prepared(
                select(task.c.id, task.c.name).where(
                    task.c.job_id == bindparam("b_job_id", type_=Integer)
                )
            ),
            keys.SUBMIT_TASKS_ESTIMATE: Prepared(TaskStatistics(estimate=True)),
            keys.SUBMIT_ANALYZE: Prepared(TaskStatistics(estimate=False)),
            keys.SUBMIT_DEP: Prepared(
                insert(taskdep).values(
                    task_id=bindparam("b_task_id", type_=Integer),
                    dep_id=bindparam("b_dep_id", type_=Integer),
                )
            ),
            **_bulk_jobs(),
            keys.BULK_EXIST: Prepared(select(job.c.id).where(in_list(job.c.id, "ids"))),
            # What a chunk of a bulk cancel checks again: the columns a refusal reads.
            keys.BULK_RECHECK: Prepared(
                select(job.c.id, job.c.status, job.c.system, job.c.submitted_by).where(
                    in_list(job.c.id, "ids")
                )
            ),
        }
    ),
    **LOG_READS,
}


def flow_sql(conn: Connection) -> PreparedSql:
    """The flows' statements on ``conn`` (its transaction)."""
    return PreparedSql(conn, STATEMENTS)


def statements() -> dict[str, ClauseElement]:
    """Every flow statement, by key, for rendering (``engine.sql.light``)."""
    return {key: p.stmt for key, p in STATEMENTS.items()}
