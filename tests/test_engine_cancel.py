"""SPEC "Cancel": every rule, against a real engine on a real SQLite file."""

from __future__ import annotations

import pytest

from engine.core.refusal import Refusal
from engine.flows import base as flows
from engine.flows import requests as request_flows
from tests.engine_support import (
    events,
    job_row,
    job_status,
    reading,
    sql,
    submit_tasks,
    task_row,
    task_statuses,
    until,
)

# The engine on both databases (tests/pg_support.py).
BACKENDS = ("sqlite", "postgresql")


async def test_not_started_tasks_become_didnt_run_and_wait_is_canceled_at_once(engine, tmp_path):
    store = engine.store
    job = submit_tasks(
        store,
        tmp_path,
        "chain",
        [
            {"name": "long", "action": "wait", "seconds": 600},
            {"name": "next", "action": "wait", "seconds": 1, "after": ["long"]},
            {"name": "last", "action": "wait", "seconds": 1, "after": ["next"]},
        ],
    )
    await until(lambda: task_statuses(store, job)["long"] == "executing", "long starts")

    result = flows.cancel(store.transaction, job, actor="alice", words="wrong sandbox")

    assert result == f"Job {job} Canceling"
    st = task_statuses(store, job)
    assert st["next"] == "didnt_run" and st["last"] == "didnt_run"
    assert st["long"] == "canceling"
    # wait is a long action: it stops at once, and the job finishes canceling.
    await until(lambda: job_status(store, job) == "canceled", "job canceled")
    long = task_row(store, job, "long")
    assert long["status"] == "canceled"
    assert "waited" in long["message"]
    row = job_row(store, job)
    assert row["canceled_by"] == "alice"
    assert row["cancel_reason"] == "Job canceled by alice: wrong sandbox"
    assert row["canceled_at"] is not None


async def test_started_non_long_task_finishes_ended_while_job_canceling(engine, tmp_path):
    store = engine.store
    marker = tmp_path / "go"
    job = submit_tasks(
        store,
        tmp_path,
        "finishing",
        [
            # `finish`: the command runs to its end even when canceled; it waits for a file.
            {
                "name": "work",
                "action": "shell",
                "on_cancel": "finish",
                "command": ["sh", "-c", f"while [ ! -e {marker} ]; do sleep 0.05; done; echo done"],
            },
            {"name": "after", "action": "wait", "seconds": 1, "after": ["work"]},
        ],
    )
    await until(lambda: task_statuses(store, job)["work"] == "executing", "work starts")

    flows.cancel(store.transaction, job, actor="alice")
    await until(lambda: engine.stats.ticks > 0 and job_status(store, job) == "canceling")
    assert task_statuses(store, job) == {"work": "canceling", "after": "didnt_run"}
    # Still canceling while the task runs on.
    assert job_status(store, job) == "canceling"

    marker.touch()
    await until(lambda: job_status(store, job) == "canceled", "job canceled")
    assert task_statuses(store, job) == {"work": "ended", "after": "didnt_run"}
    assert task_row(store, job, "work")["message"] == "done"
    assert job_row(store, job)["cancel_reason"] == "Job canceled by alice"


async def test_job_that_started_nothing_goes_straight_to_canceled(tmp_path):
    from engine.store.db import Store

    store = Store(tmp_path / "t.db")
    job = submit_tasks(store, tmp_path, "queued", [{"name": "a", "action": "wait", "seconds": 1}])
    flows.cancel(store.transaction, job, actor="bob")
    assert job_status(store, job) == "canceled"
    assert task_statuses(store, job) == {"a": "didnt_run"}
    moves = [(e["from_status"], e["to_status"]) for e in events(store, job) if e["to_status"]]
    assert ("waiting", "canceled") in moves and ("ready", "didnt_run") in moves


async def test_held_job_is_not_started_until_released(tmp_path):
    from engine.runtime.supervisor import Supervisor
    from engine.store.db import Store

    store = Store(tmp_path / "t.db")
    # Held before any engine runs, so no engine can start it first.
    job = submit_tasks(store, tmp_path, "held", [{"name": "a", "action": "wait", "seconds": 0}])
    request_flows.hold(store.transaction, job, actor="bob")
    async with Supervisor(str(tmp_path / "t.db"), poll_interval=0.02):
        other = submit_tasks(
            store, tmp_path, "other", [{"name": "a", "action": "wait", "seconds": 0}]
        )
        await until(lambda: job_status(store, other) == "ended", "other job ends")
        assert job_status(store, job) == "withhold"
        request_flows.release(store.transaction, job, actor="bob")
        await until(lambda: job_status(store, job) == "ended", "released job runs")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("system", "System jobs cannot be canceled"),
        ("ended", "already Ended"),
        ("canceling", "already Canceling: nothing to do"),
        ("missing", "does not exist"),
    ],
)
async def test_cancel_refusals_change_nothing(engine, tmp_path, setup, message):
    store = engine.store
    tasks = [{"name": "a", "action": "wait", "seconds": 0 if setup == "ended" else 600}]
    job = submit_tasks(store, tmp_path, "j", tasks, system=(setup == "system"))
    if setup == "ended":
        await until(lambda: job_status(store, job) == "ended")
    if setup == "canceling":
        job2 = submit_tasks(
            store,
            tmp_path,
            "slow",
            [{"name": "s", "action": "shell", "on_cancel": "finish", "command": ["sleep", "600"]}],
        )
        await until(lambda: task_statuses(store, job2)["s"] == "executing")
        flows.cancel(store.transaction, job2, actor="x")
        job = job2
    if setup in ("system", "missing"):
        # Settled before the snapshot: the engine is not to change it in between.
        await until(lambda: task_statuses(store, job)["a"] == "executing")
    target = 9999 if setup == "missing" else job
    before = (job_row(store, job), task_statuses(store, job), len(events(store, job)))

    with pytest.raises(Refusal, match=message):
        flows.cancel(store.transaction, target, actor="mallory")

    assert (job_row(store, job), task_statuses(store, job), len(events(store, job))) == before


async def test_children_are_not_canceled_with_the_parent(engine, tmp_path):
    store = engine.store
    from tests.engine_support import write_recipe

    child = write_recipe(tmp_path, "child", [{"name": "c", "action": "wait", "seconds": 600}])
    parent = submit_tasks(
        store,
        tmp_path,
        "parent",
        [
            {"name": "call-sync", "action": "call_job", "recipe": str(child), "mode": "sync"},
            {"name": "call-async", "action": "call_job", "recipe": str(child), "mode": "async"},
        ],
    )

    def children() -> list[int]:
        with store.read() as conn:
            return [
                r[0]
                for r in sql(conn, "SELECT id FROM job WHERE parent_id=? ORDER BY id", (parent,))
            ]

    await until(lambda: len(children()) == 2, "both children start")
    kids = children()
    await until(lambda: all(job_status(store, k) == "executing" for k in kids))
    await until(lambda: task_statuses(store, parent)["call-async"] == "ended")

    flows.cancel(store.transaction, parent, actor="alice")
    await until(lambda: task_statuses(store, parent)["call-sync"] == "canceling")
    # The sync caller waits for its child; neither child is canceled.
    assert job_status(store, parent) == "canceling"
    assert all(job_status(store, k) == "executing" for k in kids)

    # Cancel the tree: the children go too, and then the parent finishes canceling.
    preview = reading(store, flows.cancel_dry_run, parent, tree=True)
    assert [j.id for j, _ in preview] == [parent, *kids]
    assert str(preview[0][1]) == f"Job {parent} is already Canceling: nothing to do"
    text = flows.cancel_tree(store.transaction, parent, actor="alice")
    assert "Canceled 2 jobs" in text and f"job {parent}" in text
    await until(lambda: all(job_status(store, k) == "canceled" for k in kids))
    await until(lambda: job_status(store, parent) == "canceled")
    # The sync call ended with its child's status: the child was canceled.
    assert task_row(store, parent, "call-sync")["status"] == "error"


async def test_events_record_who_with_ssh_address(tmp_path, monkeypatch):
    from engine.core.identity import current_actor
    from engine.store.db import Store

    monkeypatch.setenv("SSH_CONNECTION", "10.1.2.3 50000 10.0.0.1 22")
    actor = current_actor()
    assert actor.endswith(" from 10.1.2.3")
    store = Store(tmp_path / "t.db")
    job = submit_tasks(store, tmp_path, "q", [{"name": "a", "action": "wait", "seconds": 1}])
    flows.cancel(store.transaction, job, actor=actor, words="because")
    evs = events(store, job)
    assert {e["actor"] for e in evs if e["to_status"]} == {actor}
    assert all(
        e["reason"].startswith(f"Job canceled by {actor}: because") for e in evs if e["to_status"]
    )


async def test_a_retried_sync_call_waits_for_the_child_it_started(tmp_path):
    from engine.runtime.supervisor import Supervisor
    from engine.store.db import Store
    from tests.engine_support import write_recipe

    path = str(tmp_path / "t.db")
    store = Store(path)
    child = write_recipe(tmp_path, "child", [{"name": "c", "action": "wait", "seconds": 600}])
    parent = submit_tasks(
        store,
        tmp_path,
        "parent",
        [{"name": "call", "action": "call_job", "recipe": str(child), "mode": "sync"}],
    )

    def children() -> list[int]:
        with store.read() as conn:
            return [r[0] for r in sql(conn, "SELECT id FROM job WHERE parent_id=?", (parent,))]

    async with Supervisor(path, {"batch-01": 4}, poll_interval=0.02):
        await until(
            lambda: len(children()) == 1 and job_status(store, children()[0]) == "executing",
            "child runs",
        )
    # The engine stopped: the call went back to Ready. The next run resumes the same child.
    assert task_row(store, parent, "call")["status"] == "ready"
    async with Supervisor(path, {"batch-01": 4}, poll_interval=0.02):
        await until(
            lambda: (
                task_row(store, parent, "call")["attempt"] == 2
                and task_row(store, parent, "call")["status"] == "executing"
            )
        )
        kid = children()[0]
        await until(lambda: task_row(store, parent, "call")["message"] == f"waiting for job {kid}")
        assert children() == [kid]
        flows.cancel(store.transaction, children()[0], actor="alice")
        await until(lambda: job_status(store, parent) == "error")
    assert task_row(store, parent, "call")["error"] == f"child job {children()[0]} canceled"


async def test_a_recipe_that_ends_up_calling_itself_is_stopped(engine, tmp_path):
    from engine.runtime.runs import MAX_CALL_DEPTH
    from tests.engine_support import write_recipe

    store = engine.store
    b = write_recipe(tmp_path, "b", [{"name": "w", "action": "wait", "seconds": 0}])
    a = submit_tasks(
        store,
        tmp_path,
        "a",
        [{"name": "call", "action": "call_job", "recipe": str(b), "mode": "async"}],
    )
    # After a was checked, b is changed to call a: a loop only the run can see.
    write_recipe(
        tmp_path,
        "b",
        [
            {
                "name": "again",
                "action": "call_job",
                "recipe": str(tmp_path / "a.toml"),
                "mode": "async",
            }
        ],
    )
    # Caught when the engine loads the changed b (a cycle), or else by the call depth limit.
    await until(lambda: job_status(store, a) in ("ended", "error"))

    def jobs() -> list[tuple[int, str]]:
        with store.read() as conn:
            return conn.exec_driver_sql("SELECT id, status FROM job").fetchall()

    await until(lambda: all(s in ("ended", "error") for _, s in jobs()), "every job settles")
    assert len(jobs()) <= MAX_CALL_DEPTH + 1
    assert any(s == "error" for _, s in jobs())
