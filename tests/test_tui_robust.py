"""The console under load and trouble: a job of 300 tasks refreshes without rewriting its
table, a failing read never ends the console, one request at a time says so, a changed
filter drops a stale page, y/n ask first, and a quit during the engine's start leaves no
lease behind.

No timed assertions: the database is polled in bounded loops; work is counted, not timed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from textual.app import App, ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable

from engine.flows import base as flows
from engine.recipes import load_recipe
from engine.runtime.supervisor import Supervisor
from engine.store.db import Store
from tests import scenario
from tests.screenshots import make_app, select, settle
from tests.tui_support import (  # noqa: F401 - utc: autouse
    RecordingApp,
    count_calls,
    embedded,
    one,
    painted,
    press,
    said,
    shown,
    state,
    utc,
)
from tests.waiting import until
from tui.modals.approval import ConfirmApproval
from tui.modals.cancel import ConfirmCancel
from tui.screens.detail import JobDetailScreen
from tui.screens.jobs import JobListScreen
from tui.widgets.cells import RowCells
from tui.widgets.job_table import JobTable

TASKS = 300
STARTED = 10


def locked() -> OperationalError:
    """What SQLAlchemy raises on a busy database: several lines of text."""
    return OperationalError("SELECT 1", (), sqlite3.OperationalError("database is locked"))


def fail_once(obj: Any, name: str, error: Exception | None = None) -> list[int]:
    """Make ``obj.name`` (an async method) raise once; returns a list counting the calls."""
    orig = getattr(obj, name)
    calls: list[int] = []

    async def flaky(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error or locked()
        return await orig(*args, **kw)

    setattr(obj, name, flaky)
    return calls


@pytest.fixture
def db(tmp_path: Path) -> str:
    return scenario.build(tmp_path / "scenario.db")


@pytest.fixture
def big(tmp_path: Path) -> tuple[str, int]:
    """A database with one job of 300 tasks, 10 of them running since T0 (no engine)."""
    b = scenario.Builder(tmp_path / "big.db")
    from engine.runtime import tick as batch

    with b.store.write() as conn:
        batch.claim_leases(conn, scenario.SERVERS, scenario.OWNER, at=scenario.T0)
    job = b.submit(
        scenario.recipe("wide", *(scenario.wait(f"part-{i:03d}") for i in range(TASKS))),
        scenario.T0,
    )
    with b.store.write() as conn:
        batch.claim(conn, {"batch-01": STARTED}, at=scenario.T0)
    b.store.dispose()
    return b.path, job


class CellSpy:
    """Counts the DataTable.update_cell calls of one table."""

    def __init__(self, table: DataTable) -> None:
        self.calls: list[tuple[str, str, bool]] = []
        orig = table.update_cell

        def spy(row: Any, column: Any, value: Any, *, update_width: bool = False) -> None:
            self.calls.append(
                (
                    str(getattr(row, "value", row)),
                    str(getattr(column, "value", column)),
                    update_width,
                )
            )
            orig(row, column, value, update_width=update_width)

        table.update_cell = spy  # type: ignore[method-assign]


async def test_a_job_of_300_tasks_refreshes_only_what_changed(big: tuple[str, int]) -> None:
    path, job = big
    now = [scenario.NOW]
    app = RecordingApp(path, mode_label="test", clock=lambda: now[0], actor="alice", live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_job(job)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobDetailScreen) and len(screen.detail.tasks) == TASKS
        table = screen.query_one("#tasks", DataTable)
        assert table.row_count == TASKS
        spy = CellSpy(table)
        reads = count_calls(app.data.reader, "job_detail")
        for _ in range(3):  # the database did not change: no cell is written
            await screen.reload_now()
        assert spy.calls == []
        assert len(reads) == 3
        # A second passes: the tick moves the running tasks' durations from what was read.
        now[0] += 1
        await screen.tick()
        assert len(reads) == 3  # no read
        assert sorted({c for _, c, _ in spy.calls}) == ["duration"]
        assert len(spy.calls) == STARTED
        assert not any(w for _, _, w in spy.calls)
        # One task reports progress: its two cells, and only them, are written.
        spy.calls.clear()
        running = next(t for t in screen.detail.tasks if t.status == "executing")
        message = "imported 5 of 10 rows, the rest follows"
        b = scenario.Builder(Path(path))
        b.progress(running.id, 5, 10, "rows", message)
        b.store.dispose()
        await screen.reload_now()
        assert sorted(c for _, c, _ in spy.calls) == ["message", "progress"]
        assert {r for r, _, _ in spy.calls} == {str(running.id)}
        # The wider message widened its column (one cell measured, not the column).
        assert [w for _, c, w in spy.calls if c == "message"] == [True]
        await pilot.pause()  # widths are measured when the table is idle
        assert table.columns[
            next(k for k in table.columns if k.value == "message")
        ].content_width >= len(message)
        await screen.reload_now()
        assert len(spy.calls) == 2


async def test_a_failing_refresh_keeps_the_view_and_tries_again(db: str) -> None:
    app = RecordingApp(db, mode_label="test", clock=lambda: scenario.NOW, actor="alice")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobListScreen)
        t = screen.query_one(JobTable)
        shown = [r.id for r in t._cache]  # noqa: SLF001
        calls = fail_once(app.data.reader, "status_counts")
        screen.request_reload()
        await until(lambda: said(app, "could not refresh"), "the notification", pilot=pilot)
        message = next(m for m, _ in app.messages if "could not refresh" in m)
        assert message == "could not refresh: (sqlite3.OperationalError) database is locked"
        assert app.is_running and [r.id for r in t._cache] == shown  # noqa: SLF001
        # The next cycle tries again on its own, and succeeds.
        await until(lambda: len(calls) >= 2 and not screen._failing, "the retry", pilot=pilot)  # noqa: SLF001
        assert sum("could not refresh" in m for m, _ in app.messages) == 1
        # The detail screen too.
        await select(pilot, 2)
        await press(pilot, "enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        before = detail.detail
        fail_once(app.data.reader, "job_detail", RuntimeError("boom\nsecond line"))
        await detail.reload_now()
        assert said(app, "could not refresh: RuntimeError: boom")
        assert detail.detail is before and app.is_running
        await detail.reload_now()
        assert detail.detail is not before and detail.detail.job.id == 2


async def test_a_failing_read_in_a_request_is_a_notification(db: str) -> None:
    app = make_app(db)
    before = state(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 14)
        fail_once(app.data, "reading")  # the cancel preview: one read
        await press(pilot, "c")
        await until(
            lambda: said(app, "Could not cancel: (sqlite3.OperationalError) database is locked"),
            "the notification",
            pilot=pilot,
        )
        assert app.is_running and not isinstance(app.screen, ModalScreen)
        await until(lambda: not app.flow_busy(), "the flow to end", pilot=pilot)
        await press(pilot, "c")  # the next try works
        await shown(pilot, ConfirmCancel)
        await press(pilot, "escape")
        # The abort preview goes through the same handling.
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
        await select(pilot, 13)
        fail_once(app.data, "reading")
        await press(pilot, "a")
        await until(
            lambda: said(app, "Could not abort: (sqlite3.OperationalError)"),
            "the abort notification",
            pilot=pilot,
        )
        assert app.is_running and not isinstance(app.screen, ModalScreen)
    assert state(db) == before


async def test_one_request_at_a_time_is_said_and_open_still_works(db: str) -> None:
    app = make_app(db)
    gate = asyncio.Event()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 7)
        orig = app.data.reader.job

        async def slow(job_id: int) -> Any:
            await gate.wait()
            return await orig(job_id)

        app.data.reader.job = slow  # type: ignore[method-assign]
        await press(pilot, "h")  # hold/release: waits on the slow read
        await until(app.flow_busy, "the flow to start", pilot=pilot)
        await press(pilot, "c")
        await until(lambda: said(app, "Another request is in progress"), "the message", pilot=pilot)
        await press(pilot, "enter")  # reading is never blocked
        await shown(pilot, JobDetailScreen)
        gate.set()
        await until(lambda: said(app, "Job 7 released (Waiting)"), "the release", pilot=pilot)


async def test_a_changed_filter_drops_the_page_of_the_old_one(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        t = app.screen.query_one(JobTable)
        gate = asyncio.Event()
        orig = app.data.list_jobs

        held = asyncio.Event()

        async def slow(offset: int, limit: int, query: Any) -> Any:
            page = await orig(offset, limit, query)
            if not query.text:
                held.set()
                await gate.wait()
            return page

        app.data.list_jobs = slow  # type: ignore[method-assign]
        old = asyncio.create_task(t.reload())
        await until(held.is_set, "the old query's page held at the gate", pilot=pilot)
        t.query_spec = replace(t.query_spec, text="child")  # a fetch for it starts at once
        gate.set()
        await old  # the old fetch was cancelled: not an error
        await settle(pilot)
        names = [r.name for r in t._cache]  # noqa: SLF001
        assert names and all("child" in n for n in names)  # the old page was never kept
        assert t.selected_id == t._cache[0].id  # noqa: SLF001
        # What is painted is the new query's rows.
        rows = [line for line in painted(app).splitlines() if "child-" in line]
        assert len(rows) == len(names) and not said(app, "could not refresh")


async def test_reject_asks_first_and_a_double_n_does_nothing(db: str) -> None:
    app = make_app(db)
    before = state(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 5)
        await press(pilot, "n")  # opens the confirmation (after a read: wait for it)...
        await shown(pilot, ConfirmApproval)
        await press(pilot, "n")  # ...and the same key again answers No
        await until(lambda: not app.flow_busy(), "the flow to end", pilot=pilot)
        assert not isinstance(app.screen, ModalScreen)
        assert state(db) == before
        await press(pilot, "n")
        modal = await shown(pilot, ConfirmApproval)
        await pilot.pause()
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        await press(pilot, "enter")  # the default: No
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
        assert state(db) == before and not modal.approve
        await press(pilot, "n")
        await shown(pilot, ConfirmApproval)
        await press(pilot, "y")
        await until(lambda: said(app, "Task approve of job 5 rejected"), "the result", pilot=pilot)
    assert one(db, "SELECT approval, approval_by FROM task WHERE job_id=5 AND name='approve'") == (
        "rejected",
        "alice",
    )


async def test_quitting_while_the_engine_starts_leaves_no_lease(tmp_path: Path) -> None:
    path = str(tmp_path / "quit.db")
    Store(path).dispose()
    (tmp_path / "wait.toml").write_text(
        'name = "w"\n[[task]]\nname = "sleep"\naction = "wait"\nseconds = 60\n'
    )
    store = Store(path)
    flows.submit(store.transaction, load_recipe(tmp_path / "wait.toml"), actor="alice")
    store.dispose()
    servers = {"batch-01": 2}
    engine = Supervisor(path, servers, poll_interval=0.02)
    gate = asyncio.Event()
    started = engine.start

    async def slow_start() -> None:
        await started()  # leases taken, the engine runs...
        await gate.wait()  # ...but the start has not returned yet

    engine.start = slow_start  # type: ignore[method-assign]
    app, host = embedded(path, servers, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            lambda: one(path, "SELECT lease_owner FROM server") == engine.owner,
            "the leases",
            pilot=pilot,
        )
        assert not host.running
        await press(pilot, "q")  # no confirmation: nothing reported running yet
        asyncio.get_running_loop().call_later(0.2, gate.set)
    assert one(path, "SELECT status, lease_owner FROM server WHERE name='batch-01'") == (
        "offline",
        None,
    )


class _OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable(id="t")


@pytest.mark.parametrize("how", ["rebuilt", "a cell grew"])
async def test_a_frame_painted_before_the_table_measures_shows_whole_cells(how: str) -> None:
    """DataTable caches painted cells under a key without the column widths: a frame drawn
    between writing rows and the table's idle-time measuring used to keep label-wide
    columns ("slee", "Aborte") for good (the detail screen of a finished job)."""
    app = _OneTable()
    async with app.run_test(size=(60, 6)) as pilot:
        table: DataTable[object] = app.query_one(DataTable)
        cells = RowCells(["task", "status"])
        table.add_column("Task", key="task")
        table.add_column("Status", key="status")
        if how == "rebuilt":
            cells.rebuild(table, {"1": ("sleep", "Aborted")})
        else:
            cells.rebuild(table, {"1": ("s", "Run")})
            await pilot.pause()
            cells.sync(table, {"1": ("sleep", "Aborted")})
        early = table.render_line(1).text  # painted before the table's idle handler
        await pilot.pause()
        for line in (early, table.render_line(1).text):
            assert line.split()[:2] == ["sleep", "Aborted"], line
