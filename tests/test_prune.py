"""``batchdeck prune`` and the engine's hourly prune: finished jobs older than a date go
with everything of theirs, in short batches; jobs that other jobs point to stay; one
audit event counts it all. Real SQLite files, the real command line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.flows import base as flows
from engine.recipes import Recipe, TaskSpec
from engine.runtime.supervisor import Supervisor
from engine.store import prune
from engine.store.db import Store
from engine.store.flow_statements import flow_sql
from engine.store.log_store import LogItem, write_logs
from tests.proc_support import Deck, deck_in
from tests.waiting import until

OLD = 1_000_000.0  # 1970: long finished
TABLES = ("job", "task", "taskdep", "event", "job_recipe", "task_log")


def _add(store: Store, *, status: str = "ended", at: float = OLD, **how: object) -> int:
    """A job of two dependent tasks, with a stored recipe, events and a log chunk."""
    tasks = (
        TaskSpec("a", "wait", (), {"seconds": 1}),
        TaskSpec("b", "wait", ("a",), {"seconds": 1}),
    )
    with store.write() as conn:
        job_id = flows.insert_job(
            flow_sql(conn), Recipe("j", None, False, tasks), actor="t", at=at, **how
        )
        conn.exec_driver_sql(
            "UPDATE job SET status=?, ended_at=? WHERE id=?",
            (status, at if status in ("ended", "error", "canceled") else None, job_id),
        )
        conn.exec_driver_sql(
            "UPDATE task SET claim_token='k' WHERE job_id=? AND name='a'", (job_id,)
        )
        tid = conn.exec_driver_sql(
            "SELECT id FROM task WHERE job_id=? AND name='a'", (job_id,)
        ).scalar_one()
        write_logs(conn, [LogItem(tid, job_id, 1, "k", [1, "out", 1, "hello"])], at=at)
    return job_id


def _count(store: Store, table: str, job_id: int) -> int:
    column = {"job": "id", "taskdep": None}.get(table, "job_id")
    with store.read() as conn:
        if column is None:
            sql = (
                "SELECT count(*) FROM taskdep JOIN task ON task.id = taskdep.task_id WHERE job_id=?"
            )
        else:
            sql = f"SELECT count(*) FROM {table} WHERE {column}=?"
        return conn.exec_driver_sql(sql, (job_id,)).scalar_one()


def _everything(store: Store, job_id: int) -> dict[str, int]:
    return {t: _count(store, t, job_id) for t in TABLES}


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[Deck]:
    with deck_in(tmp_path) as d:
        yield d


def test_prune_deletes_old_finished_jobs_with_everything_of_theirs(deck: Deck) -> None:
    store = Store(deck.db)
    try:
        old = [_add(store, status=s) for s in ("ended", "error", "canceled")]
        running = _add(store, status="executing")
        recent = _add(store, at=4_000_000_000.0)  # finished in 2096: newer than any cutoff
        assert all(_everything(store, j)["taskdep"] == 1 for j in old)
        assert all(_everything(store, j)["task_log"] == 1 for j in old)

        dry = deck.ok("prune", "--older-than", "30d", "--dry-run").out
        assert "3 finished jobs" in dry and _count(store, "job", old[0]) == 1

        out = deck.ok("prune", "--before", "2000-01-01").out
        assert out.startswith("pruned 3 jobs finished before 2000-01-01")
        for j in old:
            assert _everything(store, j) == dict.fromkeys(TABLES, 0)
        for j in (running, recent):
            assert _everything(store, j) == {
                "job": 1,
                "task": 2,
                "taskdep": 1,
                "event": _count(store, "event", j),
                "job_recipe": 1,
                "task_log": 1,
            }
        with store.read() as conn:
            audit = conn.exec_driver_sql(
                "SELECT actor, reason FROM event WHERE reason LIKE 'pruned %'"
            ).all()
        assert len(audit) == 1
        assert (
            "(6 tasks, " in audit[0].reason and "3 log chunks, 3 stored recipes" in audit[0].reason
        )
    finally:
        store.dispose()


def test_jobs_that_a_staying_job_points_to_are_kept(deck: Deck) -> None:
    store = Store(deck.db)
    try:
        parent = _add(store)
        _add(store, status="executing", parent_id=parent)  # a live child
        rerun_source = _add(store)
        _add(store, status="waiting", rerun_of=rerun_source)  # a live rerun
        done_source = _add(store)
        _add(store, rerun_of=done_source)  # a finished rerun: no reason to keep it
        out = deck.ok("prune", "--older-than", "1d").out
        assert "pruned 2 jobs" in out and "kept 2" in out
        assert _count(store, "job", parent) == 1 and _count(store, "job", rerun_source) == 1
        assert _count(store, "job", done_source) == 0
    finally:
        store.dispose()


def test_bad_or_missing_dates_are_bad_usage(deck: Deck) -> None:
    assert "one of the arguments" in deck.refused("prune", code=2).err
    assert "--before 'May 1st'" in deck.refused("prune", "--before", "May 1st", code=2).err
    assert "--older-than '30 days'" in deck.refused("prune", "--older-than", "30 days", code=2).err


def test_only_a_manager_may_prune_and_a_refusal_is_audited(deck: Deck) -> None:
    store = Store(deck.db)
    try:
        job = _add(store)
        deck.ok("settings", "managers", "nobody-here", "--force")
        err = deck.refused("prune", "--older-than", "1d").err
        assert "Pruning history needs a batch job manager" in err
        assert _count(store, "job", job) == 1
        with store.read() as conn:
            kinds = (
                conn.exec_driver_sql("SELECT kind FROM event WHERE reason LIKE 'Pruning history%'")
                .scalars()
                .all()
            )
        assert kinds == ["refused"]
    finally:
        store.dispose()


def test_a_cancel_goes_through_while_a_prune_of_many_batches_runs(deck: Deck) -> None:
    """Each batch is its own short transaction: a cancel from another process gets the
    write lock between two of them (how long it waited is measured by
    bench/prune_history.py, not asserted here)."""
    store = Store(deck.db)
    try:
        with store.write() as conn:
            recipe = Recipe("j", None, False, (TaskSpec("a", "wait", (), {"seconds": 1}),))
            for _ in range(3000):
                flows.insert_job(flow_sql(conn), recipe, actor="t", at=OLD)
            conn.exec_driver_sql("UPDATE job SET status='ended', ended_at=?", (OLD,))
        live = _add(store, status="waiting", at=4_000_000_000.0)
        results: list[prune.PruneResult] = []
        worker = threading.Thread(
            target=lambda: results.append(prune.run_sync(store, OLD + 1, actor="t"))
        )
        worker.start()
        try:
            deck.ok("cancel", str(live))
        finally:
            worker.join()
        assert deck.job_status(live) == "canceled"
        assert results[0].jobs == 3000 and results[0].batches > 1
    finally:
        store.dispose()


async def test_the_engine_prunes_with_keep_days_set(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store(db)
    try:
        old = _add(store)
        with store.transaction() as sql:
            from engine.flows import settings as setting_flows

            setting_flows.store(sql, "keep_days", "30")
        async with Supervisor(str(db), {"b": 1}) as engine:
            await until(lambda: _count(store, "job", old) == 0, "the old job to be pruned")
            await until(
                lambda: any(e.startswith("pruned 1 jobs") for e in engine.stats.events),
                "the prune said",
            )
    finally:
        store.dispose()
