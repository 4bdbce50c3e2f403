"""Remote long actions against a real HTTP server on 127.0.0.1 (the emulator shipped in
``engine.remote_emulator``): an engine with real server processes follows, cancels and
aborts jobs on it over a socket. Nothing is mocked; every wait is for a condition."""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.actions.context import TaskContext
from engine.actions.remote.follow import Follower
from engine.actions.remote.params import remote_for, timing
from engine.actions.remote.salesforce import SalesforceJob
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.recipes import RecipeError, load_recipe, recipe_from_dict
from engine.remote_emulator import Emulator
from engine.store.db import Store
from tests.engine_support import (
    job_status,
    submit_tasks,
    task_row,
    task_statuses,
    until,
    write_recipe,
)
from tests.proc_support import Deck, deck_in, wait_for
from tests.screenshots import settle
from tests.test_actions import make_ctx
from tests.tui_support import embedded, one, painted, press, shown
from tests.tui_support import job_status as console_status
from tui.screens.detail import JobDetailScreen

SECRET = "s3cret-Token-9f8e7d"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tokens={SECRET}, rate=200) as e:
        yield e


def write_csv(path: Path, rows: int) -> Path:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["Ext_Id__c", "Name"])
        out.writerows([f"E{i:06d}", f"Account {i}"] for i in range(1, rows + 1))
    return path


def token_file(tmp_path: Path, value: str = SECRET, name: str = "sf.token") -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    return path


def sf_task(emu: Emulator, tmp_path: Path, rows: int, **over: Any) -> dict[str, Any]:
    defaults = {"token_file": str(token_file(tmp_path)), "poll_seconds": 0.1, "timeout_seconds": 5}
    return emu.upsert_task(str(write_csv(tmp_path / "accounts.csv", rows)), **defaults | over)


def http_task(emu: Emulator, records: int, tmp_path: Path, **over: Any) -> dict[str, Any]:
    task = {
        "name": "reindex",
        "action": "http_job",
        "start_url": f"{emu.url}/api/v1/jobs",
        "start_body": {"records": records},
        "job_id_path": "job.id",
        "status_url": emu.url + "/api/v1/jobs/{id}",
        "state_path": "job.state",
        "done_path": "job.progress.done",
        "total_path": "job.progress.total",
        "failed_path": "job.progress.failed",
        "final_states": ["succeeded", "failed", "canceled"],
        "success_states": ["succeeded"],
        "canceled_states": ["canceled"],
        "cancel_url": emu.url + "/api/v1/jobs/{id}/cancel",
        "token_file": str(token_file(tmp_path)),
        "poll_seconds": 0.1,
    }
    task.update(over)
    return task


def remote_running(emu: Emulator, at_least: int = 1) -> Any:
    jobs = emu.created()
    return jobs and jobs[0].state in ("InProgress", "running") and jobs[0].processed >= at_least


# -- following -------------------------------------------------------------------------


async def test_progress_follows_the_remote_counts_and_failed_records_are_fetched(
    engine, emu, tmp_path
):
    emu.fail_every = 50
    store = engine.store
    job = submit_tasks(store, tmp_path, "sf", [sf_task(emu, tmp_path, 20_000)])
    row = await until(
        lambda: (r := task_row(store, job, "upsert"))["progress_done"] >= 200 and r, "progress"
    )
    remote = emu.created("salesforce")
    assert len(remote) == 1 and remote[0].state == "InProgress"
    assert row["remote_job"] == remote[0].id  # recorded on the task
    # The task's count is one the remote gave: never ahead of it, never past the total.
    assert row["progress_done"] <= remote[0].processed < 20_000
    assert row["progress_total"] == 20_000 and row["progress_unit"] == "records"
    assert "InProgress" in row["message"]

    emu.rate = 100_000
    await until(lambda: job_status(store, job) in ("ended", "error"), "the job to end")
    row = task_row(store, job, "upsert")
    assert row["status"] == "ended", row["message"]
    assert row["progress_done"] == 20_000 == emu.job(remote[0].id).processed
    failed = tmp_path / "accounts.failed.csv"
    assert row["message"] == (
        f"upsert of Account done on the remote (job {remote[0].id}): "
        f"20,000 of 20,000 records; 400 failed; failed records in {failed}"
    )
    with open(failed, newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0][:3] == ["sf__Id", "sf__Error", "Ext_Id__c"] and len(lines) == 401
    assert lines[1][2] == "E000050"  # the 50th record, as uploaded
    assert [m for m, _ in emu.requests].count("POST") == 1


@pytest.mark.both_databases
async def test_cancel_aborts_the_remote_job_and_the_task_has_the_remote_counts(
    engine, emu, tmp_path
):
    emu.fail_every = 7
    store = engine.store
    job = submit_tasks(store, tmp_path, "sf", [sf_task(emu, tmp_path, 200_000)])
    await until(lambda: remote_running(emu, 300), "the remote job to be under way")
    await until(lambda: task_row(store, job, "upsert")["progress_done"] > 0, "progress")

    flows.cancel(store.transaction, job, actor="alice")
    await until(lambda: job_status(store, job) == "canceled", "the job to be Canceled")
    (remote,) = emu.created()
    assert remote.state == "Aborted" and remote.abort_asked
    row = task_row(store, job, "upsert")
    assert row["status"] == "canceled"
    done, failed = remote.processed, remote.failed(7)
    assert 0 < done < 200_000
    assert row["progress_done"] == done
    assert row["message"] == (
        f"aborted on the remote after {done:,} of 200,000 records; {failed:,} failed "
        f"(job {remote.id})"
    )


async def test_cancel_of_a_remote_that_ignores_the_abort_says_so(engine, emu, tmp_path):
    store = engine.store
    job = submit_tasks(
        store, tmp_path, "sf", [sf_task(emu, tmp_path, 100_000, cancel_wait_seconds=1)]
    )
    await until(lambda: remote_running(emu), "the remote job to be under way")
    emu.faults.ignore_abort = True
    flows.cancel(store.transaction, job, actor="alice")
    await until(lambda: job_status(store, job) == "canceled", "the job to end")
    row = task_row(store, job, "upsert")
    (remote,) = emu.created()
    assert row["status"] == "error"
    assert row["message"].startswith(
        f"the remote ignored the abort: job {remote.id} still InProgress 1 s after it was "
        "asked to abort, and may still be running"
    )
    assert remote.abort_asked and remote.state == "InProgress"


async def test_abort_with_a_remote_that_ignores_it_says_the_job_may_still_run(
    engine, emu, tmp_path
):
    store = engine.store
    job = submit_tasks(
        store,
        tmp_path,
        "sf",
        [sf_task(emu, tmp_path, 100_000, cancel_wait_seconds=600, abort_wait_seconds=0.5)],
    )
    await until(lambda: remote_running(emu), "the remote job to be under way")
    emu.faults.ignore_abort = True
    abort_flow.abort(store.transaction, job, actor="alice")  # cancel and abort in one step
    await until(lambda: task_statuses(store, job)["upsert"] == "aborted", "Aborted")
    (remote,) = emu.created()
    message = task_row(store, job, "upsert")["message"]
    assert (
        f"the remote did not confirm the abort within 0.5 s: job {remote.id} may still be "
        "running (still InProgress;" in message
    ), message
    assert remote.state == "InProgress"


async def test_abort_confirmed_by_the_remote_says_so(engine, emu, tmp_path):
    store = engine.store
    job = submit_tasks(
        store, tmp_path, "sf", [sf_task(emu, tmp_path, 100_000, cancel_wait_seconds=600)]
    )
    await until(lambda: remote_running(emu), "the remote job to be under way")
    abort_flow.abort(store.transaction, job, actor="alice")
    await until(lambda: task_statuses(store, job)["upsert"] == "aborted", "Aborted")
    (remote,) = emu.created()
    assert remote.state == "Aborted"
    assert (
        f"the remote confirmed: job {remote.id} Aborted after"
        in (task_row(store, job, "upsert")["message"])
    )


class _Hooks:
    """Just enough engine for a remote action's run outside one."""

    def note_dirty(self, ctx: TaskContext) -> None:
        pass

    async def record_remote_job(self, ctx: TaskContext, remote_job: str) -> None:
        pass


async def test_an_abort_the_remote_refuses_because_the_job_stopped_counts_as_confirmed(
    emu, tmp_path
):
    ctx = make_ctx(_Hooks())  # type: ignore[arg-type]
    p = (
        recipe_from_dict(
            {"name": "sf", "task": [sf_task(emu, tmp_path, 1000)]}, "test", base_dir=tmp_path
        )
        .tasks[0]
        .params
    )
    remote = remote_for(ctx, p)
    try:
        job = SalesforceJob(ctx, remote, p, 1000, "CRLF")
        follower = Follower(ctx, job, timing(p))
        follower.job_id = job_id = await job.create()
        await job.prepare(job_id, None)
        await job.abort(job_id, deadline=time.monotonic() + 5)  # an earlier abort
        assert emu.job(job_id).state == "Aborted"
        await follower._abort()  # its abort is refused: 400, the job has stopped
    finally:
        await remote.aclose()
    assert ("PATCH", f"/services/data/v62.0/jobs/ingest/{job_id}/") in emu.requests
    assert ctx.message.startswith(f"the remote confirmed: job {job_id} Aborted after "), ctx.message


# -- faults ----------------------------------------------------------------------------


async def test_503s_and_a_connection_reset_are_ridden_out(engine, emu, tmp_path):
    store = engine.store
    job = submit_tasks(store, tmp_path, "sf", [sf_task(emu, tmp_path, 3000)])
    await until(lambda: remote_running(emu), "the remote job to be under way")
    with emu.lock:
        emu.faults.resets = 1
        emu.faults.unavailable = 3
    await until(
        lambda: "remote unreachable since" in (task_row(store, job, "upsert")["message"] or ""),
        "the outage to be visible on the task",
    )
    emu.rate = 100_000
    await until(lambda: job_status(store, job) in ("ended", "error"), "the job to end")
    row = task_row(store, job, "upsert")
    assert row["status"] == "ended", row["message"]
    assert row["progress_done"] == 3000 and row["attempt"] == 1
    assert emu.faults.resets == 0 and emu.faults.unavailable == 0
    assert len(emu.created()) == 1


async def test_slow_answers_time_out_and_are_retried(engine, emu, tmp_path):
    store = engine.store
    job = submit_tasks(store, tmp_path, "sf", [sf_task(emu, tmp_path, 3000, timeout_seconds=0.3)])
    await until(lambda: remote_running(emu), "the remote job to be under way")
    emu.faults.slow_s = 1.0
    await until(
        lambda: "no answer within the timeout" in (task_row(store, job, "upsert")["message"] or ""),
        "the timeouts to be visible on the task",
    )
    emu.faults.slow_s = 0
    emu.rate = 100_000
    await until(lambda: job_status(store, job) in ("ended", "error"), "the job to end")
    row = task_row(store, job, "upsert")
    assert row["status"] == "ended", row["message"]
    assert row["progress_done"] == 3000 and len(emu.created()) == 1


async def test_a_remote_gone_for_longer_than_the_bound_fails_the_task(engine, emu, tmp_path):
    store = engine.store
    task = sf_task(emu, tmp_path, 3000, give_up_after_seconds=1)
    job = submit_tasks(store, tmp_path, "sf", [task], max_attempts=1)
    await until(lambda: remote_running(emu), "the remote job to be under way")
    emu.faults.unavailable = 10**9
    await until(lambda: job_status(store, job) == "error", "the job to fail")
    message = task_row(store, job, "upsert")["message"]
    assert message.startswith("remote unreachable since "), message
    assert "(HTTP 503 on job status); gave up after " in message


async def test_a_401_is_one_clear_line(engine, emu, tmp_path):
    store = engine.store
    task = sf_task(emu, tmp_path, 10, token_file=str(token_file(tmp_path, "wrong", "old.token")))
    job = submit_tasks(store, tmp_path, "sf", [task], max_attempts=1)
    await until(lambda: job_status(store, job) == "error", "the job to fail")
    row = task_row(store, job, "upsert")
    assert row["message"] == "the remote refused our credentials (HTTP 401 on create job)"
    assert emu.created() == []


async def test_a_token_variable_missing_from_the_engines_environment_is_one_line(
    engine, emu, tmp_path
):
    store = engine.store
    task = sf_task(emu, tmp_path, 10, token_env="BATCHDECK_TEST_NO_SUCH_TOKEN")
    task.pop("token_file")
    job = submit_tasks(store, tmp_path, "sf", [task], max_attempts=1)
    await until(lambda: job_status(store, job) == "error", "the job to fail")
    assert task_row(store, job, "upsert")["message"] == (
        "environment variable BATCHDECK_TEST_NO_SUCH_TOKEN is not set in the engine's "
        "environment (token_env)"
    )
    assert emu.requests == []  # nothing was sent without a token


async def test_an_expired_token_is_read_again_from_its_file(engine, emu, tmp_path):
    store = engine.store
    task = sf_task(emu, tmp_path, 3000)
    job = submit_tasks(store, tmp_path, "sf", [task])
    await until(lambda: remote_running(emu), "the remote job to be under way")
    # The old token expires; the new one is in the file before the action looks again.
    Path(task["token_file"]).write_text("rotated-token\n")
    with emu.lock:
        emu.tokens.add("rotated-token")
        emu.faults.expire_token_after = 0
    emu.rate = 100_000
    await until(lambda: job_status(store, job) in ("ended", "error"), "the job to end")
    row = task_row(store, job, "upsert")
    assert row["status"] == "ended", row["message"]
    assert SECRET not in emu.tokens


# -- http_job ------------------------------------------------------------------------------


async def test_http_job_follows_and_cancels_a_generic_remote_job(engine, emu, tmp_path):
    store = engine.store
    done_job = submit_tasks(store, tmp_path, "quick", [http_task(emu, 300, tmp_path)])
    await until(lambda: job_status(store, done_job) in ("ended", "error"), "the job to end")
    first = emu.created("generic")[0]
    assert task_row(store, done_job, "reindex")["message"] == (
        f"remote job {first.id} succeeded: 300 of 300 records; 0 failed"
    )

    sub = tmp_path / "long"
    sub.mkdir()
    job = submit_tasks(store, sub, "long", [http_task(emu, 1_000_000, sub)])
    await until(lambda: task_row(store, job, "reindex")["progress_done"] > 0, "progress")
    flows.cancel(store.transaction, job, actor="alice")
    await until(lambda: job_status(store, job) == "canceled", "Canceled")
    remote = emu.created("generic")[1]
    row = task_row(store, job, "reindex")
    assert remote.state == "canceled" and row["status"] == "canceled"
    assert row["progress_done"] == remote.processed
    assert row["message"] == (
        f"aborted on the remote after {remote.processed:,} of 1,000,000 records; 0 failed "
        f"(job {remote.id})"
    )


# -- recipes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field", "problem"),
    [
        ({"token_file": None}, "token_env", "give exactly one of token_env"),
        ({"token_env": "SF_TOKEN"}, "token_env", "give exactly one of token_env"),
        ({"external_id_field": None}, "external_id_field", "an upsert needs"),
        ({"operation": "merge"}, "operation", "expected one of"),
        ({"instance_url": "https://u:pw@x.example"}, "instance_url", "must not hold credentials"),
        ({"instance_url": "ftp://x.example"}, "instance_url", "expected an http"),
        ({"api_version": "latest"}, "api_version", "expected a version"),
        ({"poll_seconds": 0}, "poll_seconds", "must be at least"),
    ],
)
def test_bad_salesforce_parameters_are_one_line_naming_the_file_and_field(
    tmp_path, emu, over, field, problem
):
    task = sf_task(emu, tmp_path, 1)
    for key, value in over.items():
        if value is None:
            task.pop(key)
        else:
            task[key] = value
    path = write_recipe(tmp_path, "bad", [task])
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: task 'upsert': field {field!r}: {problem}"), text


def test_bad_http_job_parameters_are_one_line(tmp_path, emu):
    for over, field in (
        ({"status_url": emu.url + "/api/v1/jobs"}, "status_url"),
        ({"success_states": ["done"]}, "success_states"),
        ({"start_body": "records=5"}, "start_body"),
    ):
        path = write_recipe(tmp_path, "bad", [{**http_task(emu, 1, tmp_path), **over}])
        with pytest.raises(RecipeError, match=f"task 'reindex': field '{field}': "):
            load_recipe(path)


def test_the_on_cancel_column_says_a_remote_job_is_aborted_there():
    from engine.flows.stopping import stops_by

    for action in ("salesforce_bulk", "http_job"):
        how = stops_by(action, {})
        assert how.cancel == "aborts the remote job" and how.key == "safe_point"


# -- a killed engine, and secrets: `batchdeck serve` as real processes ---------------------


def _secret_free(deck: Deck, job: int) -> None:
    """The token is nowhere the engine writes or shows."""
    needle = SECRET.encode()
    for path in deck.dir.iterdir():
        if path.name.startswith("batchdeck.db") or path.suffix in (".out", ".err"):
            assert needle not in path.read_bytes(), path
    for args in (("show", str(job), "--json"), ("list", "--json")):
        assert SECRET not in deck.ok(*args).out


def test_a_killed_serve_is_followed_by_one_that_follows_the_same_remote_job(
    tmp_path: Path, emu: Emulator
) -> None:
    with deck_in(tmp_path) as deck:
        deck.env["SF_TOKEN"] = SECRET  # the service's environment, not the recipe
        deck.ok("settings", "lease_seconds", "1")
        task = sf_task(emu, tmp_path, 50_000, token_env="SF_TOKEN")
        task.pop("token_file")
        job = deck.submit(write_recipe(tmp_path, "sf", [task]))
        first = deck.serve("--server", "batch-01:2")
        wait_for(lambda: remote_running(emu, 100), "the remote job to be under way")
        wait_for(lambda: deck.task(job, "upsert")["progress_done"] > 0, "progress on the task")
        (remote,) = emu.created()
        assert deck.task(job, "upsert")["remote_job"] == remote.id
        first.kill9()
        wait_for(
            lambda: time.time() - deck.sql("SELECT heartbeat_at FROM server")[0][0] > 1.5,
            "the killed engine's lease to expire",
        )
        emu.rate = 50_000
        deck.serve("--server", "batch-01:2")
        deck.wait_job(job, "ended", "error")
        row = deck.task(job, "upsert")
        assert row["status"] == "ended", row["message"]
        assert row["attempt"] == 2 and row["remote_job"] == remote.id
        assert row["progress_done"] == 50_000 == emu.job(remote.id).processed
        assert f"(job {remote.id})" in row["message"]
        assert len(emu.created()) == 1  # exactly one remote job
        assert [m for m, _ in emu.requests].count("POST") == 1
        shown = deck.show(job)
        assert shown["tasks"][0]["status"] == "ended"
        assert shown["tasks"][0]["remote_job"] == remote.id  # shown to operators
        _secret_free(deck, job)


@pytest.mark.both_databases
def test_a_200000_record_upsert_canceled_from_another_process_under_serve(
    tmp_path: Path, emu: Emulator, deck_db: str | None
) -> None:
    """The issue's scenario: ``serve`` runs the upsert, the command line (another
    process, as another host's console would) cancels it; the remote shows one job,
    Aborted, and the task's counts are the remote's."""
    emu.fail_every = 101
    with deck_in(tmp_path, deck_db) as deck:
        deck.env["SF_TOKEN"] = SECRET
        task = sf_task(emu, tmp_path, 200_000, token_env="SF_TOKEN", poll_seconds=0.5)
        task.pop("token_file")
        job = deck.submit(write_recipe(tmp_path, "sf", [task]))
        deck.serve("--server", "batch-01:2")
        wait_for(lambda: remote_running(emu, 500), "the remote job to be under way")
        wait_for(lambda: deck.task(job, "upsert")["progress_done"] > 0, "progress on the task")
        deck.ok("cancel", str(job), "--reason", "wrong sandbox")
        deck.wait_job(job, "canceled")
        (remote,) = emu.created()  # one remote job
        assert remote.state == "Aborted"
        shown = deck.show(job)["tasks"][0]
        assert shown["status"] == "canceled"
        assert shown["progress_done"] == remote.processed and shown["progress_total"] == 200_000
        assert shown["message"] == (
            f"aborted on the remote after {remote.processed:,} of 200,000 records; "
            f"{remote.failed(101):,} failed (job {remote.id})"
        )


def test_a_refused_token_from_serve_is_one_line_and_never_shown(
    tmp_path: Path, emu: Emulator
) -> None:
    with deck_in(tmp_path) as deck:
        emu.tokens = {"another-token"}
        deck.env["SF_TOKEN"] = SECRET
        task = sf_task(emu, tmp_path, 10, token_env="SF_TOKEN")
        task.pop("token_file")
        job = deck.submit(write_recipe(tmp_path, "sf", [task], max_attempts=1))
        deck.serve("--server", "batch-01:2")
        deck.wait_job(job, "error")
        shown = deck.show(job)
        assert shown["tasks"][0]["message"] == (
            "the remote refused our credentials (HTTP 401 on create job)"
        )
        assert "Traceback" not in json.dumps(shown)
        _secret_free(deck, job)


# -- the console -------------------------------------------------------------------------


async def test_the_console_shows_the_remote_counts_and_its_cancel_aborts_the_remote_job(
    tmp_path: Path, emu: Emulator
) -> None:
    db = str(tmp_path / "batchdeck.db")
    store = Store(db)
    try:
        recipe = load_recipe(write_recipe(tmp_path, "crm", [sf_task(emu, tmp_path, 100_000)]))
        job = flows.submit(store.transaction, recipe, actor="alice")
    finally:
        store.dispose()
    app, _host = embedded(db, {"batch-01": 2})
    async with app.run_test(size=(120, 30)) as pilot:
        await until(lambda: remote_running(emu, 50), "the remote job under way", pilot=pilot)
        await settle(pilot)
        app.open_job(job)
        await shown(pilot, JobDetailScreen)
        await until(
            lambda: "aborts the remote job" in painted(app), "the On cancel column", pilot=pilot
        )
        # The remote's own count, as the progress column (the message is cut at 120).
        await until(
            lambda: re.search(r" [1-9][\d,]*/100,000 records", painted(app)),
            "the remote's counts",
            pilot=pilot,
        )
        await press(pilot, "c")
        await until(lambda: app.screen.__class__.__name__ == "ConfirmCancel", "cancel", pilot=pilot)
        await press(pilot, "enter")
        await until(lambda: console_status(db, job) == "canceled", "the cancel", pilot=pilot)
        (remote,) = emu.created()
        assert remote.state == "Aborted"
        await until(
            lambda: "aborts the remote job" not in (shot := painted(app)) and "Canceled" in shot,
            "the task Canceled on screen",
            pilot=pilot,
        )
        message = one(db, "SELECT message FROM task WHERE job_id=?", job)
        assert message.startswith("aborted on the remote after ") and remote.id in message
