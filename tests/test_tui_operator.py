"""The console's operator tools beyond one job (issue 11): marks and one bulk
confirmation, the typed count, rerun, the stuck banner, who may (header and hidden
keys), and the engine's health in the header. Real apps (``run_test`` + Pilot), real
SQLite files; a real embedded engine where the flow needs one. No sleeps: conditions
are polled (tests/waiting.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Input

from engine.flows import base as flows
from engine.flows import settings as setting_flows
from engine.runtime import tick as batch
from engine.store.db import Store
from tests import scenario
from tests.screenshots import make_app, select, settle
from tests.tui_support import (  # noqa: F401 - utc: autouse
    RecordingApp,
    add,
    job_status,
    make_db,
    one,
    painted,
    painted_job_row,
    press,
    rows,
    said,
    shown,
    utc,
)
from tests.tui_support import embedded as embedded_app
from tests.waiting import until
from tui.app import header_label
from tui.modals.bulk import ConfirmBulk
from tui.modals.rerun import ConfirmRerun
from tui.screens.detail import JobDetailScreen
from tui.screens.jobs import JobListScreen
from tui.widgets.job_table import MARK

WAIT = """
name = "long-wait"
[[task]]
name = "sleep"
action = "wait"
seconds = 120
"""


@pytest.fixture
def scenario_db(tmp_path: Path) -> str:
    return scenario.build(tmp_path / "scenario.db")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return make_db(tmp_path, {"wait.toml": WAIT}, "console.db")


def list_screen(app: RecordingApp) -> JobListScreen:
    screen = next(s for s in app.screen_stack if isinstance(s, JobListScreen))
    return screen


def marked_rows(app: RecordingApp) -> set[int]:
    """The job ids whose painted row shows the mark."""
    out = set()
    for line in painted(app).splitlines():
        words = line.replace("▶", " ").split()
        if len(words) > 1 and words[0] == MARK and words[1].isdigit():
            out.add(int(words[1]))
    return out


def set_setting(db: str, key: str, value: str) -> None:
    store = Store(db)
    try:
        with store.transaction() as sql:
            setting_flows.store(sql, key, value)
    finally:
        store.dispose()


# -- marks ----------------------------------------------------------------------------


async def test_space_marks_and_unmarks_and_marks_survive_a_refresh(scenario_db: str) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 2)
        await press(pilot, "space")
        await select(pilot, 13)
        await press(pilot, "space")
        await select(pilot, 6)
        await press(pilot, "space")
        await pilot.pause()
        assert list_screen(app).marks == {2, 6, 13}
        assert marked_rows(app) == {2, 6, 13}
        assert "3 marked" in painted(app)
        await select(pilot, 6)
        await press(pilot, "space")  # again: unmarked
        await pilot.pause()
        assert marked_rows(app) == {2, 13}
        # A refresh and a new order move the rows: the marks stay on the same jobs.
        await press(pilot, "o")  # sort by name
        await settle(pilot)
        await list_screen(app).reload_now()
        await settle(pilot)
        assert list_screen(app).marks == {2, 13}
        assert marked_rows(app) == {2, 13}
        assert MARK in painted_job_row(app, 2) and MARK not in painted_job_row(app, 6)


async def test_mark_all_marks_every_job_the_filter_shows(scenario_db: str) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "f")  # running: Executing and Canceling
        await settle(pilot)
        await press(pilot, "asterisk")
        running = {
            r[0]
            for r in rows(
                scenario_db, "SELECT id FROM job WHERE status IN ('executing', 'canceling')"
            )
        }
        screen = list_screen(app)
        await until(lambda: screen.marks == running, "the running jobs marked", pilot=pilot)
        assert marked_rows(app) == running
        await press(pilot, "asterisk")  # all marked already: cleared
        await until(lambda: not screen.marks, "the marks cleared", pilot=pilot)


async def test_mark_all_reads_ids_not_painted_rows(db: str) -> None:
    """300 jobs, 25 painted: all 300 are marked (one query by id)."""
    for _ in range(300):
        add(db, "wait.toml")
    app = RecordingApp(db, mode_label="no engine running", actor="alice")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "asterisk")
        screen = list_screen(app)
        await until(lambda: len(screen.marks) == 300, "300 marks", pilot=pilot)
        assert screen.marks == {r[0] for r in rows(db, "SELECT id FROM job")}
        assert said(app, "Marked 300 jobs")


# -- bulk cancel through one confirmation -----------------------------------------------


async def test_bulk_cancel_of_marked_jobs_through_one_confirmation(db: str) -> None:
    jobs = [add(db, "wait.toml") for _ in range(3)]
    app, _host = embedded_app(db, {"batch-01": 4})
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            lambda: all(job_status(db, j) == "executing" for j in jobs), "the starts", pilot=pilot
        )
        await settle(pilot)
        for j in jobs[:2]:
            await select(pilot, j)
            await press(pilot, "space")
        await press(pilot, "c")
        await shown(pilot, ConfirmBulk)
        dialog = app.screen
        assert app.focused is not None and app.focused.id == "no"  # the default is No
        text = painted(app)
        assert "Cancel 2 marked jobs?" in text and "Executing 2" in text
        # Refresh is paused under the dialog.
        listing = list_screen(app)
        assert listing._live is not None and not listing._live._active.is_set()  # noqa: SLF001
        # Escape backs out: nothing changed, the marks are still there.
        await press(pilot, "escape")
        await shown(pilot, JobListScreen)
        assert all(job_status(db, j) == "executing" for j in jobs)
        assert listing.marks == set(jobs[:2])
        # Again, and yes.
        await press(pilot, "c")
        await shown(pilot, ConfirmBulk)
        assert app.screen is not dialog
        await pilot.click("#yes")
        await until(
            lambda: all(job_status(db, j) in ("canceling", "canceled") for j in jobs[:2]),
            "the two marked jobs canceled",
            pilot=pilot,
        )
        assert job_status(db, jobs[2]) == "executing"
        await until(lambda: said(app, "Cancel: 2 done, 0 refused"), "the result shown", pilot=pilot)
        await until(
            lambda: (
                all("Cancel" in painted_job_row(app, j) for j in jobs[:2])
                and "Executing" in painted_job_row(app, jobs[2])
            ),
            "the painted rows",
            pilot=pilot,
        )
        assert listing.marks == set() and marked_rows(app) == set()


async def test_bulk_confirmation_lists_counts_and_refusals(scenario_db: str) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        for j in (2, 6, 13):
            await select(pilot, j)
            await press(pilot, "space")
        await press(pilot, "c")
        await shown(pilot, ConfirmBulk)
        text = painted(app)
        assert "Cancel 1 marked job?" in text
        assert "Executing 1 · refused 2" in text
        assert "Job 6 maintenance: System jobs cannot be canceled" in text
        assert "Job 13 is already Canceling" in text
        await press(pilot, "escape")
        await shown(pilot, JobListScreen)
        assert job_status(scenario_db, 2) == "executing"


async def test_above_twenty_jobs_the_count_must_be_typed(db: str) -> None:
    jobs = [add(db, "wait.toml") for _ in range(25)]
    app = RecordingApp(db, mode_label="no engine running", actor="alice")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "asterisk")
        screen = list_screen(app)
        await until(lambda: len(screen.marks) == 25, "25 marks", pilot=pilot)
        await press(pilot, "c")
        await shown(pilot, ConfirmBulk)
        yes = app.screen.query_one("#yes", Button)
        assert yes.disabled
        assert "type the number of jobs to confirm" in painted(app)
        assert app.focused is not None and app.focused.id == "no"
        count = app.screen.query_one("#count", Input)
        # Focused directly, not clicked: a click lands on whatever is drawn at that spot
        # then (a toast, a layout not yet redone), and the keys went to No once.
        count.focus()
        await until(lambda: app.focused is count, "the count field focused", pilot=pilot)
        await press(pilot, "2", "4")
        await pilot.pause()
        assert yes.disabled  # the wrong number
        await press(pilot, "enter")  # does nothing while OK is disabled
        await pilot.pause()
        assert isinstance(app.screen, ConfirmBulk)
        app.screen.query_one("#count", Input).value = ""
        await press(pilot, "2", "5")
        await until(lambda: not yes.disabled, "OK enabled", pilot=pilot)
        await pilot.click("#yes")
        await until(
            lambda: all(job_status(db, j) == "canceled" for j in jobs), "25 canceled", pilot=pilot
        )
        await until(
            lambda: said(app, "Cancel: 25 done, 0 refused"), "the result shown", pilot=pilot
        )
        await until(
            lambda: "Canceled" in painted_job_row(app, jobs[-1]), "the painted row", pilot=pilot
        )


# -- rerun ------------------------------------------------------------------------------


def canceled_after_one_task(path: Path) -> tuple[str, int]:
    """A Canceled job whose first task Ended and whose second did not run."""
    b = scenario.Builder(path)
    with b.store.write() as conn:
        batch.claim_leases(conn, scenario.SERVERS, scenario.OWNER, at=scenario.T0)
    t0 = scenario.T0
    j = b.submit(
        scenario.recipe(
            "two-step", scenario.wait("first"), scenario.wait("second", after=["first"])
        ),
        t0,
    )
    t = b.task_ids(j)
    b.start("batch-01", t0 + 1, ["first"])
    b.outcome(t["first"], "ended", t0 + 61, "waited 60 s")
    b.beat(t0 + 62)
    flows.cancel(b.store.transaction, j, actor="alice", at=t0 + 62)
    b.store.dispose()
    return str(path), j


async def test_rerun_carries_over_what_ended(tmp_path: Path) -> None:
    db, job = canceled_after_one_task(tmp_path / "rerun.db")
    assert job_status(db, job) == "canceled"
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, job)
        await press(pilot, "r")
        await shown(pilot, ConfirmRerun)
        text = painted(app)
        assert "Run again (1):" in text and "• second" in text
        assert "Carried over as Ended, not run again (1):" in text and "• first" in text
        assert app.focused is not None and app.focused.id == "no"
        await press(pilot, "y")
        new = await until(
            lambda: one(db, "SELECT id FROM job WHERE rerun_of=?", job), "the rerun", pilot=pilot
        )
        await until(
            lambda: said(app, f"Job {new} submitted: rerun of job {job}"),
            "the result shown",
            pilot=pilot,
        )
        assert dict(rows(db, "SELECT name, status FROM task WHERE job_id=?", new))["first"] == (
            "ended"
        )
        await settle(pilot)
        await select(pilot, new)
        await press(pilot, "enter")
        await shown(pilot, JobDetailScreen)
        await settle(pilot)
        assert f"Rerun of           job {job}" in painted(app)


async def test_rerun_is_refused_for_a_job_still_running(scenario_db: str) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 2)
        await press(pilot, "r")
        await until(lambda: app.messages, "the refusal", pilot=pilot)
        assert said(app, "Job 2 is Executing: only a job in a final status")
        assert not isinstance(app.screen, ConfirmRerun)
        assert one(scenario_db, "SELECT count(*) FROM job") == 14


# -- stuck ------------------------------------------------------------------------------


async def test_stuck_jobs_are_marked_in_the_list_and_the_detail_names_the_next_step(
    scenario_db: str,
) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "Canceling STUCK" in painted_job_row(app, 13)
        assert "Canceling STUCK" in painted_job_row(app, 12)
        assert "STUCK" not in painted_job_row(app, 2)
        await select(pilot, 13)
        await press(pilot, "enter")
        # The detail on top before it is read: settle alone could take the list for it.
        await until(lambda: getattr(app.screen, "job_id", None) == 13, "job 13", pilot=pilot)
        await settle(pilot)
        text = painted(app)
        assert (
            "STUCK · Canceling for 50s: task sync-files has not exited after SIGTERM. a: abort"
            in text
        )
        # How a cancel stops each running task, in the task table.
        assert "On cancel" in text and "gets SIGTERM" in text
        await press(pilot, "escape")
        await select(pilot, 2)
        await press(pilot, "enter")
        await until(lambda: getattr(app.screen, "job_id", None) == 2, "job 2", pilot=pilot)
        await settle(pilot)
        text = painted(app)
        assert "STUCK" not in text and "at its next safe point" in text, text


# -- who may ----------------------------------------------------------------------------


async def test_header_names_a_non_manager_and_abort_keys_are_hidden(scenario_db: str) -> None:
    set_setting(scenario_db, "managers", "carol")
    app = RecordingApp(
        scenario_db,
        mode_label="attached",
        clock=lambda: scenario.NOW,
        actor="bob",
        live=False,
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 2)
        await until(lambda: app.who is not None, "whoami", pilot=pilot)
        await pilot.pause()
        assert "bob (not a manager)" in app.sub_title
        screen = app.screen
        assert screen.check_action("job", ("abort-job",)) is False
        assert screen.check_action("job", ("enhanced-abort",)) is False
        assert screen.check_action("job", ("cancel-job",)) is True
        footer = painted(app).splitlines()[-1]
        assert "Abort" not in footer and "Cancel" in footer
        before = one(scenario_db, "SELECT count(*) FROM event")
        await press(pilot, "a")
        await press(pilot, "A")
        await pilot.pause()
        assert isinstance(app.screen, JobListScreen)
        assert one(scenario_db, "SELECT count(*) FROM event") == before


async def test_header_names_a_manager(scenario_db: str) -> None:
    set_setting(scenario_db, "managers", "carol")
    app = RecordingApp(
        scenario_db, mode_label="attached", clock=lambda: scenario.NOW, actor="carol", live=False
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await until(lambda: app.who is not None, "whoami", pilot=pilot)
        assert "carol (manager)" in app.sub_title
        assert app.screen.check_action("job", ("abort-job",)) is True
        await select(pilot, 13)
        await press(pilot, "a")
        await until(lambda: app.screen.__class__.__name__ == "ConfirmAbort", "abort", pilot=pilot)


# -- engine health ----------------------------------------------------------------------


async def test_header_says_engine_gone_when_the_lease_goes_stale(scenario_db: str) -> None:
    mode = "attached to 1 engine: batchhost"
    later = scenario.NOW + 3600  # an hour after the last heartbeat
    app = RecordingApp(scenario_db, mode_label=mode, clock=lambda: later, actor="alice", live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await until(lambda: "gone" in app.sub_title, "the header", pilot=pilot)
        assert app.sub_title == "engine gone since 22:43:19 · alice (manager)"
        await until(
            lambda: "engine gone since 22:43:19" in painted(app).splitlines()[0],
            "the header painted",
            pilot=pilot,
        )
    fresh = RecordingApp(
        scenario_db, mode_label=mode, clock=lambda: scenario.NOW, actor="alice", live=False
    )
    async with fresh.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await until(lambda: fresh.who is not None, "whoami", pilot=pilot)
        assert fresh.sub_title == f"{mode} · alice (manager)"


async def test_header_shows_an_engine_error_until_a_batch_goes_through(db: str) -> None:
    app, host = embedded_app(db, {"batch-01": 2}, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: host.running, "the engine", pilot=pilot)
        await app.check_health().wait()
        assert "ENGINE ERROR" not in app.sub_title
        # What the engine's loop does when a batch fails (Engine._run).
        host.engine.note("OperationalError: database is locked")
        await app.check_health().wait()
        assert app.sub_title.endswith("ENGINE ERROR: OperationalError: database is locked")
        seen = host.engine.stats.ticks
        add(db, "wait.toml")  # a change: the engine runs a batch
        await until(lambda: host.engine.stats.ticks > seen, "a batch", pilot=pilot)
        await app.check_health().wait()
        assert "ENGINE ERROR" not in app.sub_title


def test_header_label() -> None:
    assert header_label("attached to 1 engine: h1", None, "engine gone since 12:04:31") == (
        "engine gone since 12:04:31"
    )
    read_only = "READ-ONLY for you (user bob) · attached to 1 engine: h1"
    assert header_label(read_only, None, "engine gone since 12:04:31") == (
        "READ-ONLY for you (user bob) · engine gone since 12:04:31"
    )
    assert header_label("embedded engine: b1", None, None, "x" * 100).endswith("x…")


async def test_the_banner_comes_when_time_alone_makes_a_job_stuck(scenario_db: str) -> None:
    """No write at all (no engine): the detail's tick reads the banner again."""
    now = [scenario.NOW - 40]  # job 13 has been Canceling for 10 s: not stuck yet
    app = RecordingApp(
        scenario_db, mode_label="no engine running", clock=lambda: now[0], actor="alice"
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_job(13)
        await shown(pilot, JobDetailScreen)
        await settle(pilot)
        assert "STUCK ·" not in painted(app)
        now[0] = scenario.NOW  # 50 s: past stuck_seconds (30)
        await until(lambda: "STUCK · Canceling for 50s" in painted(app), "the banner", pilot=pilot)


async def test_bulk_with_nothing_to_act_on_says_why_and_asks_nothing(scenario_db: str) -> None:
    app = make_app(scenario_db)
    async with app.run_test(size=(100, 30)) as pilot:
        for j in (6, 13):
            await select(pilot, j)
            await press(pilot, "space")
        await press(pilot, "c")
        await until(lambda: app.messages, "the refusal", pilot=pilot)
        assert said(app, "Nothing to cancel in the 2 marked: Job 6 maintenance: System jobs cannot")
        assert said(app, "; Job 13 is already Canceling")
        assert not isinstance(app.screen, ConfirmBulk)
        assert list_screen(app).marks == {6, 13}


async def test_on_cancel_column_while_a_task_runs(db: str) -> None:
    job = add(db, "wait.toml")
    app, _host = embedded_app(db, {"batch-01": 2})
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: job_status(db, job) == "executing", "the start", pilot=pilot)
        await settle(pilot)
        app.open_job(job)
        await shown(pilot, JobDetailScreen)
        await until(
            lambda: "at its next safe point" in painted(app), "how the task stops", pilot=pilot
        )
        assert "On cancel" in painted(app)
        await press(pilot, "c")
        await until(lambda: app.screen.__class__.__name__ == "ConfirmCancel", "cancel", pilot=pilot)
        await press(pilot, "enter")
        await until(lambda: job_status(db, job) == "canceled", "the cancel", pilot=pilot)
        # Nothing runs any more: the column goes (the task's message gets the room).
        # (Both in one look: while the table is rebuilt, neither is painted.)
        await until(
            lambda: "On cancel" not in (shot := painted(app)) and "Canceled" in shot,
            "the column gone and the task Canceled",
            pilot=pilot,
        )
