"""The statements of ``engine.flows``, by key, built from the tables.

``flow_sql(conn)`` runs a flow on a SQLAlchemy connection; ``statements()`` is what
``engine.read_sql`` renders into SQL text for the light path, so both run the very
same text.
"""

from __future__ import annotations

from sqlalchemy import Connection, Integer, String, and_, bindparam, select
from sqlalchemy.sql import ClauseElement

from engine.dialect import one_of
from engine.prepared import Prepared, PreparedSql
from engine.tables import job, meta, task
from engine.writes import AT, JobMove, TaskMove, statement_keys
from engine.writes import STATEMENTS as WRITES

_OF_JOB = task.c.job_id == bindparam("job_id", type_=Integer)
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
            "setting": Prepared(
                select(meta.c.value).where(meta.c.key == bindparam("key", type_=String))
            ),
            "cancel.job": Prepared(
                select(job.c.id, job.c.status, job.c.system, job.c.submitted_by).where(
                    job.c.id == bindparam("job_id", type_=Integer)
                )
            ),
            "cancel.didnt_run": TaskMove(
                "didnt_run",
                and_(_OF_JOB, one_of(task.c.status, ["waiting", "ready"])),
                {"ended_at": AT},
            ),
            "cancel.canceling": TaskMove("canceling", and_(_OF_JOB, task.c.status == "executing")),
            "cancel.job_canceling": JobMove("canceling", _CANCEL_FIELDS),
            "cancel.job_canceled": JobMove("canceled", {**_CANCEL_FIELDS, "ended_at": AT}),
        }
    ),
}


def flow_sql(conn: Connection) -> PreparedSql:
    """The flows' statements on ``conn`` (its transaction)."""
    return PreparedSql(conn, STATEMENTS)


def statements() -> dict[str, ClauseElement]:
    """Every flow statement, by key, for rendering (``engine.read_sql``)."""
    return {key: p.stmt for key, p in STATEMENTS.items()}
