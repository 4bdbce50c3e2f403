"""A bulk cancel goes in chunks of jobs, a transaction each, on both databases: every
job moved with its event rows, each refused with its reason, the rule's refusals
audited once."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.flows import base as flows
from engine.flows import bulk as bulk_flow
from engine.flows import settings as setting_flows
from engine.runtime import tick as batch
from engine.store.db import Store
from tests.engine_support import (
    events,
    job_row,
    job_status,
    reading,
    sql,
    submit_tasks,
    task_statuses,
)

BACKENDS = ("sqlite", "postgresql")
WAIT = [{"name": "sleep", "action": "wait", "seconds": 60}]


@pytest.fixture
def store(db: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bulk_flow, "CHUNK_JOBS", 3)
    s = Store(db)
    yield s
    s.dispose()


def _start(store: Store, job_id: int) -> None:
    """The job's task Executing on batch-01, as a claim makes it (no engine runs)."""
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 4}, "test:1:x", at=1.0)
        sql(
            conn, "UPDATE task SET status='waiting' WHERE status='ready' AND job_id != ?", (job_id,)
        )
        batch.claim(conn, {"batch-01": 1}, at=2.0)
        sql(conn, "UPDATE task SET status='ready' WHERE status='waiting'")


def _moves(store: Store, job_id: int) -> list[tuple]:
    return [
        (e["task_id"] is not None, e["from_status"], e["to_status"], e["reason"])
        for e in events(store, job_id)
        if e["kind"] == "status"
    ]


def test_a_bulk_cancel_moves_every_job_with_its_events_chunk_by_chunk(
    store: Store, tmp_path: Path
) -> None:
    waiting = [submit_tasks(store, tmp_path, f"w{i}", WAIT) for i in range(7)]
    running = submit_tasks(store, tmp_path, "run", WAIT)
    _start(store, running)
    system = submit_tasks(store, tmp_path, "sys", WAIT, system=True)
    plan = reading(store, bulk_flow.plan, "cancel", actor="ops")
    assert len(plan.act) == 8 and [j.job.id for j in plan.refused] == [system]
    flows.cancel(store.transaction, waiting[4], actor="someone")  # between the plan and the yes
    results = {
        r.job_id: r for r in bulk_flow.apply(store.transaction, plan, actor="ops", reason="bad")
    }

    assert not results[waiting[4]].done
    assert results[waiting[4]].text == f"Job {waiting[4]} already Canceled"
    assert results[system].text == f"Job {system}: System jobs cannot be canceled"
    assert results[running].text == f"Job {running} Canceling"
    said = "Job canceled by ops: bad"
    for job_id in waiting[:4] + waiting[5:]:
        assert results[job_id].text == f"Job {job_id} Canceled"
        assert job_row(store, job_id)["canceled_by"] == "ops"
        assert _moves(store, job_id)[-2:] == [
            (True, "ready", "didnt_run", said),
            (False, "waiting", "canceled", said),
        ]
    assert job_status(store, running) == "canceling"
    assert task_statuses(store, running) == {"sleep": "canceling"}
    assert _moves(store, running)[-2:] == [
        (True, "executing", "canceling", said),
        (False, "executing", "canceling", said),
    ]
    assert job_status(store, system) == "waiting"


def test_the_rules_refusals_are_audited_once_each(store: Store, tmp_path: Path) -> None:
    theirs = [submit_tasks(store, tmp_path, f"t{i}", WAIT) for i in range(5)]
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "alice")
    plan = reading(store, bulk_flow.plan, "cancel", actor="bob")
    assert plan.act == [] and len(plan.refused) == 5
    results = {
        r.job_id: r for r in bulk_flow.apply(store.transaction, plan, actor="bob", reason=None)
    }
    assert sorted(results) == theirs and not any(r.done for r in results.values())
    for job_id in theirs:
        why = results[job_id].text.removeprefix(f"Job {job_id}: ")
        assert "Cancel needs" in why
        refused = [
            (e["actor"], e["reason"]) for e in events(store, job_id) if e["kind"] == "refused"
        ]
        assert refused == [("bob", why)]
        assert job_status(store, job_id) == "waiting"


def test_cancel_all_on_the_light_path_imports_no_action(store: Store, tmp_path: Path) -> None:
    """``cancel --all --yes`` asks how a cancel stops only the running tasks' actions:
    importing them all (httpx and the remote clients with them) took ~0.3 s of a bulk
    cancel of 10,000 jobs, a third of the whole process on PostgreSQL."""
    import subprocess
    import sys

    waiting = [submit_tasks(store, tmp_path, f"w{i}", WAIT) for i in range(3)]
    probe = (
        "import sys; from engine.cli.main import main; rc = main(sys.argv[1:]); "
        "print(rc, [m for m in ('httpx', 'engine.actions') if m in sys.modules], "
        "file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, "--db", store.target.url, "cancel", "--all", "--yes"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr
    assert {job_status(store, j) for j in waiting} == {"canceled"}
