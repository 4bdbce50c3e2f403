"""Operator tools beyond one job at a time (issue 11): bulk cancel and abort by filter,
rerun what did not end, stuck jobs, how each task stops, who may abort, engine health.

Most command-line cases run ``engine.cli.main.main`` in-process against a real SQLite file
(the subprocess is not what they test); a few run the real command for its exit codes.
Waiting is always for a condition, polled; nothing asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.main import main as cli_main
from engine.core.format import clock
from engine.core.manager_rule import is_manager, refusal
from engine.core.refusal import Refusal
from engine.core.setting_values import SettingError
from engine.core.views import StoppingTask
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import bulk as bulk_flow
from engine.flows import settings as setting_flows
from engine.flows.rerun import preview, rerun
from engine.flows.stopping import stops_by
from engine.reader.reader import Reader, span, stuck_banner
from engine.runtime import tick as batch
from engine.store.db import Store
from tests.engine_support import (
    events,
    job_row,
    job_status,
    reading,
    submit_tasks,
    task_row,
    task_statuses,
    until,
)
from tests.proc_support import deck_in, user

WAIT = [{"name": "sleep", "action": "wait", "seconds": 60}]


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db")
    yield s
    s.dispose()


def run_cli(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    """``batchdeck --db DB ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = cli_main(["--db", db, *args])
    out, err = capsys.readouterr()
    return rc, out, err


def as_user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the command line see ``name`` as the user asking."""
    monkeypatch.setattr("engine.core.identity.current_actor", lambda: name)
    monkeypatch.setattr("engine.core.manager_rule.current_actor", lambda: name)


def all_rows(path: str) -> list[str]:
    """Every row of every table, as SQL: equal before and after means nothing changed."""
    with sqlite3.connect(path) as raw:
        return list(raw.iterdump())


def start_one_task(store: Store, job_id: int) -> None:
    """Move the job's first ready task to Executing on batch-01, as a server's claim does
    (no engine runs: the task stays Executing)."""
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 4}, "test:1:x", at=1.0)
        first = conn.exec_driver_sql(
            "SELECT min(id) FROM task WHERE job_id=? AND status='ready'", (job_id,)
        ).scalar_one()
        conn.exec_driver_sql(
            "UPDATE task SET status='waiting' WHERE status='ready' AND id != ?", (first,)
        )
        batch.claim(conn, {"batch-01": 1}, at=2.0)
        conn.exec_driver_sql(
            "UPDATE task SET status='ready' WHERE status='waiting' AND id NOT IN "
            "(SELECT task_id FROM taskdep)"
        )
    assert job_status(store, job_id) == "executing"


def mixed_jobs(store: Store, tmp_path: Path) -> dict[str, int]:
    """One job of each kind a bulk plan must tell apart."""
    ids = {"executing": submit_tasks(store, tmp_path, "exe", WAIT)}
    start_one_task(store, ids["executing"])
    ids["waiting"] = submit_tasks(store, tmp_path, "wai", WAIT)
    ids["system"] = submit_tasks(store, tmp_path, "sys", WAIT, system=True)
    ids["ended"] = submit_tasks(store, tmp_path, "end", WAIT)
    flows.cancel(store.transaction, ids["ended"], actor="ops")  # a final status: Canceled
    ids["canceling"] = submit_tasks(store, tmp_path, "cng", WAIT)
    start_one_task(store, ids["canceling"])
    flows.cancel(store.transaction, ids["canceling"], actor="ops")
    assert job_status(store, ids["canceling"]) == "canceling"
    return ids


# -- bulk cancel and abort -------------------------------------------------------------------


def test_bulk_cancel_plan_acts_on_some_and_refuses_the_others_with_their_reasons(
    store: Store, tmp_path: Path
) -> None:
    ids = mixed_jobs(store, tmp_path)
    plan = reading(store, bulk_flow.plan, "cancel", actor="ops", job_ids=[*ids.values(), 999])
    assert sorted(j.job.id for j in plan.act) == sorted([ids["executing"], ids["waiting"]])
    refused = {j.job.id: str(j.refusal) for j in plan.refused}
    assert refused == {
        ids["system"]: "System jobs cannot be canceled",
        ids["ended"]: f"Job {ids['ended']} already Canceled",
        ids["canceling"]: f"Job {ids['canceling']} is already Canceling: nothing to do",
    }
    assert plan.missing == [999]
    assert plan.counts() == {"executing": 1, "waiting": 1}

    # Filters: without a status, only jobs not in a final status are considered.
    by_filter = reading(store, bulk_flow.plan, "cancel", actor="ops")
    assert ids["ended"] not in {j.job.id for j in by_filter.jobs}
    named = reading(store, bulk_flow.plan, "cancel", actor="ops", name="w*", statuses=["waiting"])
    assert [j.job.id for j in named.jobs] == [ids["waiting"]]
    assert reading(store, bulk_flow.plan, "cancel", actor="ops", user="nobody").jobs == []
    mine = reading(store, bulk_flow.plan, "cancel", actor="ops", user="tester")
    assert {j.job.id for j in mine.jobs} == {
        ids[k] for k in ("executing", "waiting", "system", "canceling")
    }


def test_bulk_abort_plan_lists_the_tasks_of_each_job_and_refuses_jobs_with_nothing_running(
    store: Store, tmp_path: Path
) -> None:
    ids = mixed_jobs(store, tmp_path)
    plan = reading(store, bulk_flow.plan, "abort", actor="ops", job_ids=list(ids.values()))
    act = {j.job.id: j for j in plan.act}
    assert set(act) == {ids["executing"], ids["canceling"]}
    assert act[ids["executing"]].abort.cancel_first
    assert [t.name for t in act[ids["canceling"]].abort.tasks] == ["sleep"]
    assert act[ids["canceling"]].abort.tasks[0].stops_by.key == "safe_point"
    refused = {j.job.id: str(j.refusal) for j in plan.refused}
    assert (
        refused[ids["waiting"]] == f"Job {ids['waiting']} is Waiting: nothing is running to abort"
    )
    assert refused[ids["system"]] == "System jobs cannot be aborted"


def test_bulk_cancel_goes_in_chunks_of_jobs_and_acts_only_on_the_confirmed_jobs(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = submit_tasks(store, tmp_path, "a", WAIT)
    b = submit_tasks(store, tmp_path, "b", WAIT)
    c = submit_tasks(store, tmp_path, "c", WAIT)
    plan = reading(store, bulk_flow.plan, "cancel", actor="ops", job_ids=[a, b, c])
    assert len(plan.act) == 3
    # Between the plan and the confirmation: b is canceled by someone else, and a new
    # job appears that the filter would select now.
    flows.cancel(store.transaction, b, actor="someone")
    late = submit_tasks(store, tmp_path, "late", WAIT)

    writes: list[int] = []
    real_write = store.write

    def counting_write():  # noqa: ANN202
        writes.append(1)
        return real_write()

    monkeypatch.setattr(store, "write", counting_write)
    monkeypatch.setattr(bulk_flow, "CHUNK_JOBS", 2)
    results = bulk_flow.apply(store.transaction, plan, actor="ops", reason="bulk")
    assert [(r.job_id, r.done) for r in results] == [(a, True), (b, False), (c, True)]
    assert results[1].text == f"Job {b} already Canceled"
    assert results[0].text == f"Job {a} Canceled"
    assert len(writes) == 2  # a transaction per chunk of CHUNK_JOBS jobs
    # The refused job in the middle did not roll back the others.
    assert job_status(store, a) == "canceled" and job_status(store, c) == "canceled"
    assert job_row(store, a)["cancel_reason"] == "Job canceled by ops: bulk"
    assert job_status(store, late) == "waiting"


def test_cli_bulk_dry_run_and_no_yes_change_nothing(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = mixed_jobs(store, tmp_path)
    db = store.path
    before = all_rows(db)
    rc, out, err = run_cli(capsys, db, "cancel", "--all", "--dry-run")
    assert rc == 0, err
    assert "Cancel: 2 jobs (1 Executing, 1 Waiting)" in out
    assert f"{ids['system']}  sys  Waiting:    System jobs cannot be canceled" in out
    assert out.rstrip().endswith("Dry run: nothing changed.")
    rc, out, err = run_cli(capsys, db, "cancel", "--all")
    assert rc == 1 and err.strip() == "Nothing changed: add --yes to cancel 2 jobs."
    rc, out, err = run_cli(capsys, db, "abort", "--all", "--status", "executing", "--dry-run")
    assert rc == 0 and "Abort: 1 job (1 Executing)" in out, out + err
    rc, out, err = run_cli(capsys, db, "abort", "--all", "--enhanced")
    assert rc == 1 and "Nothing changed: add --yes to enhanced-abort" in err
    assert all_rows(db) == before


def test_cli_bulk_yes_prints_one_line_per_job_and_exit_1_when_any_is_refused(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = mixed_jobs(store, tmp_path)
    rc, out, err = run_cli(capsys, store.path, "cancel", "--all", "--yes", "--reason", "freeze")
    assert rc == 1
    lines = out.splitlines()
    assert len(lines) == 4  # executing, waiting, system, canceling (not the Canceled one)
    assert f"Job {ids['executing']} Canceling" in lines
    assert f"Job {ids['waiting']} Canceled" in lines
    assert f"refused: Job {ids['system']}: System jobs cannot be canceled" in lines
    assert err.strip() == "2 of 4 jobs refused"
    rc, out, err = run_cli(capsys, store.path, "cancel", "--all", "--status", "waiting", "--yes")
    assert (rc, out) == (1, f"refused: Job {ids['system']}: System jobs cannot be canceled\n")
    fresh = submit_tasks(store, tmp_path, "fresh", WAIT)
    rc, out, err = run_cli(capsys, store.path, "cancel", "--all", "--name", "fr*", "--yes")
    assert (rc, out, err) == (0, f"Job {fresh} Canceled\n", "")
    rc, out, err = run_cli(capsys, store.path, "cancel", "--all", "--name", "nothing*", "--yes")
    assert rc == 1 and "No job matches: nothing done" in err


@pytest.mark.parametrize(
    "args",
    [
        ("cancel",),
        ("cancel", "1", "--all"),
        ("cancel", "1", "--status", "waiting"),
        ("cancel", "--all", "--dry-run", "--yes"),
        ("cancel", "--all", "--status", "didnt_run"),
        ("cancel", "--all", "--with-children"),
        ("abort", "--all", "--user", "x", "--dry-run", "--yes"),
        ("abort",),
        ("rerun",),
    ],
)
def test_cli_bad_usage_of_the_new_commands_exits_2(
    store: Store, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    before = all_rows(store.path)
    try:
        rc, _, err = run_cli(capsys, store.path, *args)
    except SystemExit as exc:  # argparse's own usage errors
        rc, err = exc.code, capsys.readouterr().err
    assert rc == 2, err
    assert all_rows(store.path) == before


def test_real_command_exit_codes_of_bulk_and_rerun(tmp_path: Path) -> None:
    """A few runs of the real command: the exit codes scripts rely on."""
    with deck_in(tmp_path) as deck:
        recipe = deck.recipe(
            "w", 'name = "w"\n[[task]]\nname = "s"\naction = "wait"\nseconds = 60\n'
        )
        job = deck.submit(recipe)
        system = deck.submit(recipe, "--system")
        dry, no_yes, usage, rerun_refused = deck.run_all(
            ("cancel", "--all", "--dry-run"),
            ("cancel", "--all"),
            ("cancel", str(job), "--all"),
            ("rerun", str(job)),
        )
        assert dry.rc == 0 and "Dry run: nothing changed." in dry.out, str(dry)
        assert no_yes.rc == 1 and "add --yes" in no_yes.err, str(no_yes)
        assert usage.rc == 2, str(usage)
        assert rerun_refused.rc == 1 and len(rerun_refused.err_lines) == 1, str(rerun_refused)
        assert "only a job in a final status" in rerun_refused.err
        yes = deck.run("cancel", "--all", "--yes")
        assert yes.rc == 1, str(yes)  # the system job is refused
        assert yes.out.splitlines() == [
            f"Job {job} Canceled",
            f"refused: Job {system}: System jobs cannot be canceled",
        ]
        again = deck.run("rerun", str(job))
        assert again.rc == 0 and again.out.strip().isdigit(), str(again)
        assert again.out == f"{int(again.out)}\n"  # the new id alone
        assert deck.show(int(again.out))["rerun_of"] == job
        # The managers rule, as the real process's user sees it.
        deck.ok("settings", "managers", "someone-else", "--force")
        refused = deck.refused("abort", str(int(again.out)), "--yes")
        assert refused.err_lines == [
            f"batchdeck abort: Abort needs a batch job manager (someone-else); you are {user()}"
        ]
        assert refused.out == ""


# -- rerun -----------------------------------------------------------------------------------


def test_rerun_is_refused_for_a_job_not_final_or_with_nothing_to_rerun(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = submit_tasks(store, tmp_path, "w", WAIT)
    with pytest.raises(Refusal, match="is Waiting: only a job in a final status"):
        rerun(store.transaction, job, actor="ops")
    with store.write() as conn:  # every task Ended (as an engine leaves it)
        conn.exec_driver_sql("UPDATE task SET status='ended' WHERE job_id=?", (job,))
        conn.exec_driver_sql("UPDATE job SET status='ended' WHERE id=?", (job,))
    rc, out, err = run_cli(capsys, store.path, "rerun", str(job))
    assert (rc, out) == (1, "")
    assert err == f"batchdeck rerun: Job {job} Ended: every task Ended, nothing to rerun\n"
    rc, out, err = run_cli(capsys, store.path, "rerun", "4242")
    assert (rc, err) == (1, "batchdeck rerun: Job 4242 does not exist\n")


async def test_rerun_carries_ended_tasks_and_runs_the_rest_end_to_end(engine, tmp_path) -> None:
    store = engine.store
    flag = tmp_path / "flag"
    tasks = [
        {"name": "a", "action": "wait", "seconds": 0},
        {"name": "b", "action": "shell", "command": ["test", "-e", str(flag)], "after": ["a"]},
        {"name": "c", "action": "wait", "seconds": 0, "after": ["b"]},
        {"name": "d", "action": "wait", "seconds": 0},
    ]
    first = submit_tasks(store, tmp_path, "flaky", tasks)
    await until(lambda: job_status(store, first) == "error", "the first run to fail")
    assert task_statuses(store, first) == {
        "a": "ended",
        "b": "error",
        "c": "didnt_run",
        "d": "ended",
    }
    # The recipe file changes after submit: the rerun runs the recipe as submitted.
    (tmp_path / "flaky.toml").write_text('name = "other"\n[[task]]\nname = "x"\naction = "fail"\n')
    with store.reading() as sql:
        plan = preview(sql, first)
    assert (plan.carried, plan.rerun) == (("a", "d"), ("b", "c"))
    flag.touch()
    second = rerun(store.transaction, first, actor="ops")
    await until(lambda: job_status(store, second) in ("ended", "error"), "the rerun to finish")
    assert job_status(store, second) == "ended"
    assert task_statuses(store, second) == dict.fromkeys("abcd", "ended")
    assert job_row(store, second)["rerun_of"] == first
    assert job_row(store, second)["name"] == "flaky"
    for name in ("a", "d"):  # carried over, never run again
        row = task_row(store, second, name)
        assert row["started_at"] is None and row["server"] is None
        assert row["message"] == f"carried over: Ended in job {first}"
    moved = {(e["task_id"], e["to_status"]) for e in events(store, second)}
    ids = {n: task_row(store, second, n)["id"] for n in "abcd"}
    assert (ids["a"], "executing") not in moved and (ids["d"], "executing") not in moved
    assert (ids["b"], "executing") in moved and (ids["c"], "executing") in moved
    reader = Reader(store.path)
    try:
        detail = await reader.job_detail(second)
        page = await reader.list_jobs(0, 10)
    finally:
        await reader.close()
    assert detail.to_json()["rerun_of"] == first
    assert {j.id: j.to_json()["rerun_of"] for j in page.rows} == {second: first, first: None}


async def test_a_canceled_job_is_never_retried_by_recovery(engine, tmp_path) -> None:
    """After a deliberate cancel, a restart of the engine (its recovery) runs nothing."""
    store = engine.store
    job = submit_tasks(
        store,
        tmp_path,
        "c",
        [
            {"name": "s", "action": "wait", "seconds": 60},
            {"name": "t", "action": "wait", "seconds": 0, "after": ["s"]},
        ],
    )
    await until(lambda: task_statuses(store, job)["s"] == "executing", "s to start")
    flows.cancel(store.transaction, job, actor="ops")
    await until(lambda: job_status(store, job) == "canceled", "the cancel to finish")
    with store.write() as conn:
        batch.recover(conn, "another:2:y", at=1e10)
    assert job_status(store, job) == "canceled"
    assert task_statuses(store, job) == {"s": "canceled", "t": "didnt_run"}


# -- stuck -----------------------------------------------------------------------------------


def test_stuck_banner_names_the_next_step() -> None:
    def task(status: str, key_action: str, params: dict | None = None) -> StoppingTask:
        return StoppingTask(
            1, 2, "load", key_action, status, "b1", 0.0, 0.0, stops_by(key_action, params or {})
        )

    assert span(724) == "12m 4s"
    assert stuck_banner("canceling", 724, [task("canceling", "bulk_import_csv")]) == (
        "Canceling for 12m 4s: task load has not reached a safe point. a: abort",
        "abort",
    )
    assert stuck_banner("canceling", 61, [task("aborting", "blocking_wait")]) == (
        "Aborting for 1m 1s: task load is in an unmanaged wait; only a server restart "
        "stops it. A: enhanced abort",
        "enhanced_abort",
    )
    text, step = stuck_banner("canceling", 5, [task("aborting", "wait")], enhanced_on=False)
    assert step == "restart" and text.endswith("Enhanced abort is turned off in settings.")
    text, _ = stuck_banner("canceling", 5, [task("canceling", "shell")])
    assert text == "Canceling for 5s: task load has not exited after SIGTERM. a: abort"
    # An enhanced abort already restarting its server: the next step is to wait.
    restarting = {"b1": ("draining", 1000.0)}
    text, step = stuck_banner(
        "canceling", 90, [task("aborting", "blocking_wait")], True, restarting, now=1000.0
    )
    assert step == "wait"
    assert text == (
        "Aborting for 1m 30s: task load is waiting for the restart of b1 "
        f"(draining until {clock(1000.0, 1000.0)})."
    )


async def test_stuck_for_appears_after_stuck_seconds_and_list_stuck_shows_the_job(
    engine, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = engine.store
    with store.transaction() as sql:
        setting_flows.store(sql, "stuck_seconds", "1")
    gate = tmp_path / "gate"
    job = submit_tasks(
        store,
        tmp_path,
        "held",
        [
            {
                "name": "load",
                "action": "python",
                "function": "tests.blocking_fn:block_until",
                "path": str(gate),
            }
        ],
    )
    other = submit_tasks(store, tmp_path, "calm", WAIT)
    await until(lambda: Path(str(gate) + ".started").exists(), "the unmanaged wait to start")
    reader = Reader(store.path)
    try:
        assert (await reader.job(job)).stuck_for is None
        flows.cancel(store.transaction, job, actor="ops")

        stuck_now: dict[int, float] = {}

        async def poll() -> None:
            for _ in range(1500):
                stuck_now.update(await reader.stuck_for([job, other]))
                if job in stuck_now:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("the job never became stuck")

        await poll()
        assert other not in stuck_now
        detail = await reader.job_detail(job)
        shown = detail.to_json()
        assert shown["stuck_for"] is not None and shown["stuck_for"] > 1
        load = next(t for t in shown["tasks"] if t["name"] == "load")
        assert load["stops_by"]["key"] == "restart"
        one = await reader.stuck_job(job)
        assert one.next_step == "enhanced_abort"
        assert "task load is in an unmanaged wait; only a server restart stops it" in one.banner
        assert one.banner.startswith("Canceling for ")
        # The command line runs its own event loop: in a thread, beside the engine's.
        rc, out, err = await asyncio.to_thread(
            run_cli, capsys, store.path, "list", "--stuck", "--json"
        )
        assert rc == 0, err
        listed = json.loads(out)
        assert [j["id"] for j in listed] == [job] and listed[0]["stuck_for"] > 1
        rc, out, _ = await asyncio.to_thread(run_cli, capsys, store.path, "show", str(job))
        assert out.startswith("Stuck:") and "ON CANCEL" in out
    finally:
        gate.touch()
        await until(lambda: job_status(store, job) == "canceled", "the job to finish canceling")
        assert (await reader.stuck_for([job])) == {}
        await reader.close()


def test_stops_by_follows_the_action_table() -> None:
    assert stops_by("wait", {}).key == "safe_point"
    assert stops_by("bulk_import_csv", {}).key == "safe_point"
    assert stops_by("approval", {}).key == "safe_point"
    assert stops_by("shell", {"on_cancel": "terminate"}).key == "sigterm"
    assert stops_by("shell", {"on_cancel": "finish"}).key == "finishes"
    assert stops_by("fail", {}).key == "finishes"
    assert stops_by("call_job", {"mode": "sync"}).key == "finishes"
    assert stops_by("blocking_wait", {"seconds": 1}).key == "restart"
    # python: read from its source, never imported
    assert stops_by("python", {"function": "tests.blocking_fn:block_until"}).key == "restart"
    demo = str(Path(__file__).parents[1] / "tui" / "demo" / "nightly-import.toml")
    assert stops_by("python", {"function": "demo_tasks:crunch"}, demo).key == "safe_point"
    assert stops_by("python", {"function": "nowhere:fn"}).key == "checkpoint"
    assert stops_by("python", '{"function": "nowhere:fn"}').cancel == (
        "safe point if it calls checkpoint(), else finishes first"
    )


# -- who may abort ---------------------------------------------------------------------------


def test_managers_rule_refusals_are_one_line_and_audited(store: Store, tmp_path: Path) -> None:
    job = submit_tasks(store, tmp_path, "w", WAIT)  # submitted by "tester"
    start_one_task(store, job)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "alice,  @batchops")
        assert setting_flows.get(sql, "managers") == "alice, @batchops"
    with pytest.raises(Refusal) as exc:
        abort_flow.abort(store.transaction, job, actor="bob")
    assert str(exc.value) == "Abort needs a batch job manager (alice, @batchops); you are bob"
    with pytest.raises(Refusal) as exc:
        abort_flow.abort(store.transaction, job, actor="bob from 10.0.0.5", enhanced=True)
    assert str(exc.value) == (
        "Enhanced abort needs a batch job manager (alice, @batchops); you are bob"
    )
    with pytest.raises(Refusal) as exc:
        flows.cancel(store.transaction, job, actor="bob")
    assert str(exc.value) == (
        "Cancel needs the job's submitter (tester) or a batch job manager "
        "(alice, @batchops); you are bob"
    )
    with pytest.raises(Refusal, match="Abort needs a batch job manager"):
        reading(store, bulk_flow.plan, "abort", actor="bob")
    plan = reading(store, bulk_flow.plan, "cancel", actor="bob", job_ids=[job])
    assert plan.act == [] and str(plan.refused[0].refusal).startswith("Cancel needs the job's")
    with pytest.raises(Refusal) as exc:
        setting_flows.put(store.transaction, "managers", "", actor="bob")
    assert str(exc.value) == (
        "Changing settings needs a batch job manager (alice, @batchops); you are bob"
    )
    audit = [(e["actor"], e["reason"]) for e in events(store, job) if e["kind"] == "refused"]
    assert audit == [
        ("bob", "Abort needs a batch job manager (alice, @batchops); you are bob"),
        (
            "bob from 10.0.0.5",
            "Enhanced abort needs a batch job manager (alice, @batchops); you are bob",
        ),
        (
            "bob",
            "Cancel needs the job's submitter (tester) or a batch job manager "
            "(alice, @batchops); you are bob",
        ),
    ]
    with store.read() as conn:
        refused_settings = conn.exec_driver_sql(
            "SELECT actor FROM event WHERE kind='refused' AND job_id IS NULL"
        ).fetchall()
    assert refused_settings == [("bob",)]
    assert job_status(store, job) == "executing"  # nothing changed
    # The submitter may cancel; a manager may abort.
    assert (
        flows.cancel(store.transaction, job, actor="tester from 10.0.0.9") == f"Job {job} Canceling"
    )
    assert abort_flow.abort(store.transaction, job, actor="alice").startswith(f"Aborting job {job}")


def test_a_refusal_names_its_kind_and_only_the_rules_are_audited(
    store: Store, tmp_path: Path
) -> None:
    """One ``Refusal`` type: its kind says what refused (the managers rule, the job's
    status, no such job), and the audit records exactly the rule's, decided by the kind."""
    job = submit_tasks(store, tmp_path, "w", WAIT)  # submitted by "tester"
    system = submit_tasks(store, tmp_path, "s", WAIT, system=True)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "alice")
    said = {}
    for job_id, actor in ((job, "bob"), (system, "alice"), (999, "alice")):
        with pytest.raises(Refusal) as exc:
            flows.cancel(store.transaction, job_id, actor=actor)
        said[job_id] = (exc.value.kind, exc.value.audited)
        assert str(exc.value) == exc.value.text and len(exc.value.text.splitlines()) == 1
    assert said == {job: ("rule", True), system: ("status", False), 999: ("missing", False)}
    for job_id, actor in ((job, "bob"), (system, "alice")):
        with store.reading() as sql:
            ((_, why),) = flows.cancel_dry_run(sql, job_id, actor=actor, tree=False)
        assert why is not None and why.kind == said[job_id][0]
    refused = [
        e["job_id"] for j in (job, system) for e in events(store, j) if e["kind"] == "refused"
    ]
    assert refused == [job]
    assert Refusal("status", "x") == Refusal("status", "x") != Refusal("rule", "x")


def test_group_managers_and_who_am_i(store: Store) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    assert is_manager(me, (f"@{group}",))
    assert not is_manager(me, ("@no-such-group-here", "someone-else"))
    assert is_manager(me, ())  # unset: everyone
    w = reading(store, flows.who, actor=me)
    assert (w.user, w.manager, w.restricted) == (me, True, False)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "someone-else")
    assert reading(store, flows.who, actor=me).manager is False
    assert str(refusal(reading(store, flows.who, me), "abort")) == (
        f"Abort needs a batch job manager (someone-else); you are {me}"
    )
    assert refusal(reading(store, flows.who, "someone-else"), "abort") is None
    with pytest.raises(SettingError):
        with store.transaction() as sql:
            setting_flows.store(sql, "managers", "bad name;rm")


def test_cli_refusal_by_the_managers_rule_is_one_line_exit_1(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    job = submit_tasks(store, tmp_path, "w", WAIT)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "alice")
    as_user(monkeypatch, "bob")
    for args, rule in (
        (("abort", str(job), "--yes"), "Abort needs"),
        (("cancel", str(job)), "Cancel needs the job's submitter (tester)"),
        (("settings", "stuck_seconds", "5"), "Changing settings needs"),
        (("abort", "--all", "--yes"), "Abort needs"),
    ):
        rc, out, err = run_cli(capsys, store.path, *args)
        assert rc == 1 and out == "", (args, out, err)
        assert len(err.splitlines()) == 1 and rule in err and err.rstrip().endswith("you are bob")
    as_user(monkeypatch, "alice")
    rc, out, err = run_cli(capsys, store.path, "settings", "stuck_seconds", "5")
    assert (rc, out) == (0, "stuck_seconds = 5\n")


# -- engine health ---------------------------------------------------------------------------


async def test_engine_health_tells_a_stale_lease_from_a_live_one(store: Store) -> None:
    with store.write() as conn:
        batch.claim_leases(conn, {"batch-01": 2}, "host:42:n", at=1000.0)
    reader = Reader(store.path, lease_seconds=5)
    try:
        live = await reader.engine_health(now=1003.0)
        assert (live.state, live.owner, live.servers) == ("serving", "host:42:n", ("batch-01",))
        assert live.text() == "attached"
        gone = await reader.engine_health(owner="host:42:n", now=1010.0)
        assert (gone.state, gone.gone_since) == ("gone", 1000.0)
        assert gone.text(now=1010.0) == f"engine gone since {clock(1000.0, 1000.0)}"
        with store.write() as conn:
            batch.release_leases(conn, ["batch-01"], "host:42:n", at=1011.0)
        assert (await reader.engine_health(now=1012.0)).state == "none"
    finally:
        await reader.close()


def test_cli_dry_run_of_one_job_changes_nothing_and_says_how_tasks_stop(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = submit_tasks(store, tmp_path, "w", WAIT)
    start_one_task(store, job)
    system = submit_tasks(store, tmp_path, "s", WAIT, system=True)
    before = all_rows(store.path)
    rc, out, _ = run_cli(capsys, store.path, "cancel", str(job), "--dry-run")
    assert (rc, out) == (0, f"Job {job}: would be canceled\nDry run: nothing changed.\n")
    rc, out, _ = run_cli(capsys, store.path, "cancel", str(system), "--dry-run")
    assert out.startswith(f"Job {system}: refused: System jobs cannot be canceled")
    rc, out, _ = run_cli(capsys, store.path, "abort", str(job), "--dry-run")
    assert rc == 0 and "sleep on batch-01" in out and "on cancel: at its next safe point" in out
    assert all_rows(store.path) == before


def test_cli_servers_of_a_missing_database_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --db: one line, exit 1, and no empty database left behind."""
    db = tmp_path / "typo.db"
    rc, out, err = run_cli(capsys, str(db), "servers")
    assert (rc, out) == (1, "")
    assert err == f"batchdeck servers: no such database: {db}\n"
    assert list(tmp_path.iterdir()) == []
