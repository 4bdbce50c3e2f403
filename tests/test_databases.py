"""One data layer, two databases: what ``--db`` accepts, the per-process gateway, and the
statements of submit, cancel, abort and the readers run on a real PostgreSQL.

PostgreSQL comes from the ``pgserver`` wheel (PostgreSQL 16), started once per session
(``pg_server``); each test gets a database of its own. As root, pgserver runs the server
as a system user ``pgserver`` it creates, and opens the directories above its data
directory to others: the data directory is made under /tmp for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.cli import main as cli
from engine.core.dburl import parse_db
from engine.core.refusal import Refusal
from engine.core.setting_values import bounded
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import bulk as bulk_flow
from engine.flows import requests as request_flows
from engine.flows import settings as setting_flows
from engine.reader.reader import Reader
from engine.recipes import Recipe, TaskSpec
from engine.store.db import DatabaseError, Store, normalize_db, shared_store
from engine.store.models import SCHEMA_VERSION
from engine.store.tables import task
from tests.engine_support import reading
from tests.waiting import until, until_sync

ROOT = Path(__file__).resolve().parents[1]


def two_tasks() -> Recipe:
    return Recipe(
        name="pair",
        path=None,
        system=False,
        tasks=(
            TaskSpec("first", "wait", (), {"seconds": 0}),
            TaskSpec("second", "wait", ("first",), {"seconds": 0}),
        ),
    )


# -- what --db accepts -----------------------------------------------------------------


def test_db_accepts_a_path_a_sqlite_url_and_a_libpq_url() -> None:
    assert parse_db("./x.db").path == "./x.db"
    assert parse_db("sqlite:///rel/x.db").path == "rel/x.db"
    assert parse_db("sqlite:////abs/x.db").path == "/abs/x.db"
    pg = parse_db("postgresql://bob:s3cret@db.example:5432/batch?sslmode=require")
    assert pg.kind == "postgresql"
    assert (
        pg.sqlalchemy_url()
        == "postgresql+psycopg://bob:s3cret@db.example:5432/batch?sslmode=require"
    )
    assert "s3cret" not in pg.display() and "db.example:5432/batch" in pg.display()
    assert parse_db("postgres://h/db").kind == "postgresql"
    assert normalize_db("sqlite:///a/b.db") == "a/b.db"
    with pytest.raises(ValueError, match="mysql://"):
        parse_db("mysql://h/db")


def test_the_command_line_takes_a_sqlite_url(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "one"\n\n[[task]]\nname = "a"\naction = "wait"\nseconds = 0\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from tui.cli import main; main()", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    sub = run("--db", f"sqlite:///{db}", "submit", str(recipe))
    assert sub.returncode == 0, sub.stderr
    shown = run("--db", str(db), "list")  # the same file, named by its path
    assert shown.returncode == 0 and "one" in shown.stdout
    bad = run("--db", "mysql://h/db", "list")
    assert bad.returncode == 2 and "mysql://" in bad.stderr


# -- the gateway -----------------------------------------------------------------------


async def test_one_store_reader_and_watch_connection_per_database(tmp_path: Path) -> None:
    db = str(tmp_path / "g.db")
    a = shared_store(db)
    b = shared_store(f"sqlite:///{db}", readonly=None)  # the same file, the same gateway
    assert a is b
    reader = Reader(db)
    assert reader.store is a
    first = await reader.job(1)
    assert first is None
    assert reader.engine is a.async_engine()  # one async reader on this loop
    await a.release_async(reader.engine)
    watch = a.watcher()
    other = a.watcher()
    assert a._watch_conn is not None
    job = flows.submit(Store(db).transaction, two_tasks(), actor="t")  # another connection commits
    assert watch.changed() and other.changed()  # each watch sees it once
    assert not watch.changed()
    assert (await reader.job(job)).status == "waiting"
    await reader.close()
    b.dispose()
    assert a.writer is not None and a._refs == 1  # still open for its last user
    a.dispose()
    assert shared_store(db) is not a  # closed with its last user: a fresh one now
    shared_store(db).dispose()


# -- PostgreSQL ------------------------------------------------------------------------


def test_postgresql_schema_is_created_once_and_versioned(pg_url: str) -> None:
    store = Store(pg_url)
    assert store.is_postgresql
    store.dispose()
    again = Store(pg_url)  # checks the version, creates nothing
    with again.write() as conn:
        conn.exec_driver_sql("UPDATE meta SET value='1' WHERE key='schema_version'")
    again.dispose()
    with pytest.raises(DatabaseError, match="schema version 1"):
        Store(pg_url)


def test_cancel_and_abort_run_the_same_statements_on_postgresql(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        job = flows.submit(store.transaction, two_tasks(), actor="alice")
        with store.read() as conn:
            rows = conn.execute(
                task.select().where(task.c.job_id == job).order_by(task.c.seq)
            ).all()
        assert [(r.name, r.status) for r in rows] == [("first", "ready"), ("second", "waiting")]
        with pytest.raises(Refusal, match="nothing is running to abort"):
            reading(store, abort_flow.preview, job)
        assert flows.cancel(store.transaction, job, actor="alice", words="wrong data") == (
            f"Job {job} Canceled"
        )
        with pytest.raises(Refusal, match="already Canceled"):
            flows.cancel(store.transaction, job, actor="alice")
        other = flows.submit(store.transaction, two_tasks(), actor="alice")
        plan = reading(store, bulk_flow.plan, "cancel", actor="alice", name="pa*")
        assert [j.job.id for j in plan.act] == [other]  # the canceled job is not listed
        assert reading(store, bulk_flow.plan, "cancel", actor="alice", name="x*").jobs == []
    finally:
        store.dispose()
    # The command line's dry run of a cancel: the same flow, on SQLAlchemy here.
    for argv, said in (
        ((str(other), "--dry-run"), f"Job {other}: would be canceled"),
        ((str(job), "--with-children", "--dry-run"), f"Job {job}: refused: Job {job} already"),
        (("999", "--with-children", "--dry-run"), "Job 999: refused: Job 999 does not exist"),
    ):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["--db", pg_url, "cancel", *argv]) == 0
        assert out.getvalue().startswith(said), out.getvalue()
        assert out.getvalue().endswith("Dry run: nothing changed.\n")
    # Settings through the command line: the same flows (engine.setting_flows).
    for argv, said in (
        (("drain_seconds", "120"), "drain_seconds = 120\n"),
        (("drain_seconds",), "120\n"),
    ):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["--db", pg_url, "settings", *argv]) == 0
        assert out.getvalue() == said

    async def read() -> None:
        reader = Reader(pg_url)
        try:
            detail = await reader.job_detail(job)
            assert detail is not None
            assert detail.job.status == "canceled"
            assert detail.job.cancel_reason == "Job canceled by alice: wrong data"
            assert [t.status for t in detail.tasks] == ["didnt_run", "didnt_run"]
            assert [e.to_status for e in detail.events if e.kind == "status"].count(
                "didnt_run"
            ) == 2
            page = await reader.list_jobs(0, 10, text="pai")
            assert [j.id for j in page.rows] == [other, job] and page.total == 2
            # Done is what Ended: a job canceled before anything ran did none of its work.
            canceled = page.rows[1]
            assert (canceled.tasks_total, canceled.tasks_done, canceled.tasks_didnt_run) == (
                2,
                0,
                2,
            )
            assert await reader.job_position(job) == 1
        finally:
            await reader.close()

    asyncio.run(read())


def _listen(url: str) -> Any:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("LISTEN batchdeck")
    return conn


def test_only_a_transaction_that_wrote_notifies_and_at_commit(pg_url: str) -> None:
    store = Store(pg_url)
    listener = _listen(pg_url)
    try:
        with store.write() as conn:
            conn.execute(select(task.c.id))  # reads only: wakes nobody
        with store.write() as conn:
            submit_in = conn.execute(task.select()).all()
        assert submit_in == []
        listener.execute("SELECT pg_notify('batchdeck', 'sentinel')")
        # Notifications arrive in commit order: anything the two transactions sent
        # would come before the sentinel.
        got = [n.payload for n in listener.notifies(stop_after=1)]
        assert got == ["sentinel"]
        job = flows.submit(store.transaction, two_tasks(), actor="t")
        assert job > 0
        assert [n.payload for n in listener.notifies(stop_after=1)] == [""]
    finally:
        listener.close()
        store.dispose()


def test_every_watch_sees_a_commit_and_a_lost_listen_connection_counts_as_a_change(
    pg_url: str,
) -> None:
    store = Store(pg_url)
    other = Store(pg_url)  # another process's connection, as far as the watch can tell
    try:
        a, b = store.watcher(), store.watcher()
        assert a.changed() and b.changed()  # a first look always reads
        flows.submit(other.transaction, two_tasks(), actor="t")
        until_sync(a.changed, "watch a to see the commit")
        until_sync(b.changed, "watch b to see the commit")
        assert not a.changed()
        # The server drops the LISTEN connection: the watch says "changed" (a lost
        # notification must not mean a lost cancel), listens again, and sees new commits.
        with other.write() as conn:
            killed = conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query = 'LISTEN batchdeck' AND datname = current_database()"
            ).all()
        assert killed == [(True,)]
        until_sync(a.changed, "watch a to report the lost connection as a change")
        until_sync(
            lambda: other.writer is not None and _listening(other), "the watch to listen again"
        )
        b.changed()
        flows.submit(other.transaction, two_tasks(), actor="t")
        until_sync(b.changed, "watch b to see a commit after the reconnect")
        a.close()
        b.close()
    finally:
        other.dispose()
        store.dispose()


def _listening(store: Store) -> bool:
    with store.read() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query = 'LISTEN batchdeck' AND datname = current_database()"
            ).scalar()
        )


def test_an_engine_on_postgresql_keeps_its_leases_in_database_time(pg_url: str) -> None:
    from engine.runtime.supervisor import Supervisor

    day = 86_400.0

    async def run() -> None:
        # This host's clock is a day behind the database's: leases must not care.
        engine = Supervisor(
            pg_url, {"batch-01": 2}, poll_interval=0.02, clock=lambda: time.time() - day
        )
        await engine.start()
        try:
            job = flows.submit(engine.store.transaction, two_tasks(), actor="t")
            await until(lambda: _job_status(engine.store, job) == "ended", "the job to end")
            with engine.store.read() as conn:
                beat, now = conn.exec_driver_sql(
                    "SELECT heartbeat_at, extract(epoch from clock_timestamp())::float8 "
                    "FROM server WHERE name = 'batch-01'"
                ).one()
            assert now - day / 2 < beat <= now  # the database's clock, not the engine's
            # Not taken for expired by the engine's own check of other engines' leases.
            assert engine.stats.errors == []
        finally:
            await engine.stop()

    asyncio.run(run())


def _job_status(store: Store, job: int) -> str:
    from engine.store.tables import job as job_table

    with store.read() as conn:
        return conn.execute(select(job_table.c.status).where(job_table.c.id == job)).scalar_one()


def test_db_now_is_the_engines_clock_on_sqlite(tmp_path: Path) -> None:
    from engine.store.dialect import db_now

    store = Store(tmp_path / "t.db")
    try:
        with store.read() as conn:
            assert db_now(conn, 42.0) == 42.0  # tests inject a fixed clock there
    finally:
        store.dispose()


def test_serve_on_an_unreachable_postgresql_fails_in_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    # Port 1 on this host: nothing listens there.
    url = "postgresql://alice:s3cret@127.0.0.1:1/batch"
    res = subprocess.run(
        [sys.executable, "-c", "from tui.cli import main; main()", "serve", "--db", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert "127.0.0.1" in lines[0] and "s3cret" not in res.stderr + res.stdout


def test_settings_rerun_and_hold_on_postgresql(pg_url: str) -> None:
    from engine.flows import base as flows
    from engine.flows.rerun import rerun

    store = Store(pg_url)
    try:
        with store.transaction() as sql:
            setting_flows.store(sql, "stuck_seconds", "60")
            setting_flows.store(sql, "stuck_seconds", "90")  # the upsert updates the row
            stuck = setting_flows.get(sql, "stuck_seconds")
            assert bounded("stuck_seconds", stuck) == 90.0
        job = flows.submit(store.transaction, two_tasks(), actor="alice")
        assert request_flows.hold(store.transaction, job, actor="alice") == f"Job {job} Withhold"
        assert (
            request_flows.release(store.transaction, job, actor="alice")
            == f"Job {job} released (Waiting)"
        )
        flows.cancel(store.transaction, job, actor="alice")
        again = rerun(store.transaction, job, actor="alice")
        with store.read() as conn:
            rows = conn.execute(
                task.select().where(task.c.job_id == again).order_by(task.c.seq)
            ).all()
        assert [(r.name, r.status) for r in rows] == [("first", "ready"), ("second", "waiting")]
    finally:
        store.dispose()


@pytest.mark.parametrize("inline", [False, True])
def test_a_console_whose_clock_is_off_judges_leases_on_the_database_clock(
    pg_url: str, inline: bool
) -> None:
    """Engines on PostgreSQL renew their leases in the database's time: a console on a
    host a day ahead or behind still sees a fresh lease as live, with its true age, and
    an old one as gone."""
    from engine.runtime import tick as batch

    day = 86_400.0
    store = Store(pg_url)
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 2}, "e1", at=0.0)

    async def run(skew: float) -> tuple[Any, Any]:
        reader = Reader(pg_url, inline=inline)
        try:
            now = time.time() + skew
            (s,) = await reader.servers(now)
            return s, (s.lease_age(now), await reader.engine_health(now=now))
        finally:
            await reader.close()

    try:
        for skew in (day, -day):
            s, (age, health) = asyncio.run(run(skew))
            assert s.live, skew
            assert age < 60, (skew, age)
            assert health.state == "serving" and health.servers == ("batch-01",), skew
        with store.write() as conn:  # the lease last renewed two hours ago, database time
            conn.exec_driver_sql("UPDATE server SET heartbeat_at = heartbeat_at - 7200")
        s, (age, health) = asyncio.run(run(-day))
        assert not s.live and 7100 < age < 7300
        assert health.state == "gone"
    finally:
        store.dispose()


def test_a_watch_ignores_only_the_commits_of_its_own_tag(pg_url: str) -> None:
    """An engine's ticks notify with its tag, which its own watch ignores: one watch
    that hears everything shows the notification was delivered, the ignoring one stays
    quiet; an untagged commit (a cancel from the command line) still reaches it."""
    store = Store(pg_url)
    try:
        mine, everyone = store.watcher(), store.watcher()
        mine.ignore("tick me")
        assert mine.changed() and everyone.changed()  # a first look always reads
        with store.write(tag="tick me") as conn:
            conn.exec_driver_sql("UPDATE meta SET value = value")
        until_sync(everyone.changed, "the tagged commit's notification")
        assert not mine.changed()
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE meta SET value = value")
        until_sync(mine.changed, "an untagged commit to reach the ignoring watch")
        mine.close()
        everyone.close()
    finally:
        store.dispose()


def test_a_claim_on_postgresql_does_not_walk_the_ended_tasks_of_its_job(pg_url: str) -> None:
    """Statistics lag a running job: PostgreSQL, believing every task still Ready, walked
    the primary key from the job's first task through every task already ended, so each
    claim cost more as the job went on. The Ready index is the planner's way in whatever
    the statistics say."""
    from sqlalchemy.dialects import postgresql

    from engine.runtime.tick import _READY
    from engine.store.prepared import CompiledText

    store = Store(pg_url)
    try:
        tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 0}) for i in range(2000))
        flows.submit(
            store.transaction, Recipe(name="wide", path=None, system=False, tasks=tasks), actor="t"
        )
        with store.write() as conn:
            conn.exec_driver_sql("ANALYZE task")
            conn.exec_driver_sql("ANALYZE job")
            # 3 in 4 ended since the statistics were taken, as in a running job.
            conn.exec_driver_sql("UPDATE task SET status = 'ended' WHERE id <= 1500")
        claim = CompiledText(_READY.stmt, postgresql.psycopg.dialect())
        with store.write() as conn:
            raw = conn.connection.driver_connection
            plan = raw.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + claim.sql, claim.params({"taken": [], "n": 64})
            ).fetchall()
    finally:
        store.dispose()
    lines = [row[0] for row in plan]
    assert any("ix_task_ready" in line for line in lines), lines
    assert not any("Rows Removed by Filter" in line for line in lines), lines


def test_a_version_6_database_on_postgresql_gets_ready_tasks_indexed_by_id(pg_url: str) -> None:
    old = Store(pg_url)
    with old.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_task_ready_by_id")
        conn.exec_driver_sql(
            "CREATE INDEX ix_task_ready ON task (status, id) WHERE status = 'ready'"
        )
        conn.exec_driver_sql("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    old.dispose()
    store = Store(pg_url)
    try:
        with store.read() as conn:
            indexes = dict(
                conn.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'task'"
                ).all()
            )
            version = conn.exec_driver_sql("SELECT value FROM meta").scalar_one()
    finally:
        store.dispose()
    assert version == str(SCHEMA_VERSION)
    assert "ix_task_ready" not in indexes
    assert indexes["ix_task_ready_by_id"].endswith("(id) WHERE ((status)::text = 'ready'::text)")


def test_the_command_line_on_postgresql_imports_no_database_layer(
    pg_url: str, tmp_path: Path
) -> None:
    """list, show, servers and a cancel (refused, and one that goes ahead) run the
    statements' rendered text through psycopg, as SQLite's light path does through
    sqlite3: no SQLAlchemy, no SQLModel."""
    import json

    from tests.probe_support import probe

    store = Store(pg_url)
    recipe = Recipe(
        name="nightly", path=None, system=False, tasks=(TaskSpec("t", "wait", (), {"seconds": 60}),)
    )
    try:
        first, second = (flows.submit(store.transaction, recipe, actor="ops") for _ in range(2))
        flows.cancel(store.transaction, first, actor="ops")
    finally:
        store.dispose()
    got = probe(pg_url, "list", "--json")
    assert got.heavy == "HEAVY - 0", got.err
    assert [(j["id"], j["status"]) for j in json.loads(got.out)] == [
        (second, "waiting"),
        (first, "canceled"),
    ]
    got = probe(pg_url, "show", str(first), "--json")
    assert got.heavy == "HEAVY - 0" and json.loads(got.out)["canceled_by"] == "ops"
    got = probe(pg_url, "servers", "--json")
    assert got.heavy == "HEAVY - 0" and json.loads(got.out) == []
    got = probe(pg_url, "cancel", str(first))
    assert got.heavy == "HEAVY - 1" and f"Job {first} already Canceled" in got.err
    got = probe(pg_url, "cancel", str(second), "--reason", "typo")
    assert got.heavy == "HEAVY - 0" and got.out.strip() == f"Job {second} Canceled"
    got = probe(pg_url, "show", str(second), "--json")
    assert json.loads(got.out)["cancel_reason"].endswith(": typo")


def test_a_big_job_submitted_on_postgresql_has_the_task_statistics_taken(pg_url: str) -> None:
    """A fresh table has no statistics until autovacuum's ANALYZE comes (up to a minute
    later); a job of thousands of tasks is claimed meanwhile. Its submit takes them."""
    store = Store(pg_url)
    try:
        tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 0}) for i in range(1500))
        flows.submit(
            store.transaction, Recipe(name="wide", path=None, system=False, tasks=tasks), actor="t"
        )
        small = (TaskSpec("one", "wait", (), {"seconds": 0}),)
        flows.submit(
            store.transaction, Recipe(name="small", path=None, system=False, tasks=small), actor="t"
        )
        with store.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = 'task'::regclass"
            ).scalar_one()
    finally:
        store.dispose()
    assert rows == 1500  # taken in the big job's submit, not again for the small one


def test_a_claim_on_postgresql_walks_the_ready_tasks_in_order_without_sorting_them(
    pg_url: str,
) -> None:
    """The claim of a new job whose table nobody analyzed by hand: 3 in 4 of its tasks
    ended, it reads the next Ready ones by the Ready index in id order, never every
    Ready task of the job sorted (5-9 ms a claim at 10,000 Ready); and it claims, writes
    the event rows and moves the tasks in one statement."""
    import psycopg
    from sqlalchemy.dialects import postgresql

    from engine.runtime.tick import _CLAIM_PG, claim
    from engine.store.prepared import CompiledText

    store = Store(pg_url)
    try:
        tasks = tuple(TaskSpec(f"t{i}", "wait", (), {"seconds": 0}) for i in range(2000))
        job_id = flows.submit(
            store.transaction, Recipe(name="wide", path=None, system=False, tasks=tasks), actor="t"
        )
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE task SET status = 'ended' WHERE id <= 1500")
        statement = CompiledText(_CLAIM_PG.stmt, postgresql.psycopg.dialect())
        params = {"taken": [], "n": 64, "server": "s", "token": "k"}
        params |= {"m_at": 1.0, "m_actor": "engine", "m_reason": "r"}
        with psycopg.connect(pg_url) as raw:  # EXPLAIN ANALYZE runs it: rolled back
            plan = raw.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + statement.sql, statement.params(params)
            ).fetchall()
            raw.rollback()
        with store.write() as conn:
            claimed = claim(conn, {"s": 3, "s2": 2}, at=2.0, token="tok")
        with store.read() as conn:
            moved = conn.exec_driver_sql(
                "SELECT id, status, server, claim_token FROM task WHERE status = 'executing' "
                "ORDER BY id"
            ).all()
            events = conn.exec_driver_sql(
                "SELECT task_id, from_status, to_status, server, reason FROM event "
                "WHERE kind = 'status' AND task_id IS NOT NULL ORDER BY task_id"
            ).all()
            job_status = conn.exec_driver_sql(
                f"SELECT status FROM job WHERE id = {job_id}"
            ).scalar_one()
    finally:
        store.dispose()
    lines = [row[0] for row in plan]
    assert any("Index Scan using ix_task_ready_by_id" in line for line in lines), lines
    assert not any("Sort Key: task.id" in line for line in lines), lines
    assert [(c.task_id, c.server, c.token) for c in claimed] == [
        (1501, "s", "tok"),
        (1502, "s", "tok"),
        (1503, "s", "tok"),
        (1504, "s2", "tok"),
        (1505, "s2", "tok"),
    ]
    assert [tuple(r) for r in moved] == [(c.task_id, "executing", c.server, "tok") for c in claimed]
    assert [tuple(r) for r in events] == [
        (c.task_id, "ready", "executing", c.server, f"started on {c.server}") for c in claimed
    ]
    assert job_status == "executing"
