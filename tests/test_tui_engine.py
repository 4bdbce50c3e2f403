"""The console against a REAL engine on a temporary database (no mocks): the engine
runs inside the app (embedded) unless another one holds the lease (attached).

No timed assertions: the database is polled in bounded loops until the expected state.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.screen import ModalScreen
from textual.widgets import Button

from engine.flows import base as flows
from engine.runtime import tick as batch
from engine.runtime.supervisor import Supervisor
from engine.store.db import Store
from tests.screenshots import select, settle
from tests.tui_support import (  # noqa: F401 - utc: autouse
    RecordingApp,
    add,
    count_calls,
    job_status,
    make_db,
    one,
    painted,
    painted_job_row,
    press,
    said,
    shown,
    state,
    text_of,
    utc,
)
from tests.tui_support import embedded as embedded_app
from tests.waiting import until
from tui.launch import placement
from tui.modals.abort import ConfirmAbort
from tui.modals.approval import ConfirmApproval
from tui.modals.cancel import ConfirmCancel
from tui.modals.quit import ConfirmQuit
from tui.screens.detail import JobDetailScreen

SERVERS = {"batch-01": 4}

RECIPES = {
    "wait.toml": """
name = "long-wait"
[[task]]
name = "sleep"
action = "wait"
seconds = 120
""",
    "stubborn.toml": """
name = "stubborn-shell"
[[task]]
name = "sleeper"
action = "shell"
command = ["sleep", "120"]
on_cancel = "finish"
""",
    "approval.toml": """
name = "needs-approval"
[[task]]
name = "approve"
action = "approval"
prompt = "go?"
[[task]]
name = "after"
action = "wait"
seconds = 0
after = ["approve"]
""",
}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return make_db(tmp_path, RECIPES, "console.db")


def task_status(db: str, job_id: int, name: str) -> str:
    return one(db, "SELECT status FROM task WHERE job_id=? AND name=?", job_id, name)


def embedded(db: str) -> RecordingApp:
    return embedded_app(db, SERVERS)[0]


async def test_cancel_from_the_list(db: str) -> None:
    job = add(db, "wait.toml")
    app = embedded(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: job_status(db, job) == "executing", "the job to start", pilot=pilot)
        # The header: the mode, then who you are (and whether a manager).
        await until(lambda: app.who is not None, "whoami", pilot=pilot)
        assert app.sub_title == "embedded engine: batch-01 · alice (manager)"
        await select(pilot, job)
        await press(pilot, "c")
        await shown(pilot, ConfirmCancel)
        await press(pilot, *"wrong data", "enter")
        await until(
            lambda: job_status(db, job) == "canceled", "the job to be canceled", pilot=pilot
        )
        # The wait was running: it winds down, so the request leaves the job Canceling.
        assert (f"Job {job} Canceling", "information") in app.messages
        # The list follows on its own (live refresh): the row says so.
        await until(lambda: " Canceled " in painted_job_row(app, job), "the row", pilot=pilot)
    assert task_status(db, job, "sleep") == "canceled"  # the wait stopped at once
    assert one(db, "SELECT cancel_reason, canceled_by FROM job WHERE id=?", job) == (
        "Job canceled by alice: wrong data",
        "alice",
    )


async def test_abort_from_the_detail_screen_yes(db: str) -> None:
    job = add(db, "stubborn.toml")
    app = embedded(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            lambda: task_status(db, job, "sleeper") == "executing", "the start", pilot=pilot
        )
        store = Store(db)
        flows.cancel(store.transaction, job, actor="bob")  # on_cancel = finish: it keeps running
        store.dispose()
        await until(
            lambda: task_status(db, job, "sleeper") == "canceling", "canceling", pilot=pilot
        )
        await select(pilot, job)
        await press(pilot, "enter")
        await settle(pilot)
        assert isinstance(app.screen, JobDetailScreen)
        await press(pilot, "a")
        modal = await shown(pilot, ConfirmAbort)
        assert not modal.plan.cancel_first
        assert f"Abort job {job} stubborn-shell?" in text_of(modal.query_one(".dialog-title"))
        await press(pilot, "y")
        await until(lambda: task_status(db, job, "sleeper") == "aborted", "aborted", pilot=pilot)
        await until(lambda: job_status(db, job) == "canceled", "the job canceled", pilot=pilot)
        await until(
            lambda: said(app, f"Aborting job {job}: 1 task"), "the result shown", pilot=pilot
        )
    assert one(db, "SELECT aborted_by FROM job WHERE id=?", job) == "alice"


async def test_abort_on_an_executing_job_no_then_yes(db: str) -> None:
    job = add(db, "wait.toml")
    app = embedded(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: task_status(db, job, "sleep") == "executing", "the start", pilot=pilot)
        await select(pilot, job)
        await press(pilot, "enter")
        await settle(pilot)
        before = state(db)
        await press(pilot, "a")
        modal = await shown(pilot, ConfirmAbort)
        assert modal.plan.cancel_first  # offers to cancel and abort in one step
        assert "Cancel and abort" in text_of(modal.query_one(".dialog-title"))
        await press(pilot, "n")
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
        await until(lambda: not app.flow_busy(), "the flow to end", pilot=pilot)
        assert state(db) == before  # No: nothing changed
        await press(pilot, "a")
        await shown(pilot, ConfirmAbort)
        await press(pilot, "y")
        await until(lambda: task_status(db, job, "sleep") == "aborted", "aborted", pilot=pilot)
        await until(lambda: job_status(db, job) == "canceled", "the job canceled", pilot=pilot)
        # The detail screen follows on its own (live refresh), and paints it.
        await until(
            lambda: app.screen.detail is not None and app.screen.detail.job.status == "canceled",
            "the screen to follow",
            pilot=pilot,
        )
        await until(
            lambda: any(
                line.split()[:2] == ["sleep", "Aborted"] for line in painted(app).splitlines()
            ),
            "the task row painted Aborted",
            pilot=pilot,
        )


async def test_approve_and_reject_ask_first(db: str) -> None:
    yes = add(db, "approval.toml")
    no = add(db, "approval.toml")
    app = embedded(db)
    async with app.run_test(size=(100, 30)) as pilot:
        for job in (yes, no):
            await until(
                lambda j=job: task_status(db, j, "approve") == "executing",
                "the approval to wait",
                pilot=pilot,
            )
        await select(pilot, yes)
        await press(pilot, "enter")
        await settle(pilot)
        await press(pilot, "y")
        modal = await shown(pilot, ConfirmApproval)
        await pilot.pause()
        assert f"Approve task approve of job {yes} needs-approval?" in text_of(
            modal.query_one(".dialog-title")
        )
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        await press(pilot, "y")
        await until(lambda: job_status(db, yes) == "ended", "approved job to end", pilot=pilot)
        await until(
            lambda: said(app, f"Task approve of job {yes} approved"),
            "the result shown",
            pilot=pilot,
        )
        await press(pilot, "escape")
        await select(pilot, no)
        before = state(db)
        # `n` alone (say, a double tap after closing another confirmation) rejects nothing:
        # it opens the confirmation, and a second `n` answers No.
        await press(pilot, "n")
        modal = await shown(pilot, ConfirmApproval)
        assert f"Reject task approve of job {no} needs-approval?" in text_of(
            modal.query_one(".dialog-title")
        )
        await press(pilot, "n")
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
        await until(lambda: not app.flow_busy(), "the flow to end", pilot=pilot)
        assert state(db) == before and task_status(db, no, "approve") == "executing"
        # `n`, then Yes: rejected.
        await press(pilot, "n")
        await shown(pilot, ConfirmApproval)
        await pilot.pause()
        await pilot.click("#yes")
        await until(lambda: job_status(db, no) == "error", "rejected job to fail", pilot=pilot)
        await until(
            lambda: said(app, f"Task approve of job {no} rejected"), "the result shown", pilot=pilot
        )
    assert task_status(db, yes, "approve") == "ended"
    assert task_status(db, no, "approve") == "error"
    assert task_status(db, no, "after") == "didnt_run"


async def test_the_embedded_engine_stops_with_the_console(db: str) -> None:
    job = add(db, "wait.toml")
    app = embedded(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: job_status(db, job) == "executing", "the start", pilot=pilot)
        await press(pilot, "q")  # a task is running: asks first
        await shown(pilot, ConfirmQuit)
        await press(pilot, "n")
        await until(lambda: not isinstance(app.screen, ModalScreen), "no modal", pilot=pilot)
        assert app.is_running
        await press(pilot, "q")
        await shown(pilot, ConfirmQuit)
        await press(pilot, "y")
        await until(lambda: not app.is_running, "the console to exit", pilot=pilot)
    assert one(db, "SELECT status, lease_owner FROM server WHERE name='batch-01'") == (
        "offline",
        None,
    )
    # The interrupted task goes back to Ready for the next engine.
    assert one(db, "SELECT status, attempt FROM task WHERE job_id=?", job) == ("ready", 2)


async def test_falls_back_to_attached_when_the_lease_is_taken(db: str) -> None:
    job = add(db, "wait.toml")
    other = Supervisor(db, {"batch-01": 2})
    await other.start()
    try:
        app = embedded(db)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(
                lambda: app.host.engine is None and "attached" in app.sub_title,
                "the fall back",
                pilot=pilot,
            )
            host = other.owner.split(":")[0]
            assert app.mode_label == f"attached to 1 engine: {host}"
            assert app.sub_title.startswith(app.mode_label)
            assert said(app, "Attached to the running engine")
            await until(lambda: job_status(db, job) == "executing", "the other engine", pilot=pilot)
            await select(pilot, job)
            await press(pilot, "c")
            await shown(pilot, ConfirmCancel)
            await press(pilot, "enter")
            # The other engine sees the request through the database and stops the task.
            await until(lambda: job_status(db, job) == "canceled", "canceled", pilot=pilot)
        # Attached: quitting the console leaves the other engine serving.
        assert one(db, "SELECT lease_owner FROM server WHERE name='batch-01'") == other.owner
    finally:
        await other.stop()


def test_placement_attaches_to_a_live_engine(db: str) -> None:
    engine, label = placement(db, SERVERS)
    assert isinstance(engine, Supervisor) and label == "embedded engine: batch-01"
    store = Store(db)
    with store.write() as conn:
        batch.claim_leases(
            conn, {"batch-01": 4, "batch-02": 2}, "otherhost:999:abc", at=time.time()
        )
    store.dispose()
    engine, label = placement(db, SERVERS)
    assert engine is None
    assert label == "attached to 1 engine: otherhost"


async def test_live_refresh_pauses_while_a_modal_is_open(db: str) -> None:
    job = add(db, "wait.toml")
    app = embedded(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: job_status(db, job) == "executing", "the start", pilot=pilot)
        await select(pilot, job)
        table = app.screen.table
        # Live: a job submitted elsewhere shows up on its own.
        second = add(db, "wait.toml")
        await until(lambda: table.total == 2, "the new job to show", pilot=pilot)
        assert table.selected_id == job  # the selection stayed on the same job
        await press(pilot, "c")
        await shown(pilot, ConfirmCancel)
        fetches = count_calls(app.data, "list_jobs")
        add(db, "wait.toml")
        # The list's live refresh is paused while the modal is up (it would show 3 jobs).
        list_screen = app.screen_stack[-2]
        assert list_screen._live is not None and not list_screen._live._active.is_set()  # noqa: SLF001
        await pilot.pause(1.0)  # three refresh periods: an observation window, not a wait
        assert fetches == [] and table.total == 2
        await press(pilot, "escape")
        await until(lambda: table.total == 3, "the refresh after the modal", pilot=pilot)
        assert job_status(db, job) == "executing" and second
