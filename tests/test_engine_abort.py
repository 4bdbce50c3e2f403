"""SPEC "Abort" and "Enhanced abort", against a real engine on a real SQLite file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.core.refusal import Refusal
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import settings as setting_flows
from engine.runtime.supervisor import Supervisor
from engine.store.db import Store
from tests.engine_support import (
    events,
    job_row,
    job_status,
    reading,
    submit_tasks,
    task_row,
    task_statuses,
    until,
)

# The engine on both databases (tests/pg_support.py).
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def servers() -> dict[str, int]:
    return {"batch-01": 4, "batch-02": 2}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is dead if /proc says so.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"


async def test_abort_kills_shell_process_group(engine, tmp_path):
    store = engine.store
    job = submit_tasks(
        store,
        tmp_path,
        "stubborn",
        [
            {
                "name": "sh",
                "action": "shell",
                "on_cancel": "finish",
                "command": [
                    "sh",
                    "-c",
                    "sleep 300 & echo $! > child.pid; echo $$ > parent.pid; wait",
                ],
            },
        ],
    )
    await until(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "parent.pid").exists())
    await until(lambda: (tmp_path / "child.pid").read_text().strip() != "")
    pids = [int((tmp_path / f).read_text()) for f in ("child.pid", "parent.pid")]

    flows.cancel(store.transaction, job, actor="alice")
    await until(lambda: task_statuses(store, job)["sh"] == "canceling")
    assert not any(_gone(p) for p in pids)  # "finish": cancel lets it run

    plan = reading(store, abort_flow.preview, job)
    assert [t.name for t in plan.tasks] == ["sh"] and plan.tasks[0].server == "batch-01"
    assert not plan.cancel_first

    abort_flow.abort(store.transaction, job, actor="alice")
    await until(lambda: all(_gone(p) for p in pids), "process group killed")
    await until(lambda: job_status(store, job) == "canceled")
    assert task_statuses(store, job) == {"sh": "aborted"}
    row = job_row(store, job)
    assert row["aborted_by"] == "alice" and row["aborted_at"] is not None
    moves = [(e["from_status"], e["to_status"]) for e in events(store, job) if e["task_id"]]
    assert ("canceling", "aborting") in moves and ("aborting", "aborted") in moves


async def test_blocking_wait_shows_aborting_until_the_block_returns(engine, tmp_path):
    store = engine.store
    release = tmp_path / "release"
    job = submit_tasks(
        store,
        tmp_path,
        "stuck",
        [
            {
                "name": "block",
                "action": "python",
                "function": "tests.blocking_fn:block_until",
                "path": str(release),
            },
            {"name": "next", "action": "wait", "seconds": 0, "after": ["block"]},
        ],
    )
    await until(lambda: task_statuses(store, job)["block"] == "executing")
    await until(lambda: (tmp_path / "release.started").exists(), "in the unmanaged wait")

    # On an Executing job, abort cancels and aborts in one step.
    plan = reading(store, abort_flow.preview, job)
    assert plan.cancel_first and [t.name for t in plan.tasks] == ["block"]
    text = abort_flow.abort(store.transaction, job, actor="alice")
    assert text.startswith(f"Canceled and aborting job {job}")
    assert task_statuses(store, job) == {"block": "aborting", "next": "didnt_run"}
    # The engine has seen the abort (several ticks later) but the thread still blocks.
    seen = engine.stats.ticks
    await until(lambda: engine.stats.ticks > seen + 5)
    assert task_statuses(store, job)["block"] == "aborting"
    assert job_status(store, job) == "canceling"

    release.touch()
    await until(lambda: task_statuses(store, job)["block"] == "aborted", "aborted after return")
    assert job_status(store, job) == "canceled"
    # Its result was discarded: nothing after the wait ran.
    assert not (tmp_path / "release.after").exists()
    # A second plain abort is refused: nothing left to abort.
    with pytest.raises(Refusal, match="already Canceled"):
        abort_flow.abort(store.transaction, job, actor="alice")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("system", "System jobs cannot be aborted"),
        ("waiting", "nothing is running to abort"),
        ("ended", "already Ended"),
    ],
)
async def test_abort_refusals(tmp_path, kind, message):
    store = Store(tmp_path / "t.db")
    job = submit_tasks(
        store,
        tmp_path,
        "j",
        [{"name": "a", "action": "wait", "seconds": 0}],
        system=(kind == "system"),
    )
    if kind == "ended":
        async with Supervisor(str(tmp_path / "t.db")) as _:
            await until(lambda: job_status(store, job) == "ended")
    if kind == "system":
        async with Supervisor(str(tmp_path / "t.db")) as _:
            # Still refused while it runs.
            with pytest.raises(Refusal, match=message):
                abort_flow.abort(store.transaction, job, actor="x")
        return
    before = (job_row(store, job), task_statuses(store, job))
    with pytest.raises(Refusal, match=message):
        reading(store, abort_flow.preview, job)
    with pytest.raises(Refusal, match=message):
        abort_flow.abort(store.transaction, job, actor="x")
    assert (job_row(store, job), task_statuses(store, job)) == before


async def test_enhanced_abort_lists_disrupted_jobs_and_requeues_their_tasks(engine, tmp_path):
    store = engine.store
    with store.transaction() as sql:
        setting_flows.store(sql, "drain_seconds", "60")
    release = tmp_path / "release"
    # Fill batch-01 (4 slots) first with the stuck job and a victim, both long.
    stuck = submit_tasks(
        store,
        tmp_path,
        "stuck",
        [
            {
                "name": "block",
                "action": "python",
                "function": "tests.blocking_fn:block_until",
                "path": str(release),
            }
        ],
    )
    victim = submit_tasks(
        store, tmp_path, "victim", [{"name": "v", "action": "wait", "seconds": 600}]
    )
    await until(lambda: task_statuses(store, victim)["v"] == "executing")
    await until(lambda: (tmp_path / "release.started").exists())
    server = task_row(store, stuck, "block")["server"]
    assert task_row(store, victim, "v")["server"] == server == "batch-01"

    abort_flow.abort(
        store.transaction, stuck, actor="alice"
    )  # plain: stays Aborting (unmanaged wait)
    await until(lambda: engine.stats.ticks > 3)
    assert task_statuses(store, stuck)["block"] == "aborting"
    with pytest.raises(Refusal, match="only an enhanced abort"):
        abort_flow.abort(store.transaction, stuck, actor="alice")

    plan = reading(store, abort_flow.preview, stuck, enhanced=True)
    assert plan.servers == ["batch-01"]
    assert [(d.id, d.tasks) for d in plan.disrupted] == [(victim, ("v",))]
    assert plan.drain_seconds == 60

    text = abort_flow.abort(store.transaction, stuck, actor="alice", enhanced=True)
    assert "restarting batch-01" in text
    # The victim's task is executing, so the server drains; shorten the period to see
    # the restart (a new enhanced abort is the operator's way; here we move the deadline).
    with store.read() as conn:
        status, deadline = conn.exec_driver_sql(
            "SELECT status, drain_deadline FROM server WHERE name='batch-01'"
        ).one()
    assert status == "draining" and deadline is not None
    # Draining: no new task is picked up on batch-01.
    late = submit_tasks(store, tmp_path, "late", [{"name": "l", "action": "wait", "seconds": 0}])
    await until(lambda: job_status(store, late) == "ended")
    assert task_row(store, late, "l")["server"] == "batch-02"
    with store.write() as conn:
        conn.exec_driver_sql("UPDATE server SET drain_deadline=0 WHERE name='batch-01'")

    await until(lambda: task_statuses(store, stuck)["block"] == "aborted", "stuck task aborted")
    await until(lambda: task_row(store, victim, "v")["attempt"] == 2, "victim requeued")
    await until(lambda: task_statuses(store, victim)["v"] == "executing", "victim runs again")
    assert job_status(store, stuck) == "canceled"
    reasons = [e["reason"] for e in events(store, victim)]
    assert "interrupted by server restart" in reasons
    with store.read() as conn:
        assert (
            conn.exec_driver_sql("SELECT status FROM server WHERE name='batch-01'").scalar_one()
            == "online"
        )
        server_events = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT reason FROM event WHERE kind='server' AND server='batch-01' ORDER BY id"
            )
        ]
    assert any(r.startswith("draining") for r in server_events)
    assert any(r.startswith("restarting") for r in server_events)
    assert server_events[-1] == "restarted: online"
    release.touch()


async def test_enhanced_abort_restarts_at_once_when_nothing_else_runs(engine, tmp_path):
    store = engine.store
    release = tmp_path / "release"
    stuck = submit_tasks(
        store,
        tmp_path,
        "stuck",
        [
            {
                "name": "block",
                "action": "python",
                "function": "tests.blocking_fn:block_until",
                "path": str(release),
            }
        ],
    )
    await until(lambda: (tmp_path / "release.started").exists())
    plan = reading(store, abort_flow.preview, stuck, enhanced=True)
    assert plan.cancel_first and plan.disrupted == []
    abort_flow.abort(store.transaction, stuck, actor="alice", enhanced=True)
    await until(lambda: job_status(store, stuck) == "canceled", "restart frees the stuck task")
    assert task_statuses(store, stuck) == {"block": "aborted"}
    release.touch()


async def test_enhanced_abort_can_be_turned_off(tmp_path):
    store = Store(tmp_path / "t.db")
    with store.transaction() as sql:
        setting_flows.store(sql, "enhanced_abort", "off")
    job = submit_tasks(store, tmp_path, "j", [{"name": "a", "action": "wait", "seconds": 60}])
    async with Supervisor(str(tmp_path / "t.db")):
        await until(lambda: task_statuses(store, job)["a"] == "executing")
        with pytest.raises(Refusal, match="Enhanced abort is turned off"):
            abort_flow.abort(store.transaction, job, actor="x", enhanced=True)
        assert job_status(store, job) == "executing"
        abort_flow.abort(store.transaction, job, actor="x")  # plain abort still works
        await until(lambda: job_status(store, job) == "canceled")
    assert task_statuses(store, job) == {"a": "aborted"}


async def test_aborting_a_sync_caller_orphans_the_child(engine, tmp_path):
    from tests.engine_support import write_recipe

    store = engine.store
    child = write_recipe(tmp_path, "child", [{"name": "c", "action": "wait", "seconds": 600}])
    parent = submit_tasks(
        store,
        tmp_path,
        "parent",
        [{"name": "call", "action": "call_job", "recipe": str(child), "mode": "sync"}],
    )

    def child_id() -> int | None:
        return task_row(store, parent, "call")["child_job_id"]

    await until(lambda: child_id() is not None and job_status(store, child_id()) == "executing")
    abort_flow.abort(store.transaction, parent, actor="alice")
    await until(lambda: job_status(store, parent) == "canceled")
    assert task_statuses(store, parent) == {"call": "aborted"}
    kid = job_row(store, child_id())
    assert kid["status"] == "executing" and kid["orphaned"] == 1


async def test_abort_refuses_when_the_plan_grew_since_it_was_confirmed(engine, tmp_path):
    store = engine.store
    stuck = submit_tasks(
        store, tmp_path, "stuck", [{"name": "s", "action": "wait", "seconds": 600}]
    )
    await until(lambda: task_statuses(store, stuck)["s"] == "executing")
    flows.cancel(store.transaction, stuck, actor="alice")
    # "wait" stops at its next safe point: until it is Canceled it still runs on batch-01,
    # and the plans below would list it as a disrupted job.
    await until(lambda: task_statuses(store, stuck)["s"] == "canceled", "the wait canceled")
    # A shell that finishes on cancel keeps one task Canceling.
    job = submit_tasks(
        store,
        tmp_path,
        "j",
        [{"name": "sh", "action": "shell", "on_cancel": "finish", "command": ["sleep", "600"]}],
    )
    await until(lambda: task_statuses(store, job)["sh"] == "executing")
    flows.cancel(store.transaction, job, actor="alice")
    await until(lambda: task_statuses(store, job)["sh"] == "canceling")
    seen = reading(store, abort_flow.preview, job, enhanced=True)
    assert seen.disrupted == []
    # While the operator reads the modal, another job starts on the same server.
    late = submit_tasks(store, tmp_path, "late", [{"name": "l", "action": "wait", "seconds": 600}])
    await until(lambda: task_statuses(store, late)["l"] == "executing")
    before = (job_row(store, job), task_statuses(store, job))
    with pytest.raises(Refusal, match=f"changed since you confirmed.*job {late} late"):
        abort_flow.abort(store.transaction, job, actor="alice", enhanced=True, confirmed=seen)
    assert (job_row(store, job), task_statuses(store, job)) == before
    # Confirmed against the current plan, it goes ahead.
    plan = reading(store, abort_flow.preview, job, enhanced=True)
    abort_flow.abort(store.transaction, job, actor="alice", enhanced=True, confirmed=plan)
    await until(lambda: task_statuses(store, job)["sh"] == "aborted", "the shell aborted")
