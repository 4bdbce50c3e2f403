"""What the reader, the flows and the console show of jobs, tasks, events, servers and the
engine: plain frozen dataclasses, built from rows by ``engine.reader`` and the flows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from engine.core.format import clock
from engine.core.statuses import JOB_TERMINAL

if TYPE_CHECKING:
    from engine.flows.stopping import StopsBy


@dataclass(frozen=True)
class JobView:
    id: int
    name: str
    status: str
    system: bool
    submitted_by: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    parent_id: int | None
    call_mode: str | None
    orphaned: bool
    cancel_reason: str | None
    canceled_by: str | None
    canceled_at: float | None
    aborted_by: str | None
    aborted_at: float | None
    error: str | None
    recipe_path: str | None
    rerun_of: int | None = None
    tasks_total: int = 0
    tasks_done: int = 0  # Ended
    tasks_didnt_run: int = 0
    tasks_running: int = 0  # Executing, Canceling or Aborting
    servers: tuple[str, ...] = ()
    # Seconds a task of the job has been Canceling or Aborting, once that is longer than
    # the setting stuck_seconds; None: not stuck.
    stuck_for: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in JOB_TERMINAL

    def duration(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or now) - self.started_at

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["servers"] = list(self.servers)
        return d


@dataclass(frozen=True)
class TaskView:
    id: int
    job_id: int
    seq: int
    name: str
    action: str
    status: str
    server: str | None
    attempt: int
    max_attempts: int
    progress_done: float
    progress_total: float | None
    progress_unit: str | None
    message: str | None
    error: str | None
    output: str | None
    approval: str | None
    approval_by: str | None
    child_job_id: int | None
    started_at: float | None
    ended_at: float | None
    # How a cancel will stop it (running tasks only; see engine.stopping).
    stops_by: StopsBy | None = None
    # A remote long action's job on its remote service (engine.actions.remote).
    remote_job: str | None = None

    def duration(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or now) - self.started_at

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventView:
    id: int
    at: float
    job_id: int | None
    task_id: int | None
    server: str | None
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServerView:
    name: str
    slots: int
    status: str
    drain_deadline: float | None
    restart_job_id: int | None
    lease_owner: str | None
    heartbeat_at: float | None
    in_use: int
    live: bool
    host: str | None = None  # where its server process runs
    pid: int | None = None  # the server process (task code runs there), while live
    note: str | None = None  # a lease taken over, and the like

    def lease_age(self, now: float) -> float | None:
        return None if self.heartbeat_at is None else max(0.0, now - self.heartbeat_at)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobDetail:
    job: JobView
    tasks: list[TaskView] = field(default_factory=list)
    children: list[JobView] = field(default_factory=list)
    events: list[EventView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = self.job.to_json()
        d["tasks"] = [t.to_json() for t in self.tasks]
        d["children"] = [c.id for c in self.children]
        d["events"] = [e.to_json() for e in self.events]
        return d


@dataclass(frozen=True)
class JobPage:
    rows: list[JobView]
    total: int
    offset: int


@dataclass(frozen=True)
class StoppingTask:
    """A task Canceling or Aborting, and since when."""

    job_id: int
    id: int
    name: str
    action: str
    status: str
    server: str | None
    since: float  # when it began winding down (entered Canceling, or Aborting)
    status_since: float  # when it entered its current status
    stops_by: StopsBy

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StuckJob:
    """A stuck job, with the banner the console shows and the key it names."""

    job: JobView
    stuck_for: float
    tasks: list[StoppingTask]  # its tasks winding down, longest first
    banner: str  # "Canceling for 12m 4s: task load has not reached a safe point. a: abort"
    next_step: str  # "abort", "enhanced_abort" or "restart" (enhanced abort is off)

    def to_json(self) -> dict[str, Any]:
        d = self.job.to_json()
        d["banner"] = self.banner
        d["next_step"] = self.next_step
        d["stopping_tasks"] = [t.to_json() for t in self.tasks]
        return d


@dataclass(frozen=True)
class EngineHealth:
    """Whether an engine serves this database, for the console's header."""

    state: str  # "serving", "gone" (a lease went stale: the engine died), "none"
    owner: str | None  # the engine ("host:pid:nonce") serving, or the one gone
    last_heartbeat: float | None
    servers: tuple[str, ...]  # the servers it serves (served)

    @property
    def gone_since(self) -> float | None:
        return self.last_heartbeat if self.state == "gone" else None

    def text(self, now: float | None = None) -> str:
        """ "attached", "engine gone since 12:04:31", "no engine"."""
        if self.state == "serving":
            return "attached"
        if self.state == "gone":
            return f"engine gone since {clock(self.last_heartbeat, now)}"
        return "no engine"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["servers"] = list(self.servers)
        return d
