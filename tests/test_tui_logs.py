"""The console's log screen: a million lines readable in order, read a screen at a time;
new lines followed live from an engine; search, wrap, attempts, escape. Real engines,
real shells, real SQLite files, real Textual apps."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.runtime.supervisor import Supervisor
from engine.store.db import Store
from engine.store.log_store import LogItem, write_logs
from tests.engine_support import job_status, submit_tasks
from tests.screenshots import make_app, select, settle
from tests.tui_support import RecordingApp, painted, press, said, shown, utc  # noqa: F401
from tests.waiting import until
from tui.screens.jobs import JobListScreen
from tui.screens.logs import LogScreen


def _rows(app: RecordingApp) -> list[str]:
    """The log's painted rows (between the title line and the footer)."""
    view = app.screen.query_one("#log")
    lines = painted(app).split("\n")
    return [line.rstrip() for line in lines[view.region.y : view.region.bottom]]


async def test_a_million_lines_are_all_readable_in_the_console_in_order(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store(db)
    job = submit_tasks(
        store,
        tmp_path,
        "million",
        [{"name": "t", "action": "shell", "command": ["seq", "1000000"]}],
    )
    async with Supervisor(str(db), {"b": 1}) as engine:
        await until(lambda: job_status(store, job) == "ended", "the job to end")
        await engine.wait_idle(30)
    store.dispose()

    app = RecordingApp(str(db), mode_label="test", live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await select(pilot, job)
        await press(pilot, "l")
        screen = await shown(pilot, LogScreen)
        await settle(pilot)
        source = screen.view.source
        assert source.total == 1_000_001  # the numbers and the action's "started pid"
        # It opened at the end, having read the index and the chunks in view only.
        assert _rows(app)[-1] == "t | 1000000"
        assert len(source._cache) < 10  # noqa: SLF001 - read on demand, not loaded whole
        # Every line, through the screen's own reader, in order and once.
        lines = [line for i in range(len(source.refs)) for line in source.lines_of(i)]
        assert lines[1:] == [str(n) for n in range(1, 1_000_001)]
        await press(pilot, "g")
        await pilot.pause()
        assert _rows(app)[1:3] == ["t | 1", "t | 2"]
        await press(pilot, "slash", *"543210", "enter")
        await until(lambda: "t | 543210" in _rows(app), "the match in view", pilot=pilot)
        assert "/543210: line 543,211" in painted(app)


async def test_the_log_screen_follows_a_running_task_live(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    go = tmp_path / "go"
    store = Store(db)
    script = f"echo first; while [ ! -f {go} ]; do sleep 0.02; done; echo second"
    job = submit_tasks(
        store, tmp_path, "live", [{"name": "t", "action": "shell", "command": ["sh", "-c", script]}]
    )
    async with Supervisor(str(db), {"b": 1}, poll_interval=0.02):
        app = RecordingApp(str(db), mode_label="test", live=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await shown(pilot, JobListScreen)
            await until(lambda: job_status(store, job) == "executing", "the task to run")
            await select(pilot, job)
            await press(pilot, "l")
            await shown(pilot, LogScreen)
            await until(lambda: "t | first" in _rows(app), "the first line", pilot=pilot)
            assert "following" in painted(app)
            go.touch()
            await until(lambda: "t | second" in _rows(app), "the line written later", pilot=pilot)
            rows = [r for r in _rows(app) if r]
            assert rows[-2:] == ["t | first", "t | second"]
            await press(pilot, "escape")
            await shown(pilot, JobListScreen)
    store.dispose()


async def test_attempts_search_wrap_and_escape(tmp_path: Path, scenario_db_copy: str) -> None:
    store = Store(scenario_db_copy)
    with store.write() as conn:
        tid, job = conn.exec_driver_sql(
            "SELECT id, job_id FROM task WHERE name = 'sync-files'"
        ).one()
        conn.exec_driver_sql("UPDATE task SET attempt = 2 WHERE id = ?", (tid,))
        write_logs(conn, [LogItem(tid, job, 2, "", [1, "out", 1, "the second try"])], at=1.0)
    store.dispose()
    app = make_app(scenario_db_copy)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, job)
        await press(pilot, "enter")
        await settle(pilot)
        await press(pilot, "l")
        await shown(pilot, LogScreen)
        await settle(pilot)
        assert "attempt 2 of 2" in painted(app) and "the second try" in _rows(app)
        await press(pilot, "left_square_bracket")
        await until(lambda: "attempt 1 of 2" in painted(app), "the first attempt", pilot=pilot)
        # Opened at its end, once laid out.
        await until(lambda: "file-030.dat" in _rows(app), "its last line", pilot=pilot)
        await press(pilot, "right_square_bracket")
        await until(lambda: "attempt 2 of 2" in painted(app), "back to the second", pilot=pilot)
        await press(pilot, "right_square_bracket")
        assert said(app, "no other attempt that way")

        await press(pilot, "slash", *"nowhere-to-be-found", "enter")
        await until(lambda: said(app, "no more matches"), "no match said", pilot=pilot)
        await press(pilot, "w")
        await until(lambda: "wrapped" in painted(app), "wrapped", pilot=pilot)
        await press(pilot, "slash")
        await press(pilot, "escape")  # closes the search box, stays
        assert isinstance(app.screen, LogScreen)
        await press(pilot, "escape")
        await until(lambda: not isinstance(app.screen, LogScreen), "back", pilot=pilot)


@pytest.fixture
def scenario_db_copy(tmp_path: Path) -> str:
    from tests import scenario

    return scenario.build(tmp_path / "scenario.db")


async def test_a_console_follows_live_a_log_written_on_another_host_on_postgresql(
    tmp_path: Path, pg_server: object
) -> None:
    """Host B: a ``batchdeck serve`` process runs the task. Host A: a console attached to
    the same PostgreSQL database opens its log and sees each line as it is written."""
    from tests.pg_support import new_pg_database, pg_deck

    deck = pg_deck(tmp_path, new_pg_database(pg_server))
    go = tmp_path / "go"
    script = f"echo first; while [ ! -f {go} ]; do sleep 0.05; done; echo second"
    try:
        deck.serve("--server", "host-b:2")
        store = Store(deck.db)
        try:
            job = submit_tasks(
                store,
                tmp_path,
                "live",
                [{"name": "t", "action": "shell", "command": ["sh", "-c", script]}],
            )
            await until(lambda: job_status(store, job) == "executing", "the task to run on host B")
            app = RecordingApp(deck.db, mode_label="attached", live=True)
            async with app.run_test(size=(80, 24)) as pilot:
                await shown(pilot, JobListScreen)
                await select(pilot, job)
                await press(pilot, "l")
                await shown(pilot, LogScreen)
                await until(lambda: "t | first" in _rows(app), "the first line", pilot=pilot)
                assert "following" in painted(app)
                go.touch()
                await until(
                    lambda: "t | second" in _rows(app), "the line written later", pilot=pilot
                )
                assert [r for r in _rows(app) if r][-2:] == ["t | first", "t | second"]
        finally:
            store.dispose()
    finally:
        deck.close()
