"""The read statements of task logs (``engine.store.log_store``), by key, built from the
tables. Among the flows' statements (``engine.store.flow_statements``), so that the command
line renders them once into SQL text and runs them through ``sqlite3`` without
SQLAlchemy (``engine.sql.light``), and the console runs the very same statements."""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, select

from engine.sql import keys
from engine.store.dialect import in_list
from engine.store.prepared import Prepared
from engine.store.tables import job, task, task_log


def _int(name: str) -> object:
    return bindparam(name, type_=Integer)


# What a viewer needs to place a chunk, without its text (``log_store.ChunkRef``).
_REF = select(
    task_log.c.id,
    task_log.c.task_id,
    task_log.c.attempt,
    task_log.c.seq,
    task_log.c.stream,
    task_log.c.lines,
)
_RUN = (task_log.c.task_id == _int("task_id"), task_log.c.attempt == _int("attempt"))

LOG_READS: dict[str, Prepared] = {
    keys.LOGS_JOB_STATUS: Prepared(select(job.c.status).where(job.c.id == _int("job_id"))),
    keys.LOGS_TASKS: Prepared(
        select(task.c.id, task.c.name, task.c.status, task.c.attempt).where(
            task.c.job_id == _int("job_id")
        )
    ),
    keys.LOGS_ATTEMPTS: Prepared(
        select(task_log.c.attempt)
        .where(task_log.c.task_id == _int("task_id"))
        .group_by(task_log.c.attempt)
        .order_by(task_log.c.attempt)
    ),
    keys.LOGS_RUN: Prepared(
        _REF.where(*_RUN, task_log.c.seq > _int("after")).order_by(task_log.c.seq)
    ),
    keys.LOGS_RUN_BACK: Prepared(
        _REF.where(*_RUN, task_log.c.seq < _int("before"))
        .order_by(task_log.c.seq.desc())
        .limit(_int("n"))
    ),
    keys.LOGS_JOB: Prepared(
        _REF.where(task_log.c.job_id == _int("job_id"), task_log.c.id > _int("after")).order_by(
            task_log.c.id
        )
    ),
    keys.LOGS_JOB_ATTEMPT: Prepared(
        _REF.where(
            task_log.c.job_id == _int("job_id"),
            task_log.c.id > _int("after"),
            task_log.c.attempt == _int("attempt"),
        ).order_by(task_log.c.id)
    ),
    keys.LOGS_TEXTS: Prepared(
        select(task_log.c.id, task_log.c.text).where(in_list(task_log.c.id, "ids"))
    ),
}
