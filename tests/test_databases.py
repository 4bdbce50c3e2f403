"""One data layer, two databases: what ``--db`` accepts, the per-process gateway, and the
statements of submit, cancel, abort and the readers run on a real PostgreSQL.

PostgreSQL comes from the ``pgserver`` wheel (PostgreSQL 16), started once per session
(``pg_server``); each test gets a database of its own. As root, pgserver runs the server
as a system user ``pgserver`` it creates, and opens the directories above its data
directory to others: the data directory is made under /tmp for that reason.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from engine import control
from engine.db import DatabaseError, Store, normalize_db, shared_store
from engine.dburl import parse_db
from engine.query import Reader
from engine.recipes import Recipe, TaskSpec
from engine.submit import submit
from engine.tables import task

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
    job = submit(Store(db), two_tasks(), actor="t")  # another connection commits
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
        job = submit(store, two_tasks(), actor="alice")
        with store.read() as conn:
            rows = conn.execute(
                task.select().where(task.c.job_id == job).order_by(task.c.seq)
            ).all()
        assert [(r.name, r.status) for r in rows] == [("first", "ready"), ("second", "waiting")]
        with pytest.raises(control.Refused, match="nothing is running to abort"):
            control.abort_preview(store, job)
        assert control.cancel(store, job, actor="alice", reason="wrong data") == (
            f"Job {job} Canceled"
        )
        with pytest.raises(control.Refused, match="already Canceled"):
            control.cancel(store, job, actor="alice")
        other = submit(store, two_tasks(), actor="alice")
        plan = control.bulk_plan(store, "cancel", actor="alice", name="pa*")
        assert [j.job.id for j in plan.act] == [other]  # the canceled job is not listed
        assert control.bulk_plan(store, "cancel", actor="alice", name="x*").jobs == []
    finally:
        store.dispose()

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
            assert page.rows[1].tasks_total == 2 and page.rows[1].tasks_done == 2
            assert await reader.job_position(job) == 1
        finally:
            await reader.close()

    asyncio.run(read())


def test_an_engine_on_postgresql_is_refused_in_one_line(pg_url: str) -> None:
    from engine.runtime import Engine

    async def start() -> None:
        await Engine(pg_url, {"batch-01": 1}).start()

    with pytest.raises(DatabaseError, match="not supported yet"):
        asyncio.run(start())


def test_settings_rerun_and_hold_on_postgresql(pg_url: str) -> None:
    from engine import settings
    from engine.rerun import rerun

    store = Store(pg_url)
    try:
        with store.write() as conn:
            settings.put(conn, "stuck_seconds", "60")
            settings.put(conn, "stuck_seconds", "90")  # the upsert updates the row
            assert settings.stuck_seconds(conn) == 90.0
        job = submit(store, two_tasks(), actor="alice")
        assert control.hold(store, job, actor="alice") == f"Job {job} Withhold"
        assert control.release(store, job, actor="alice") == f"Job {job} released (Waiting)"
        control.cancel(store, job, actor="alice")
        again = rerun(store, job, actor="alice")
        with store.read() as conn:
            rows = conn.execute(
                task.select().where(task.c.job_id == again).order_by(task.c.seq)
            ).all()
        assert [(r.name, r.status) for r in rows] == [("first", "ready"), ("second", "waiting")]
    finally:
        store.dispose()
