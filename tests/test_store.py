"""The store: pragmas, schema version, the transition table at the SQL level, leases, recovery."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from engine.core.statuses import (
    TASK_TRANSITIONS,
    IllegalTransition,
    TaskStatus,
    check_task,
    resolve_outcome,
)
from engine.flows import base as flows
from engine.recipes import Recipe, TaskSpec
from engine.runtime import tick as batch
from engine.runtime.supervisor import Supervisor
from engine.store.db import DatabaseError, Store
from engine.store.flow_statements import flow_sql
from engine.store.models import SCHEMA_VERSION
from engine.store.tables import task
from engine.store.writes import TaskMove
from tests.engine_support import job_status, submit_tasks, task_row, until


def _job(store: Store, n: int = 2, at: float = 100.0) -> int:
    tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 1}) for i in range(n))
    with store.transaction() as sql:
        return flows.insert_job(sql, Recipe("j", None, False, tasks), actor="t", at=at)


def test_a_large_write_is_checkpointed_after_its_commit_not_inside_it(tmp_path):
    db = tmp_path / "t.db"
    store = Store(db)
    with store.write() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    other = sqlite3.connect(db, isolation_level=None)
    try:
        job_id = _job(store, n=25_000)  # a WAL past the threshold
        # A read transaction on the new data: closing the Store's connections is then
        # not the last close (which would checkpoint by itself), and does not hold
        # back a checkpoint of what it sees.
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM task").fetchone()
        store.dispose()  # waits for the checkpoint under way
        # Read the main file alone (immutable: the WAL is ignored): the rows are in it.
        main_only = sqlite3.connect(f"{db.as_uri()}?immutable=1", uri=True)
        q = "SELECT count(*) FROM task WHERE job_id=?"
        n = main_only.execute(q, (job_id,)).fetchone()
        main_only.close()
    finally:
        other.close()
    assert n == (25_000,)


def test_every_connection_has_wal_busy_timeout_and_foreign_keys(tmp_path):
    store = Store(tmp_path / "t.db")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_other_schema_version_is_a_clear_error(tmp_path):
    path = tmp_path / "t.db"
    Store(path).dispose()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(
        DatabaseError, match=f"schema version 99, this batchdeck needs version {SCHEMA_VERSION}"
    ):
        Store(path)


def _as_version_2(path) -> None:
    """Lay the database out as version 2 had it: the recipe in the job's own row."""
    with sqlite3.connect(path) as raw:
        raw.execute("ALTER TABLE job ADD COLUMN recipe_json VARCHAR")
        raw.execute(
            "UPDATE job SET recipe_json ="
            " (SELECT recipe_json FROM job_recipe WHERE job_id = job.id)"
        )
        raw.execute("DROP TABLE job_recipe")
        raw.execute("UPDATE meta SET value='2' WHERE key='schema_version'")


def test_a_version_2_database_is_upgraded_by_a_writer_and_its_recipes_kept(tmp_path):
    from engine.flows.rerun import _recipe

    path = tmp_path / "t.db"
    store = Store(path)
    job_id = _job(store, n=3)
    store.dispose()
    _as_version_2(path)
    # A reader may not change the file: it says what to do.
    with pytest.raises(DatabaseError, match="schema version 2, .* upgrades it"):
        Store(path, readonly=True)
    store = Store(path)
    try:
        with store.read() as conn:  # what a rerun would run: the recipe as submitted
            assert [t.name for t in _recipe(flow_sql(conn), job_id).tasks] == ["t0", "t1", "t2"]
    finally:
        store.dispose()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        assert raw.execute("SELECT count(*) FROM job WHERE recipe_json IS NOT NULL").fetchone() == (
            0,
        )
        assert raw.execute("SELECT count(*) FROM job_recipe").fetchone() == (1,)
    Store(path, readonly=True).dispose()


def _index_sql(path) -> dict[str, str]:
    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'task'")
        return {name: sql for name, sql in rows if name.startswith("ix_")}


_OLD_SERVER_INDEX = "CREATE INDEX ix_task_server_status ON task (server, status)"
_OLD_STATUS_INDEX = "CREATE INDEX ix_task_status_id ON task (status, id)"


def _as_version(path, version: str, *ddl: str) -> dict[str, str]:
    """Turn the file back into ``version`` (``ddl``: its indexes as they were); a reader
    refuses it, a writer upgrades it: the task indexes after that."""
    with sqlite3.connect(path) as raw:
        for statement in ddl:
            raw.execute(statement)
        raw.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    with pytest.raises(DatabaseError, match=f"schema version {version}, .* upgrades it"):
        Store(path, readonly=True)
    Store(path).dispose()
    return _index_sql(path)


def test_a_version_3_database_gets_the_partial_server_index_from_a_writer(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job_id = _job(store, n=3)
    store.dispose()
    # Version 3: every task indexed by (server, status).
    indexes = _as_version(path, "3", "DROP INDEX ix_task_on_server", _OLD_SERVER_INDEX)
    assert "ix_task_server_status" not in indexes
    assert indexes["ix_task_on_server"].endswith("WHERE server IS NOT NULL")
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        assert raw.execute("SELECT count(*) FROM task WHERE job_id = ?", (job_id,)).fetchone() == (
            3,
        )


def _plan(raw: sqlite3.Connection, sql: str, params: dict) -> list[str]:
    return [row[-1] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params)]


def _rendered_plan(raw: sqlite3.Connection, text) -> list[str]:
    """The plan of a statement as ``engine.sql.light`` renders it, every value empty."""
    return _plan(
        raw, text.sql, text.bind({n: [] if n in text.as_json else None for n in text.needed})
    )


def test_the_queries_by_server_use_the_partial_index(tmp_path):
    """A task without a server is not in ``ix_task_on_server`` (so a cancel of not-started
    tasks never moves in it); the statements that look tasks up by server must still
    imply ``server IS NOT NULL``, or SQLite would scan the whole table."""
    from engine.sql.keys import FLOW
    from engine.store.render import render

    path = tmp_path / "t.db"
    Store(path).dispose()
    statements = render().statements
    with sqlite3.connect(path) as raw:
        for key in ("servers", FLOW + "abort.disrupted"):
            plan = _rendered_plan(raw, statements[key])
            assert any("INDEX ix_task_on_server" in row for row in plan), key


def test_a_version_4_database_gets_the_partial_status_indexes_from_a_writer(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job_id = _job(store, n=3)
    store.dispose()
    # Version 4: every task indexed by (status, id).
    indexes = _as_version(
        path, "4", "DROP INDEX ix_task_ready", "DROP INDEX ix_task_stopping", _OLD_STATUS_INDEX
    )
    assert "ix_task_status_id" not in indexes
    assert indexes["ix_task_ready"].endswith("WHERE status = 'ready'")
    assert indexes["ix_task_stopping"].endswith("WHERE status = 'canceling' OR status = 'aborting'")
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        # The rows are all there, and the Ready ones are found through the new index.
        assert raw.execute(
            "SELECT count(*) FROM task INDEXED BY ix_task_ready WHERE status = 'ready'"
        ).fetchone() == (3,)
        assert raw.execute("SELECT count(*) FROM task WHERE job_id = ?", (job_id,)).fetchone() == (
            3,
        )


def test_a_version_5_database_gets_the_remote_job_column_from_a_writer(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job_id = _job(store, n=3)
    store.dispose()
    # Version 5: no remote job on a task.
    _as_version(path, "5", "ALTER TABLE task DROP COLUMN remote_job")
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        # Every row kept, none with a remote job; the column takes one.
        assert raw.execute(
            "SELECT count(*) FROM task WHERE job_id = ? AND remote_job IS NULL", (job_id,)
        ).fetchone() == (3,)
    store = Store(path)
    try:
        with store.write() as conn:
            (tid,) = conn.exec_driver_sql("SELECT min(id) FROM task").one()
            conn.exec_driver_sql("UPDATE task SET claim_token='c', status='executing'")
            assert batch.record_remote_job(conn, tid, "c", "750EMU1")
            assert not batch.record_remote_job(conn, tid, "another claim", "750EMU2")
        assert task_row(store, job_id, "t0")["remote_job"] == "750EMU1"
    finally:
        store.dispose()


def test_claims_and_stuck_tasks_use_the_partial_status_indexes(tmp_path):
    """Only Ready, Canceling and Aborting tasks are in a status index; the claim and the
    stuck-job query must name those partial indexes' predicates term for term, or
    SQLite would read every task of the database."""
    from engine.runtime.tick import _READY
    from engine.store.prepared import CompiledText, _named_dialect
    from engine.store.render import render

    path = tmp_path / "t.db"
    store = Store(path)
    try:
        with store.read() as conn:
            ready = CompiledText(_READY.stmt, _named_dialect(conn))
    finally:
        store.dispose()
    statements = render().statements
    with sqlite3.connect(path) as raw:
        claim = _plan(raw, ready.sql, ready.params({"taken": "[]", "n": 4}))
        assert any("INDEX ix_task_ready" in row for row in claim), claim
        for key in ("stopping_tasks", "stopping_tasks_of"):
            plan = _rendered_plan(raw, statements[key])
            if key == "stopping_tasks":  # the other finds them by job (ix_task_job_status)
                assert any("INDEX ix_task_stopping" in row for row in plan), plan
            assert not any(row.startswith("SCAN task") for row in plan), (key, plan)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE accounts(id)")
    with pytest.raises(DatabaseError, match="not a batchdeck database"):
        Store(path)


def test_illegal_transition_writes_nothing(tmp_path):
    store = Store(tmp_path / "t.db")
    job = _job(store)
    with store.write() as conn:
        # Ready -> Ended is not in the table: no row moves and no event is written.
        move = TaskMove("ended", task.c.job_id == job)
        n = move(conn, at=1, actor="t", reason=None)
        events = conn.exec_driver_sql("SELECT count(*) FROM event WHERE to_status='ended'")
        assert n == 0 and events.scalar_one() == 0
        statuses = {r[0] for r in conn.exec_driver_sql("SELECT status FROM task")}
    assert statuses == {"ready"}
    with pytest.raises(IllegalTransition):
        check_task("ready", "ended")


@pytest.mark.parametrize("terminal", ["didnt_run", "canceled", "aborted", "ended", "error"])
def test_terminal_task_statuses_never_change(terminal):
    assert TASK_TRANSITIONS[TaskStatus(terminal)] == frozenset()
    for outcome in ("ended", "error", "canceled", "aborted", "interrupted"):
        assert resolve_outcome(terminal, outcome) is None


def test_abort_wins_over_a_late_result():
    assert resolve_outcome("aborting", "ended") == "aborted"
    assert resolve_outcome("canceling", "ended") == "ended"
    assert resolve_outcome("executing", "interrupted", attempts_left=True) == "ready"
    assert resolve_outcome("executing", "interrupted", attempts_left=False) == "error"


async def test_a_second_engine_for_the_same_server_is_refused(tmp_path):
    path = str(tmp_path / "t.db")
    async with Supervisor(path, {"batch-01": 2}):
        second = Supervisor(path, {"batch-01": 2})
        with pytest.raises(batch.LeaseRefused, match="server batch-01 is already served"):
            await second.start()
        assert second._writer._shutdown  # a refused start leaves no thread behind
        # Another server name on the same database is fine.
        async with Supervisor(path, {"batch-02": 1}):
            pass


async def test_recovery_requeues_then_errors_when_attempts_run_out(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job = submit_tasks(
        store, tmp_path, "r", [{"name": "a", "action": "wait", "seconds": 600}], max_attempts=2
    )
    # A dead engine: lease taken long ago, task left Executing.
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 4}, "dead:1:x", at=1.0)
        batch.claim(conn, {"batch-01": 1}, at=2.0)
    assert task_row(store, job, "a")["status"] == "executing"

    async with Supervisor(str(path), {"batch-01": 4}):
        row = task_row(store, job, "a")
        assert row["attempt"] == 2  # recovered to Ready, attempt + 1, and started again
        await until(lambda: task_row(store, job, "a")["status"] == "executing")
    # A clean stop puts it back to Ready whatever its attempts; now a second death mid-run.
    assert task_row(store, job, "a")["status"] == "ready"
    with store.write() as conn:
        conn.exec_driver_sql("UPDATE server SET lease_owner='dead:2:y', heartbeat_at=1")
        batch.claim(conn, {"batch-01": 1}, at=3.0)
        conn.exec_driver_sql("UPDATE task SET attempt=2")
    async with Supervisor(str(path), {"batch-01": 4}):
        row = task_row(store, job, "a")
        assert row["status"] == "error" and row["error"] == "interrupted: engine stopped"
        assert job_status(store, job) == "error"


async def test_recovery_finishes_a_job_left_canceling(tmp_path):
    from engine.flows import base as flows

    path = tmp_path / "t.db"
    store = Store(path)
    job = submit_tasks(store, tmp_path, "c", [{"name": "a", "action": "wait", "seconds": 600}])
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 4}, "dead:1:x", at=1.0)
        batch.claim(conn, {"batch-01": 1}, at=2.0)
    with store.write() as conn:  # the dead engine's lease is not live: keep it "live" for cancel
        conn.exec_driver_sql("UPDATE server SET heartbeat_at=1e12")
    flows.cancel(store.transaction, job, actor="op")
    assert job_status(store, job) == "canceling"
    with store.write() as conn:
        conn.exec_driver_sql("UPDATE server SET heartbeat_at=1")
    async with Supervisor(str(path), {"batch-01": 4}):
        assert job_status(store, job) == "canceled"
        assert task_row(store, job, "a")["status"] == "canceled"


async def test_an_engine_whose_lease_was_taken_stops_serving_that_server(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job = submit_tasks(store, tmp_path, "w", [{"name": "a", "action": "wait", "seconds": 600}])
    async with Supervisor(
        str(path), {"batch-01": 2, "batch-02": 1}, heartbeat_interval=0.05
    ) as eng:
        await until(lambda: task_row(store, job, "a")["status"] == "executing")
        assert task_row(store, job, "a")["server"] == "batch-01"
        # Another engine took batch-01 while this one stalled (its recovery requeued "a").
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE server SET lease_owner='other:9:z' WHERE name='batch-01'")
        await until(lambda: "batch-01" not in eng.servers, "lease loss noticed")
        await until(lambda: not eng._runners, "its run dropped")
        assert any("taken by another engine" in e for e in eng.stats.errors)
        assert task_row(store, job, "a")["status"] == "executing"  # nothing written by us


def test_a_tick_counts_free_slots_when_it_claims_after_writing_its_outcomes(tmp_path):
    """A slot freed while the tick's first statements ran is filled in that same tick:
    the engine's count of free slots is asked for at the claim, not when the tick began."""
    store = Store(tmp_path / "t.db")
    steps = [{"name": n, "action": "wait", "seconds": 0} for n in ("a", "b")]
    job = submit_tasks(store, tmp_path, "s", steps)
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 1}, "me:1:x", at=1.0)
        (first,) = batch.claim(conn, {"batch-01": 1}, at=2.0, token="t1")
    seen: list[str] = []

    def free_now() -> dict[str, int]:
        # Asked inside the tick's transaction: the run's outcome is already written.
        seen.append(
            conn.exec_driver_sql(f"SELECT status FROM task WHERE id={first.task_id}").scalar_one()
        )
        return {"batch-01": 1}

    with store.write() as conn:
        out = batch.tick(
            conn,
            batch.TickIn(
                at=3.0,
                outcomes=[batch.Outcome(first.task_id, "ended", token="t1")],
                free=free_now,
                servers=["batch-01"],
                owner="me:1:x",
                token="t2",
            ),
        )
    assert seen == ["ended"]
    assert [c.name for c in out.claimed] == ["b"]
    assert task_row(store, job, "b")["status"] == "executing"


async def test_recovering_an_expired_peers_tasks_is_an_event_not_an_engine_error(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job = submit_tasks(store, tmp_path, "p", [{"name": "a", "action": "wait", "seconds": 600}])
    with store.write() as conn:  # another engine's server, alive for now, runs "a"
        batch.claim_leases(conn, {"ghost": 1}, "peer:1:x", at=time.time())
        batch.claim(conn, {"ghost": 1}, at=time.time())
    async with Supervisor(str(path), {"batch-01": 1}, heartbeat_interval=0.05) as eng:
        with store.write() as conn:  # ...then its engine stops beating
            conn.exec_driver_sql("UPDATE server SET heartbeat_at=1 WHERE name='ghost'")
        await until(lambda: task_row(store, job, "a")["server"] == "batch-01", "a run here")
        assert eng.stats.events == ["recovered 1 task(s) of expired server(s) ghost"]
        assert eng.stats.errors == []


async def test_an_engine_hears_a_commit_through_its_own_store_at_once(tmp_path, monkeypatch):
    """A console and an engine in one process share a Store: the engine is woken by the
    console's cancel at its commit. With its look at ``data_version`` and its poll made
    an hour long, only that can make it wind the job down."""
    from engine.runtime import supervisor as runtime

    monkeypatch.setattr(runtime, "WATCH_S", 3600.0)
    path = tmp_path / "t.db"
    store = Store(path)
    job = submit_tasks(store, tmp_path, "b", [{"name": "a", "action": "wait", "seconds": 600}])
    async with Supervisor(str(path), {"batch-01": 1}, poll_interval=3600.0) as eng:
        await until(lambda: task_row(store, job, "a")["status"] == "executing", "a started")
        await asyncio.to_thread(flows.cancel, eng.store.transaction, job, actor="op")
        await until(lambda: job_status(store, job) == "canceled", "the cancel acted on")
        assert task_row(store, job, "a")["status"] == "canceled"


def test_a_watch_takes_its_writers_commit_as_seen_but_never_anothers(tmp_path):
    """``absorb`` after a commit: the writer's own commit is no news, but a commit by
    another connection that slips in between the commit and the look is reported."""
    from engine.store.watch import data_version

    path = tmp_path / "t.db"
    store, other = Store(path), Store(path)
    watch = store.watcher()

    def write(slip: bool) -> None:
        mark: list[int] = []

        def after(conn) -> None:
            raw = conn.connection.driver_connection
            if slip:
                with other.write() as o:
                    o.exec_driver_sql("UPDATE meta SET value = value WHERE key = 'x'")
                    o.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('y', '1')")
            watch.absorb(lambda: data_version(raw) == mark[0])

        with store.write(after_commit=after) as conn:
            conn.exec_driver_sql("INSERT OR REPLACE INTO meta (key, value) VALUES ('x', 'a')")
            mark.append(data_version(conn.connection.driver_connection))

    try:
        write(slip=False)
        assert not watch.changed()  # only our own commit: nothing to look at
        write(slip=True)
        assert watch.changed()  # theirs is not swallowed with ours
        assert not watch.changed()
    finally:
        store.dispose()
        other.dispose()


@pytest.mark.both_databases
async def test_an_engine_is_not_woken_by_its_own_ticks(db, tmp_path):
    """Each tick's commit used to wake the engine for one more tick with nothing to do
    (SQLite's data_version, PostgreSQL's notification): at one slot, about two ticks
    per task."""
    store = Store(db)
    n = 40
    steps = [{"name": f"t{i}", "action": "wait", "seconds": 0} for i in range(n)]
    job = submit_tasks(store, tmp_path, "seq", steps)
    try:
        async with Supervisor(db, {"batch-01": 1}) as eng:
            assert await eng.wait_job(job) == "ended"
            ticks = eng.stats.ticks
    finally:
        store.dispose()
    assert ticks < n * 1.5, ticks


async def test_a_failed_look_after_a_ticks_commit_does_not_undo_the_tick(tmp_path, monkeypatch):
    """The tick has committed when its watch looks: an error there must not make the
    engine take the tick for failed (it would write its outcomes again and lose its
    claims)."""
    from engine.store.watch import DataVersionWatch

    def broken(self, only_ours):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(DataVersionWatch, "absorb", broken)
    path = tmp_path / "t.db"
    store = Store(path)
    steps = [{"name": f"t{i}", "action": "wait", "seconds": 0} for i in range(5)]
    job = submit_tasks(store, tmp_path, "seq", steps)
    async with Supervisor(str(path), {"batch-01": 1}) as eng:
        # Bounded: taken for failed, the tick's claimed tasks stayed Executing for good.
        assert await asyncio.wait_for(eng.wait_job(job), 60) == "ended"
        assert eng.stats.errors == []
    for i in range(5):
        assert task_row(store, job, f"t{i}")["attempt"] == 1


@pytest.mark.both_databases
def test_a_tick_reads_settles_claims_and_reports_the_runs_an_operator_stopped(db, tmp_path):
    """The tick's first reads go together (one round trip on PostgreSQL): the settled
    runs' tasks, the servers, the running tasks an operator acted on; then it writes the
    outcomes and claims. What it reports is what the database says after the cancel."""
    store = Store(db)
    try:
        wait = [{"name": n, "action": "wait", "seconds": 60} for n in ("a", "b")]
        first = submit_tasks(store, tmp_path, "first", wait)
        with store.write() as conn:
            batch.claim_leases(conn, {"batch-01": 4}, "me:1:x", at=1.0)
            a, b = batch.claim(conn, {"batch-01": 2}, at=2.0, token="t1")
        second = submit_tasks(store, tmp_path, "second", [wait[0] | {"name": "x"}])
        flows.cancel(store.transaction, first, actor="ops")
        with store.write() as conn:
            out = batch.tick(
                conn,
                batch.TickIn(
                    at=3.0,
                    outcomes=[batch.Outcome(a.task_id, "canceled", token="t1")],
                    free=lambda: {"batch-01": 2},
                    running=[b.task_id],
                    servers=["batch-01"],
                    owner="me:1:x",
                    token="t2",
                ),
            )
        assert out.task_state == {b.task_id: ("canceling", None, None)}
        assert out.servers == {"batch-01": ("online", None, None)} and out.lost == []
        assert [(c.job_id, c.name, c.token) for c in out.claimed] == [(second, "x", "t2")]
        assert task_row(store, first, "a")["status"] == "canceled"
        assert task_row(store, first, "b")["status"] == "canceling"
        assert job_status(store, second) == "executing"
    finally:
        store.dispose()
