"""The tables. Times are UNIX seconds (float) so that bulk SQL can compare them cheaply."""

from __future__ import annotations

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

# The schema's versions and what each changed: docs/architecture.md, "Schema versions".
SCHEMA_VERSION = 8

# The tasks a server has had: only those are in its index. A query on the server (=, IN)
# implies it, so SQLite and PostgreSQL both use the index as before.
ON_A_SERVER = "server IS NOT NULL"

# The statuses the partial status indexes hold. SQLite uses a partial index only for a
# query whose WHERE names its predicate term for term, with the values written in:
# ``engine.store.dialect.equals_any`` writes these terms from the same tuples.
# Equalities joined by OR, never IN: SQLite evaluates an IN (...) predicate on every row
# an UPDATE touches (+9-19 ms on a cancel's 10,000), an OR of equalities costs nothing.
READY_STATUSES = ("ready",)
STOPPING_STATUSES = ("canceling", "aborting")


def status_is_any(statuses: tuple[str, ...], column: str = "status") -> str:
    return " OR ".join(f"{column} = '{s}'" for s in statuses)


def _partial(name: str, columns: tuple[str, ...], where: str, only_on: str = "") -> Index:
    """An index of the rows matching ``where``, on SQLite and PostgreSQL alike, or only
    on the dialect ``only_on`` names."""
    index = Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))
    return index.ddl_if(dialect=only_on) if only_on else index


class Meta(SQLModel, table=True):
    key: str = Field(primary_key=True)
    value: str


class Job(SQLModel, table=True):
    __table_args__ = (
        Index("ix_job_status_id", "status", "id"),
        Index("ix_job_started", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    recipe_path: str | None = None
    status: str = "waiting"
    system: bool = False
    submitted_by: str = ""
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    parent_id: int | None = Field(default=None, foreign_key="job.id", index=True)
    parent_task_id: int | None = None
    call_mode: str | None = None
    orphaned: bool = False
    canceled_by: str | None = None
    canceled_at: float | None = None
    cancel_reason: str | None = None
    aborted_by: str | None = None
    aborted_at: float | None = None
    error: str | None = None
    rerun_of: int | None = Field(default=None, index=True)


class JobRecipe(SQLModel, table=True):
    """The parsed recipe as it was at submit (JSON): a rerun runs this, not today's file.
    Its own table: written once, read by a rerun, never rewritten with the job's row."""

    __tablename__ = "job_recipe"

    job_id: int = Field(primary_key=True, foreign_key="job.id")
    recipe_json: str


class Task(SQLModel, table=True):
    __table_args__ = (
        Index("ix_task_job_status", "job_id", "status"),
        # Ready tasks in id order, for claims. SQLite's planner, with no statistics, takes
        # a partial index for the claim only when its first column is the status the
        # claim names. PostgreSQL's statistics lag a running job: believing its tasks
        # still Ready, it walked the primary key through every task already ended, unless
        # an index of the Ready ones by id alone is there to give the same order cheaper.
        _partial("ix_task_ready", ("status", "id"), status_is_any(READY_STATUSES), "sqlite"),
        _partial("ix_task_ready_by_id", ("id",), status_is_any(READY_STATUSES), "postgresql"),
        _partial("ix_task_stopping", ("status", "id"), status_is_any(STOPPING_STATUSES)),
        _partial("ix_task_on_server", ("server", "status"), ON_A_SERVER),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id")
    seq: int = 0
    name: str
    action: str
    params: str = "{}"  # JSON
    status: str = "waiting"
    server: str | None = None
    attempt: int = 1
    max_attempts: int = 3
    progress_done: float = 0
    progress_total: float | None = None
    progress_unit: str | None = None
    message: str | None = None
    error: str | None = None
    output: str | None = None  # tail of a shell command's output
    approval: str | None = None  # "approved" / "rejected", written by the operator
    approval_by: str | None = None
    child_job_id: int | None = None
    # A remote long action's job on its remote service (an id, never a credential).
    remote_job: str | None = None
    # The claim that started the current run: every write about the run must name it,
    # so an engine that lost its lease can change nothing another engine took over.
    claim_token: str | None = None
    started_at: float | None = None
    ended_at: float | None = None


class TaskDep(SQLModel, table=True):
    __table_args__ = (Index("ix_taskdep_dep", "dep_id"),)

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    dep_id: int = Field(foreign_key="task.id", primary_key=True)


class Server(SQLModel, table=True):
    name: str = Field(primary_key=True)
    slots: int = 4
    status: str = "offline"  # online, draining, restarting, offline
    drain_deadline: float | None = None
    restart_job_id: int | None = None  # the job whose enhanced abort asked for the restart
    lease_owner: str | None = None  # "host:pid:nonce" of the engine serving it
    heartbeat_at: float | None = None
    host: str | None = None  # where its process runs
    pid: int | None = None  # its process, on that host
    note: str | None = None  # the last thing an operator should know (a lost lease)


# The events that put a task into Canceling or Aborting: "since when" a stuck job has
# been winding down. Partial, so the many other status events never touch it.
STOPPING_EVENT = "to_status IN (" + ", ".join(f"'{s}'" for s in STOPPING_STATUSES) + ")"


class Event(SQLModel, table=True):
    __table_args__ = (
        Index("ix_event_job", "job_id", "id"),
        _partial("ix_event_stopping", ("task_id", "at"), STOPPING_EVENT),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: float
    job_id: int | None = None
    task_id: int | None = None
    server: str | None = None
    kind: str = "status"  # status, request, approval, server, note
    from_status: str | None = None
    to_status: str | None = None
    actor: str = ""
    reason: str | None = None


class TaskLog(SQLModel, table=True):
    """A chunk of a task's log: consecutive lines of one stream of one attempt.

    ``stream``: ``out`` / ``err`` (a command's stdout and stderr), ``log`` (``ctx.log``),
    ``cut`` (the line saying how much was dropped between the first and last parts,
    ``engine.core.logs.LogBuffer``). ``seq`` orders the chunks of one attempt; ``id`` orders
    the chunks of a whole job as they were written. No foreign keys: a chunk is
    written in its own batch, and prune deletes a job's chunks with the job."""

    __tablename__ = "task_log"
    __table_args__ = (
        Index("ix_task_log_run", "task_id", "attempt", "seq", unique=True),
        Index("ix_task_log_job", "job_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int
    task_id: int
    attempt: int
    seq: int
    stream: str
    lines: int  # how many lines ``text`` holds (its newlines + 1)
    at: float
    text: str
