"""The console on the fixed scenario (no engine): list, selection, filters, refusals,
modals that back out, requests that need no engine (cancel a Waiting job, hold)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from textual.screen import ModalScreen
from textual.widgets import Button, Footer

from engine.core.refusal import Refusal
from engine.flows import base as flows
from engine.store.db import Store
from tests import scenario
from tests.engine_support import reading
from tests.screenshots import make_app, select, settle
from tests.tui_support import (
    RecordingApp,
    count_calls,
    one,
    painted,
    painted_job_row,
    press,
    said,
    shown,
    state,
    text_of,
)  # noqa: F401 - utc: autouse
from tests.waiting import until
from tui.app import BatchdeckApp
from tui.modals.abort import ConfirmAbort
from tui.modals.cancel import ConfirmCancel
from tui.modals.cancel_tree import ConfirmCancelTree
from tui.screens.detail import JobDetailScreen
from tui.screens.jobs import JobListScreen
from tui.widgets.job_table import JobTable, layout


@pytest.fixture
def db(tmp_path: Path) -> str:
    return scenario.build(tmp_path / "scenario.db")


def table(app: BatchdeckApp) -> JobTable:
    return app.screen.query_one(JobTable)


def lines(t: JobTable) -> list[str]:
    return [t.render_line(y).text for y in range(t.size.height)]


async def test_list_shows_jobs_with_status_labels(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        assert t.total == 14
        text = "\n".join(lines(t))
        for word in (
            "Executing",
            "Canceling",
            "Waiting",
            "Withhold",
            "Error",
            "Canceled",
            "Ended",
            "bulk-leads",
            "[sys] maintenance",
            "4m50s",
            "alice",
        ):
            assert word in text
        assert t.selected_id == 14  # newest first, cursor on the first row


async def test_80x24_keeps_status_column_and_footer(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        t = table(app)
        header = lines(t)[0]
        assert "Status" in header and "ID" in header
        assert any("Executing" in line for line in lines(t))
        footer = app.screen.query_one(Footer)
        assert footer.region.bottom == 24 and footer.region.height == 1
    # Narrower still: the name shrinks and extras drop, the status stays.
    for width in (80, 60, 40):
        keys = [c.key for c in layout(width)]
        assert "status" in keys and "id" in keys


async def test_cursor_keys_and_selection_by_id(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        await press(pilot, "down", "down")
        assert t.selected_id == 12
        await press(pilot, "end")
        assert t.selected_id == 1
        await press(pilot, "home")
        assert t.selected_id == 14
        await press(pilot, "pagedown")
        assert t.selected_id == 1  # the page is taller than the list
        await press(pilot, "up")
        assert t.selected_id == 2


async def test_selection_follows_the_job_when_rows_move(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 5)
        t = table(app)
        before = t.cursor
        # Two new jobs arrive on top: job 5 moves down two rows, and stays selected.
        store = Store(db)
        for _ in range(2):
            from engine.flows import base as flows
            from engine.flows import requests as request_flows

            flows.submit(
                store.transaction,
                scenario.recipe("late", scenario.wait("x")),
                actor="dave",
                at=scenario.NOW,
            )
        await app.screen.reload_now()
        assert t.selected_id == 5 and t.cursor == before + 2
        assert t.row_at(t.cursor).id == 5
        # Sorted by status, a status change moves it far: still job 5.
        await press(pilot, "o", "o")  # id -> name -> status
        await settle(pilot)
        assert t.query_spec.sort == "status"
        await select(pilot, 14)
        request_flows.hold(store.transaction, 14, actor="alice", at=scenario.NOW)
        store.dispose()
        await app.screen.reload_now()
        assert t.selected_id == 14 and t.row_at(t.cursor).id == 14
        assert t.row_at(t.cursor).status == "withhold"


async def test_status_filter_text_filter_and_sort(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        await press(pilot, "f")  # running: Executing + Canceling
        await settle(pilot)
        assert t.total == 7
        assert {t.row_at(i).status for i in range(t.total)} == {"executing", "canceling"}
        await press(pilot, "f", "f")  # waiting, then failed
        await settle(pilot)
        assert t.query_spec.status_label == "failed"
        assert {t.row_at(i).status for i in range(t.total)} == {"error", "canceled"}
        await press(pilot, "escape")  # clears the filters
        await settle(pilot)
        assert t.total == 14
        await press(pilot, "slash", *"leads", "enter")
        await settle(pilot)
        assert t.total == 1 and t.selected_id == 2
        await press(pilot, "slash", "escape")  # escape in the box clears the text
        await settle(pilot)
        assert t.total == 14 and t.query_spec.text == ""
        await press(pilot, "o")  # by name, A to Z
        await settle(pilot)
        names = [t.row_at(i).name for i in range(t.total)]
        assert names == sorted(names)


async def test_refusals_are_notifications_and_change_nothing(db: str) -> None:
    app = make_app(db)
    before = state(db)
    async with app.run_test(size=(100, 30)) as pilot:
        for job_id, key, words in (
            (6, "c", "System jobs cannot be canceled"),
            (1, "c", "Job 1 already Ended — nothing to cancel"),
            (13, "c", "Job 13 is already Canceling: nothing to do"),
            (6, "a", "System jobs cannot be aborted"),
            (14, "a", "Job 14 is Waiting: nothing is running to abort"),
            (1, "A", "Job 1 already Ended — nothing to abort"),
            (11, "C", "Job 11 already Ended — nothing to cancel"),
            (2, "y", "No approval task is waiting in job 2"),
            (2, "n", "No approval task is waiting in job 2"),
            (2, "h", "Job 2 is Executing: only a Waiting job can be held"),
        ):
            await select(pilot, job_id)
            await press(pilot, key)
            await until(lambda w=words: said(app, w), words, pilot=pilot)
            assert not isinstance(app.screen, ModalScreen)
    assert state(db) == before


MODALS = (
    (2, "c", ConfirmCancel),
    (13, "a", ConfirmAbort),
    (2, "a", ConfirmAbort),
    (2, "A", ConfirmAbort),
    (9, "C", ConfirmCancelTree),
)


@pytest.mark.parametrize("in_detail", [False, True], ids=["list", "detail"])
async def test_escape_from_every_modal_changes_nothing(db: str, in_detail: bool) -> None:
    app = make_app(db)
    before = state(db)
    async with app.run_test(size=(100, 30)) as pilot:
        for job_id, key, kind in MODALS:
            await select(pilot, job_id)
            if in_detail:
                await press(pilot, "enter")
                await settle(pilot)
            await press(pilot, key)
            await shown(pilot, kind)
            await press(pilot, "escape")
            await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
            if in_detail:
                assert isinstance(app.screen, JobDetailScreen)
                await press(pilot, "escape")
            await settle(pilot)
            assert isinstance(app.screen, JobListScreen)
    assert state(db) == before


async def test_abort_modal_defaults_to_no(db: str) -> None:
    app = make_app(db)
    before = state(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 13)
        await press(pilot, "a")
        modal = await shown(pilot, ConfirmAbort)
        await pilot.pause()
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        assert "Abort job 13 stuck-canceling?" in text_of(modal.query_one(".dialog-title"))
        await press(pilot, "enter")  # on No
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
        await press(pilot, "a")
        await shown(pilot, ConfirmAbort)
        await press(pilot, "n")
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
    assert state(db) == before


async def test_tab_moves_between_the_abort_buttons_only(db: str) -> None:
    """Tried as a new user would: Tab, then Enter, does what the focused button says."""
    app = make_app(db)
    before = state(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 13)
        await press(pilot, "a")
        await shown(pilot, ConfirmAbort)
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "no"
        on_screen = painted(app)
        assert "Yes, abort [y]" in on_screen and "No [n]" in on_screen  # keys on the buttons
        await press(pilot, "tab")
        assert app.focused is not None and app.focused.id == "yes"  # not the task list
        await press(pilot, "tab")
        assert app.focused is not None and app.focused.id == "no"
        await press(pilot, "tab", "enter")  # on "Yes, abort"
        await until(lambda: said(app, "Aborting job 13: 1 task"), "the abort", pilot=pilot)
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
    # Yes was pressed: the task is being force-stopped (no engine here to finish it).
    assert one(db, "SELECT status FROM task WHERE job_id=13") == "aborting"
    assert one(db, "SELECT aborted_by FROM job WHERE id=13") == "alice"
    assert state(db)["jobs"] != before["jobs"]


async def test_cancel_a_waiting_job_with_a_reason(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 14)
        await press(pilot, "c")
        await shown(pilot, ConfirmCancel)
        await press(pilot, *"typo in recipe", "enter")
        await until(lambda: said(app, "Job 14 Canceled"), "the result", pilot=pilot)
        await settle(pilot)
        assert table(app).row_at(table(app).cursor).status == "canceled"
        row = painted_job_row(app, 14)
        assert row.startswith("▶") and "quarterly-ledger-export" in row and " Canceled " in row
    conn = sqlite3.connect(db)
    status, by, reason = conn.execute(
        "SELECT status, canceled_by, cancel_reason FROM job WHERE id=14"
    ).fetchone()
    conn.close()
    assert (status, by, reason) == ("canceled", "alice", "Job canceled by alice: typo in recipe")


async def test_hold_and_release(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 7)
        assert " Withhold " in painted_job_row(app, 7)
        await press(pilot, "h")
        await until(lambda: said(app, "Job 7 released (Waiting)"), "release", pilot=pilot)
        await until(lambda: " Waiting " in painted_job_row(app, 7), "the row", pilot=pilot)
        await press(pilot, "h")
        await until(lambda: said(app, "Job 7 Withhold"), "hold", pilot=pilot)
        await until(lambda: " Withhold " in painted_job_row(app, 7), "the row", pilot=pilot)


async def test_detail_screen_and_child_jobs(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 9)
        await press(pilot, "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobDetailScreen) and screen.job_id == 9
        assert [c.id for c in screen.detail.children] == [10, 11]
        await press(pilot, "tab")  # to the child table
        await press(pilot, "enter")  # opens child 10
        await until(
            lambda: isinstance(app.screen, JobDetailScreen) and app.screen.job_id == 10,
            "the child's detail",
            pilot=pilot,
        )
        await settle(pilot)
        assert "job 9 (sync)" in text_of(app.screen.query_one("#fields"))
        await press(pilot, "escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, JobListScreen)


async def test_canceled_job_detail_shows_who_and_why(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, 3)
        await press(pilot, "enter")
        await settle(pilot)
        fields = text_of(app.screen.query_one("#fields"))
        assert "Job canceled by bob: wrong sandbox" in fields
        assert "2023-11-14 22:33:20 by bob" in fields


async def test_help_servers_and_palette(db: str) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 2)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Cancel job 2",
            "Abort job 2",
            "Enhanced abort of job 2",
            "Cancel job 2 with children",
            "Servers",
            "Help",
        ):
            assert title in titles
        await press(pilot, "question_mark")
        await shown(pilot, ModalScreen)
        await press(pilot, "escape")
        await press(pilot, "s")
        await settle(pilot)
        assert app.screen.title == "Servers"
        await press(pilot, "escape")
        await settle(pilot)
        assert isinstance(app.screen, JobListScreen)


def _waiting_jobs(path: Path, n: int, *, digits: int) -> Path:
    """A database of ``n`` Waiting jobs, bulk-created (as insert_job creates them; no
    status transition)."""
    Store(path).dispose()
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO job(name, status, system, submitted_by, submitted_at, orphaned) "
        "VALUES (?, 'waiting', 0, 'alice', ?, 0)",
        ((f"job-{i:0{digits}d}", scenario.T0 + i) for i in range(n)),
    )
    conn.commit()
    conn.close()
    return path


def test_hundred_thousand_jobs_open_fast(tmp_path: Path) -> None:
    import asyncio

    path = _waiting_jobs(tmp_path / "big.db", 100_000, digits=6)

    async def run() -> None:
        app = RecordingApp(
            str(path), mode_label="test", clock=lambda: scenario.NOW, actor="alice", live=False
        )
        fetches = count_calls(app.data, "list_jobs")
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            t = table(app)
            assert t.total == 100_000 and t.selected_id == 100_000
            # Fast because lazy: one page read, a window of rows, not the list.
            assert len(fetches) == 1 and len(t._cache) < 200  # noqa: SLF001
            await press(pilot, "end")
            await until(lambda: t.selected_id == 1, "the last row", pilot=pilot)
            await press(pilot, "pageup")
            await until(
                lambda: t.selected_id is not None and t.selected_id > 1, "a page up", pilot=pilot
            )
            assert len(fetches) < 20

    asyncio.run(run())


def test_down_reads_nothing_in_the_window_and_the_next_page_is_read_ahead(
    tmp_path: Path,
) -> None:
    import asyncio

    path = _waiting_jobs(tmp_path / "many.db", 2_000, digits=4)

    async def run() -> None:
        app = RecordingApp(
            str(path), mode_label="test", clock=lambda: scenario.NOW, actor="alice", live=False
        )
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            t = table(app)
            fetches = count_calls(app.data, "list_jobs")
            for _ in range(3):
                await press(pilot, "down")
            assert t.selected_id == 2_000 - 3 and fetches == []  # rows in the window: no read
            h = t.visible_rows
            for n in range(1, 8):
                await press(pilot, "pagedown")
                await until(lambda: not t._fetching(), "the read ahead", pilot=pilot)  # noqa: SLF001
                top = int(t.scroll_y)
                # The next page down finds its rows loaded, whatever this one needed.
                assert t._cache_start + len(t._cache) >= top + 2 * h, n  # noqa: SLF001
                assert t.row_at(t.cursor) is not None
                assert painted_job_row(app, t.selected_id) != ""
            assert 0 < len(fetches) < 7  # a read every few pages, not one per key

    asyncio.run(run())


def test_one_preview_read_gives_the_job_the_refusal_and_the_plan(db: str) -> None:
    store = Store(db)
    try:
        bulk = reading(store, flows.cancel_preview, 2)  # extract Ended, load running, report waits
        assert (bulk.job.name, bulk.refusal, bulk.not_started, bulk.running) == (
            "bulk-leads",
            None,
            1,
            1,
        )
        system = reading(store, flows.cancel_preview, 6).refusal
        assert str(system) == "System jobs cannot be canceled"
        assert str(reading(store, flows.cancel_preview, 1).refusal) == "Job 1 already Ended"
        assert reading(store, flows.cancel_preview, 99) == flows.CancelPreview(
            None, Refusal("missing", "Job 99 does not exist")
        )
    finally:
        store.dispose()
