"""What a new operator trips on in the console (issue 23): the attached header names the
engines alive, the one-job cancel says how each running task stops, a canceled job does
not look complete, jobs waiting for an engine say so, the bulk dialog's buttons and
reason, an enhanced abort of marked jobs says how far it reaches, a key a non-manager
may not use says why, `space` in the help. Real apps (``run_test`` + Pilot) on real
SQLite files; what is asserted is what the screen paints."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.runtime import tick as batch
from engine.store.db import Store
from tests import scenario
from tests.screenshots import make_app, marked, on_job, select, settle
from tests.tui_support import (  # noqa: F401 - utc: autouse
    RecordingApp,
    painted,
    press,
    said,
    shown,
    utc,
)
from tests.waiting import until
from tui.app import NO_ENGINE


@pytest.fixture
def scenario_db(tmp_path: Path) -> str:
    return scenario.build(tmp_path / "scenario.db")


def header(app: RecordingApp) -> str:
    return painted(app).splitlines()[0]


# -- the attached header names the engines alive -------------------------------------------


async def test_attached_header_follows_the_engines_alive(tmp_path: Path) -> None:
    db = str(tmp_path / "two-hosts.db")
    store = Store(db)
    t0 = 1_000_000.0
    a, b = "host-a:100:n1", "host-b:24400:n2"
    try:
        with store.write() as conn:
            batch.claim_leases(conn, {"batch-01": 2}, a, at=t0)
            batch.claim_leases(conn, {"batch-02": 2}, b, at=t0)
    finally:
        store.dispose()
    now = [t0 + 1]
    app = RecordingApp(db, mode_label=NO_ENGINE, clock=lambda: now[0], actor="alice", live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await app.check_health().wait()
        assert app.sub_title.startswith("attached to 2 engines: host-a, host-b · ")
        # host-b is killed (its heartbeat stops); host-a beats on.
        beat(db, {"batch-01": a}, t0 + 20)
        now[0] = t0 + 24
        await app.check_health().wait()
        assert app.sub_title == "attached to 1 engine: host-a · alice (manager)"
        await until(
            lambda: "attached to 1 engine: host-a" in header(app), "the header", pilot=pilot
        )
        assert "host-b" not in header(app)
        # host-a dies too: since when the last engine is gone.
        now[0] = t0 + 60
        await app.check_health().wait()
        assert app.sub_title == "engine gone since 13:47:00 · alice (manager)"
        # A new serve starts on host-a: named again, and only it.
        beat(db, {"batch-01": "host-a:300:n3"}, t0 + 61, claim=True)
        now[0] = t0 + 62
        await app.check_health().wait()
        assert app.sub_title == "attached to 1 engine: host-a · alice (manager)"


def beat(db: str, leases: dict[str, str], at: float, *, claim: bool = False) -> None:
    store = Store(db)
    try:
        with store.write() as conn:
            for name, owner in leases.items():
                if claim:
                    batch.claim_leases(conn, {name: 2}, owner, at=at)
                batch.heartbeat(conn, [name], owner, at=at)
    finally:
        store.dispose()


async def test_scenario_header_names_the_engine_host(scenario_db: str) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.check_health().wait()
        assert app.sub_title == "attached to 1 engine: batchhost · alice (manager)"


# -- the one-job cancel says how each running task stops -------------------------------------


def running_job(path: Path, *tasks: dict) -> tuple[str, int]:
    """A job whose tasks all run on batch-01 (claimed as a server would; no engine)."""
    b = scenario.Builder(path)
    with b.store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 4}, scenario.OWNER, at=scenario.T0)
    job = b.submit(scenario.recipe("mixed", *tasks), scenario.T0 + 1)
    b.start("batch-01", scenario.T0 + 2, [t["name"] for t in tasks])
    b.beat(scenario.NOW - 1)
    b.store.dispose()
    return str(path), job


async def test_cancel_dialog_says_how_each_running_task_stops(tmp_path: Path) -> None:
    from tui.modals.cancel import ConfirmCancel

    db, job = running_job(
        tmp_path / "mixed.db",
        {"name": "stuck-read", "action": "blocking_wait", "seconds": 3600},
        {"name": "rsync", "action": "shell", "command": ["rsync", "a", "b"]},
        scenario.wait("pause"),
    )
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_job(job, "c")(pilot)
        await shown(pilot, ConfirmCancel)
        text = painted(app)
        assert "stop at their next safe point" not in text  # the old promise, for all
        assert "stuck-read on batch-01: only a server restart stops it" in text
        assert "rsync on batch-01: gets SIGTERM" in text
        assert "pause on batch-01: at its next safe point" in text
        # Said before the operator confirms: a cancel leaves it Canceling.
        assert "A cancel does not stop stuck-read: only a server restart does" in text
        assert "enhanced abort (A)" in text
        await press(pilot, "escape")


async def test_cancel_dialog_of_a_job_of_safe_points_has_no_warning(scenario_db: str) -> None:
    from tui.modals.cancel import ConfirmCancel

    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 9)  # parent-flow: a task waiting for its child
        await press(pilot, "c")
        await shown(pilot, ConfirmCancel)
        text = painted(app)
        assert "call on batch-01: finishes first" in text
        assert "A cancel does not stop" not in text


# -- a canceled job does not look complete; Executing with no engine says so -----------------


def after_the_engine(path: Path) -> tuple[str, int, int]:
    """A job canceled before any task ran, and an Executing job whose next task is Ready
    with nothing running: the engine that ran its first task has stopped."""
    b = scenario.Builder(path)
    with b.store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 4}, scenario.OWNER, at=scenario.T0)
    two = scenario.recipe("never-ran", scenario.wait("first"), scenario.wait("second"))
    canceled = b.submit(two, scenario.T0 + 1)
    from engine.flows import base as flows

    flows.cancel(b.store.transaction, canceled, actor="alice", at=scenario.T0 + 2)
    chain = scenario.recipe(
        "half-done", scenario.wait("first"), scenario.wait("second", after=["first"])
    )
    waiting = b.submit(chain, scenario.T0 + 3)
    b.start("batch-01", scenario.T0 + 4, ["first"])
    b.outcome(b.task_ids(waiting)["first"], "ended", scenario.T0 + 64)
    with b.store.write() as conn:  # the engine's last heartbeat
        batch.heartbeat(conn, ["batch-01"], scenario.OWNER, at=scenario.T0 + 69)
    b.store.dispose()
    return str(path), canceled, waiting


async def test_a_canceled_job_counts_only_ended_tasks_as_done(tmp_path: Path) -> None:
    from tests.tui_support import painted_job_row

    db, canceled, _ = after_the_engine(tmp_path / "after.db")
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        row = painted_job_row(app, canceled)
        assert "Canceled" in row and "0/2" in row and "2/2" not in row, row
        assert "█" not in row  # no part of the bar is full
        await select(pilot, canceled)
        await press(pilot, "enter")
        await settle(pilot)
        assert "0/2 done · 2 didn't run" in painted(app)


async def test_executing_with_no_engine_says_it_waits_for_one(tmp_path: Path) -> None:
    from tests.tui_support import painted_job_row

    db, canceled, waiting = after_the_engine(tmp_path / "after.db")
    now = [scenario.T0 + 70]  # the engine's lease is still fresh
    app = RecordingApp(db, mode_label=NO_ENGINE, clock=lambda: now[0], actor="alice", live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await app.check_health().wait()
        await settle(pilot)
        assert app.engines_alive is True
        assert "no engine" not in painted_job_row(app, waiting)
        now[0] = scenario.NOW  # the lease went stale: nothing serves the database
        await app.check_health().wait()
        await until(
            lambda: "Executing · no engine" in painted_job_row(app, waiting),
            "the list says it",
            pilot=pilot,
        )
        assert "no engine" not in painted_job_row(app, canceled)
        await select(pilot, waiting)
        await press(pilot, "enter")
        await settle(pilot)
        assert "Executing · no engine" in painted(app)


# -- the bulk dialog: what its buttons do, a reason, an enhanced abort's reach ---------------


async def test_bulk_cancel_buttons_say_what_they_do_and_take_a_reason(scenario_db: str) -> None:
    from textual.widgets import Button

    from tests.tui_support import one
    from tui.modals.bulk import ConfirmBulk

    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await marked(2, 5, 10, key="c")(pilot)
        await shown(pilot, ConfirmBulk)
        buttons = [str(b.label) for b in app.screen.query(Button)]
        assert buttons == ["Cancel 3 jobs", "Back"]
        assert "Cancel 3 jobs" in painted(app) and " Back " in painted(app)
        assert app.focused is not None and app.focused.id == "no"
        reason = app.screen.query_one("#reason")
        reason.focus()  # not clicked: a click lands on whatever is drawn there then
        await until(lambda: app.focused is reason, "the reason field focused", pilot=pilot)
        await press(pilot, *"bad data")
        await press(pilot, "enter")
        await until(lambda: said(app, "Cancel: 3 done"), "the result", pilot=pilot)
        reasons = {
            one(scenario_db, "SELECT cancel_reason FROM job WHERE id=?", j) for j in (2, 5, 10)
        }
        assert reasons == {"Job canceled by alice: bad data"}


async def test_bulk_enhanced_abort_dialog_lists_servers_and_every_other_job(
    scenario_db: str,
) -> None:
    from tui.modals.bulk import ConfirmBulk

    app = make_app(scenario_db)
    async with app.run_test(size=(100, 40)) as pilot:
        await marked(2, 5, key="A")(pilot)  # both on batch-01
        await shown(pilot, ConfirmBulk)
        await pilot.pause()
        text = painted(app)
        assert "Servers that restart: batch-01" in text
        assert "Other jobs disrupted (3):" in text
        for line in ("job 6 maintenance: vacuum", "job 9 parent-flow: call"):
            assert line in text
        assert "job 13 stuck-canceling: sync-files" in text
        assert "job 5 approve-release" not in text  # marked: not "other"
        assert "Enhanced abort 2 jobs" in text


# -- a key a non-manager may not use says why ------------------------------------------------


async def test_a_non_manager_pressing_abort_is_told_why(scenario_db: str) -> None:
    from engine.flows import settings as setting_flows
    from tests.tui_support import one
    from tui.screens.jobs import JobListScreen

    store = Store(scenario_db)
    try:
        with store.transaction() as sql:
            setting_flows.store(sql, "managers", "carol, @batchops")
    finally:
        store.dispose()
    app = RecordingApp(
        scenario_db, mode_label="attached", clock=lambda: scenario.NOW, actor="bob", live=False
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 13)
        await until(lambda: app.who is not None, "whoami", pilot=pilot)
        before = one(scenario_db, "SELECT count(*) FROM event")
        await press(pilot, "a")
        await until(lambda: app.messages, "a notification", pilot=pilot)
        assert said(app, "Abort needs a batch job manager (carol, @batchops); you are bob")
        await press(pilot, "A")
        await until(lambda: said(app, "Enhanced abort needs"), "the second", pilot=pilot)
        assert isinstance(app.screen, JobListScreen)
        assert one(scenario_db, "SELECT count(*) FROM event") == before  # nothing tried


async def test_help_says_space_moves_down(scenario_db: str) -> None:
    from tests.screenshots import help_screen

    app = make_app(scenario_db)
    async with app.run_test(size=(120, 50)) as pilot:
        await help_screen(pilot)
        assert "and move down" in painted(app)


# -- small screens: what keeps its room ---------------------------------------------------------


async def test_80x24_keeps_who_you_are_names_and_the_servers_key(scenario_db: str) -> None:
    from tests.tui_support import painted_job_row

    app = make_app(scenario_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await app.check_health().wait()
        await pilot.pause()
        lines = painted(app).splitlines()
        assert "alice (manager)" in lines[0]
        assert "quarterly-ledger-export" in painted_job_row(app, 14)  # 23 characters, whole
        assert "Canceling STUCK" in painted_job_row(app, 13)
        assert "s Servers" in lines[-1]


@pytest.mark.parametrize("size", [(80, 24), (120, 30)])
async def test_a_jobs_on_cancel_and_message_columns_fit(
    scenario_db: str, size: tuple[int, int]
) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=size) as pilot:
        await select(pilot, 2)
        await press(pilot, "enter")
        await settle(pilot)
        await pilot.pause()
        text = painted(app)
        header = next(line for line in text.splitlines() if "Task " in line and "Status" in line)
        assert "On cancel" in header and "Message" in header
        assert "at its next safe point" in text
        assert "imported 4,000 of 10,000 rows" in text  # the message whole


async def test_attached_header_says_an_engines_database_outage(tmp_path: Path) -> None:
    """An engine that cannot write its database (a full disk) says so on its servers'
    rows while it can: an attached console's header says it, until the note goes."""
    db = str(tmp_path / "full.db")
    store = Store(db)
    t0 = 1_000_000.0
    owner = "host-a:100:n1"
    said = "cannot reach database since 13:46:41: database or disk is full"
    try:
        with store.write() as conn:
            batch.claim_leases(conn, {"batch-01": 2}, owner, at=t0)
            conn.exec_driver_sql("UPDATE server SET note = ?", (said,))
    finally:
        store.dispose()
    now = [t0 + 1]
    app = RecordingApp(db, mode_label=NO_ENGINE, clock=lambda: now[0], actor="alice", live=False)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        await app.check_health().wait()
        assert "ENGINE ERROR: cannot reach database since 13:46:41" in app.sub_title
        store = Store(db)
        try:
            with store.write() as conn:
                conn.exec_driver_sql("UPDATE server SET note = NULL")
        finally:
            store.dispose()
        await app.check_health().wait()
        assert app.sub_title == "attached to 1 engine: host-a · alice (manager)"
