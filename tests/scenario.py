"""A deterministic database for the console's tests and screenshots, built WITHOUT an engine.

Every status comes from the engine's own transition functions (insert_job, claim,
apply_outcomes, control.cancel/abort/hold...), at fixed times, by fixed actors.
The console is then run with ``clock=lambda: NOW``.

Jobs (ids are fixed by the order below):
   1 nightly-import     Ended
   2 bulk-leads         Executing  (load 4,000/10,000 rows on batch-01)
   3 sandbox-refresh    Canceled   by bob, reason "wrong sandbox"
   4 stuck-export       Canceled   aborted by carol (cancel + abort in one step)
   5 approve-release    Executing  approval task waiting
   6 maintenance        Executing  system job
   7 held-report        Withhold
   8 failing-job        Error
   9 parent-flow        Executing  task "call" waits on child 10 (sync)
  10 child-report       Executing  child of 9 (sync), on batch-02
  11 child-cleanup      Ended      child of 9 (async)
  12 deadlocked-query   Canceling  task Aborting; enhanced abort: batch-02 Draining (stuck)
  13 stuck-canceling    Canceling  task Canceling on batch-01 (stuck: stuck_seconds is 30)
  14 quarterly-ledger-export  Waiting (a name of 23 characters: the 80-column list shows it whole)
"""

from __future__ import annotations

from pathlib import Path

from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import requests as request_flows
from engine.flows import settings as setting_flows
from engine.recipes import Recipe, TaskSpec, recipe_from_dict
from engine.runtime import tick as batch
from engine.runtime.tick import Outcome, Progress
from engine.store.db import Store
from engine.store.flow_statements import flow_sql

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NOW = T0 + 1800.0  # the console's fixed clock: 22:43:20 the same day
OWNER = "batchhost:4242:abc123"
SERVERS = {"batch-01": 6, "batch-02": 3}
DRAIN_SECONDS = 600
STUCK_SECONDS = 30

ALICE, BOB, CAROL = "alice", "bob", "carol"


def recipe(name: str, *tasks: dict, system: bool = False) -> Recipe:
    return recipe_from_dict({"name": name, "system": system, "task": list(tasks)}, origin="fixture")


def wait(name: str, seconds: float = 60, after: list[str] | None = None) -> dict:
    t = {"name": name, "action": "wait", "seconds": seconds}
    if after:
        t["after"] = after
    return t


class Builder:
    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.path = str(path)

    def task_ids(self, job_id: int) -> dict[str, int]:
        with self.store.read() as conn:
            return {
                n: i
                for i, n in conn.exec_driver_sql(
                    "SELECT id, name FROM task WHERE job_id=?", (job_id,)
                )
            }

    def submit(self, r: Recipe, at: float, actor: str = ALICE, **kw) -> int:
        with self.store.transaction() as sql:
            return flows.insert_job(sql, r, actor=actor, at=at, **kw)

    def beat(self, at: float) -> None:
        with self.store.write() as conn:
            batch.heartbeat(conn, list(SERVERS), OWNER, at=at)

    def start(self, server: str, at: float, expect: list[str]) -> None:
        """Start the Ready tasks (exactly the expected ones) on a server."""
        with self.store.write() as conn:
            claimed = batch.claim(conn, {server: 10}, at=at)
        names = sorted(c.name for c in claimed)
        assert names == sorted(expect), f"claimed {names}, expected {expect}"

    def progress(
        self,
        task_id: int,
        done: float,
        total: float | None,
        unit: str | None,
        message: str | None = None,
        output: str | None = None,
        child: int | None = None,
    ) -> None:
        with self.store.write() as conn:
            batch.write_progress(
                conn, [Progress(task_id, done, total, unit, message, output, child)]
            )

    def outcome(self, task_id: int, outcome: str, at: float, message: str | None = None) -> None:
        with self.store.write() as conn:
            batch.apply_outcomes(conn, [Outcome(task_id, outcome, message)], at=at)


def _log(b: Builder, job_id: int, task: str, data: list[tuple[str, str]], limit: int) -> None:
    """A task's log as its server process would have sent it (``engine.core.logs``)."""
    from engine.core.logs import LogBuffer
    from engine.store.log_store import LogItem, write_logs

    buf = LogBuffer(limit)
    for stream, line in data:
        buf.line(stream, line)
    chunks, cut = buf.take(final=True)
    tid = b.task_ids(job_id)[task]
    items = [LogItem(tid, job_id, 1, "", [c.seq, c.stream, c.lines, c.text]) for c in chunks]
    if cut is not None:
        items.append(LogItem(tid, job_id, 1, "", None, list(cut)))
    with b.store.write() as conn:
        write_logs(conn, items, at=T0)


def _logs(b: Builder) -> None:
    """1 extract: a long log, its middle dropped; 13 sync-files: a running rsync, with
    stderr, ANSI colour, a control character and a line too long for the screen."""
    _log(
        b,
        1,
        "extract",
        [("out", f"extracted batch {i:04d}: 500 rows") for i in range(1, 401)],
        1024,
    )
    lines = [("log", "started pid 31337"), ("out", "sending incremental file list")]
    lines += [("out", f"file-{i:03d}.dat") for i in range(1, 25)]
    lines.append(
        ("err", 'rsync: send_files failed to open "src/locked.dat": Permission denied (13)')
    )
    lines.append(("out", "\x1b[32mverified\x1b[0m 24 files, \x07 bell and all"))
    lines.append(("out", "src/" + "/".join(f"level-{i:02d}" for i in range(1, 16)) + "/deep.dat"))
    lines += [("out", f"file-{i:03d}.dat") for i in range(25, 31)]
    _log(b, 13, "sync-files", lines, 1024 * 1024)


def build(path: str | Path) -> str:
    """Write the scenario database at ``path``; returns its path as a string."""
    b = Builder(Path(path))
    with b.store.write() as conn:
        setting_flows.store(flow_sql(conn), "drain_seconds", str(DRAIN_SECONDS))
        # Jobs 12 (Aborting 100 s) and 13 (Canceling 50 s) are stuck at NOW.
        setting_flows.store(flow_sql(conn), "stuck_seconds", str(STUCK_SECONDS))
        batch.claim_leases(conn, SERVERS, OWNER, at=T0)
        for n, name in enumerate(SERVERS):  # each server's own process, on a fixed host
            batch.note_server_process(conn, name, OWNER, 4100 + n, "host-01")

    # 1 nightly-import: Ended
    j = b.submit(recipe("nightly-import", wait("extract"), wait("load", after=["extract"])), T0)
    t = b.task_ids(j)
    b.start("batch-01", T0 + 10, ["extract"])
    b.outcome(t["extract"], "ended", T0 + 70, "waited 60 s")
    b.start("batch-01", T0 + 75, ["load"])
    b.progress(t["load"], 60, 60, "s")
    b.outcome(t["load"], "ended", T0 + 300, "waited 60 s")

    # 2 bulk-leads: Executing, load 4,000/10,000 rows
    j = b.submit(
        recipe(
            "bulk-leads",
            wait("extract"),
            wait("load", after=["extract"]),
            wait("report", after=["load"]),
        ),
        T0 + 400,
    )
    t = b.task_ids(j)
    b.start("batch-01", T0 + 405, ["extract"])
    b.outcome(t["extract"], "ended", T0 + 895, "extracted 10,000 rows")
    b.start("batch-01", T0 + 900, ["load"])
    b.progress(t["load"], 4000, 10000, "rows", "imported 4,000 of 10,000 rows")

    # 3 sandbox-refresh: Canceled by bob, "wrong sandbox"
    j = b.submit(
        recipe("sandbox-refresh", wait("copy"), wait("verify", after=["copy"])), T0 + 500, actor=BOB
    )
    t = b.task_ids(j)
    b.start("batch-02", T0 + 505, ["copy"])
    b.progress(t["copy"], 120, 400, "tables")
    b.beat(T0 + 1199)
    flows.cancel(b.store.transaction, j, actor=BOB, words="wrong sandbox", at=T0 + 1200)
    b.outcome(t["copy"], "canceled", T0 + 1210, "copied 120 of 400 tables")

    # 4 stuck-export: canceled and aborted in one step by carol
    j = b.submit(
        recipe("stuck-export", {"name": "export", "action": "blocking_wait", "seconds": 3600}),
        T0 + 550,
    )
    t = b.task_ids(j)
    b.start("batch-01", T0 + 600, ["export"])
    b.progress(t["export"], 0, None, None, "blocking for 3600 s in a thread")
    b.beat(T0 + 1299)
    abort_flow.abort(b.store.transaction, j, actor=CAROL, at=T0 + 1300)
    b.outcome(t["export"], "aborted", T0 + 1302)

    # 5 approve-release: the approval task waits
    j = b.submit(
        recipe(
            "approve-release",
            wait("build"),
            {
                "name": "approve",
                "action": "approval",
                "after": ["build"],
                "prompt": "ship release 2.4?",
            },
        ),
        T0 + 700,
    )
    t = b.task_ids(j)
    b.start("batch-01", T0 + 705, ["build"])
    b.outcome(t["build"], "ended", T0 + 765, "waited 60 s")
    b.start("batch-01", T0 + 770, ["approve"])
    b.progress(t["approve"], 0, None, None, "waiting for approval: ship release 2.4?")

    # 6 maintenance: a system job
    j = b.submit(recipe("maintenance", wait("vacuum", 3600), system=True), T0 + 800, actor="root")
    b.start("batch-01", T0 + 805, ["vacuum"])

    # 7 held-report: Withhold
    j = b.submit(recipe("held-report", wait("render")), T0 + 850)
    request_flows.hold(b.store.transaction, j, actor=ALICE, at=T0 + 860)

    # 8 failing-job: Error
    j = b.submit(
        recipe(
            "failing-job",
            {"name": "connect", "action": "fail", "message": "connection refused"},
            wait("load", after=["connect"]),
        ),
        T0 + 950,
    )
    t = b.task_ids(j)
    b.start("batch-02", T0 + 955, ["connect"])
    b.outcome(t["connect"], "error", T0 + 956, "connection refused")

    # 9 parent-flow, with 10 child-report (sync, running) and 11 child-cleanup (async, ended)
    # call_job checks its recipe file exists: built directly, never run here.
    flow = Recipe(
        name="parent-flow",
        path=None,
        system=False,
        tasks=(
            TaskSpec(
                "call", "call_job", (), {"recipe": "/srv/recipes/report.toml", "mode": "sync"}
            ),
            TaskSpec("notify", "wait", ("call",), {"seconds": 5.0}),
        ),
    )
    parent = b.submit(flow, T0 + 1000)
    pt = b.task_ids(parent)
    b.start("batch-01", T0 + 1005, ["call"])
    child = b.submit(
        recipe("child-report", wait("render", 600)),
        T0 + 1006,
        parent_id=parent,
        parent_task_id=pt["call"],
        call_mode="sync",
    )
    b.progress(pt["call"], 0, None, None, f"waiting for job {child}", child=child)
    b.start("batch-02", T0 + 1010, ["render"])
    ct = b.task_ids(child)
    b.progress(ct["render"], 300, 600, "s")
    done = b.submit(
        recipe("child-cleanup", wait("purge", 30)),
        T0 + 1007,
        parent_id=parent,
        parent_task_id=pt["call"],
        call_mode="async",
    )
    b.start("batch-02", T0 + 1011, ["purge"])
    b.outcome(b.task_ids(done)["purge"], "ended", T0 + 1041, "waited 30 s")

    # 12 deadlocked-query: enhanced abort, batch-02 draining, task stuck Aborting
    j = b.submit(
        recipe("deadlocked-query", {"name": "query", "action": "blocking_wait", "seconds": 7200}),
        T0 + 1100,
    )
    b.start("batch-02", T0 + 1105, ["query"])
    b.beat(T0 + 1699)
    abort_flow.abort(b.store.transaction, j, actor=CAROL, enhanced=True, at=T0 + 1700)

    # 13 stuck-canceling: a Canceling task (for a plain abort)
    j = b.submit(
        recipe(
            "stuck-canceling",
            {"name": "sync-files", "action": "shell", "command": ["rsync", "-a", "src/", "dst/"]},
        ),
        T0 + 1200,
        actor=BOB,
    )
    t = b.task_ids(j)
    b.start("batch-01", T0 + 1210, ["sync-files"])
    b.progress(
        t["sync-files"],
        0,
        None,
        None,
        None,
        output="sending incremental file list\nfile-001.dat\nfile-002.dat\nfile-003.dat\n",
    )
    b.beat(T0 + 1749)
    flows.cancel(b.store.transaction, j, actor=BOB, at=T0 + 1750)

    # 14 quarterly-ledger-export: Waiting (no slot asked for it)
    b.submit(recipe("quarterly-ledger-export", wait("export")), T0 + 1790)

    _logs(b)
    b.beat(NOW - 1)  # the servers are live at the console's clock
    b.store.dispose()
    return str(path)


if __name__ == "__main__":
    import sys

    print(build(sys.argv[1] if len(sys.argv) > 1 else "scenario.db"))
