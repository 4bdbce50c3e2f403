"""The demo database: built through the engine's own API only, and it really runs."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.recipes import check_path
from engine.runtime.supervisor import Supervisor
from engine.store.db import open_store
from tests.waiting import until
from tui.demo import (
    CANCEL_REASON,
    CHILDREN,
    FINISHED,
    HELD,
    LIVE,
    SERVERS,
    DemoError,
    build_demo,
    recipe_names,
)

BOUND_S = 120.0  # the demo builds and runs a real engine: a generous cap


def query(db: str | Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def jobs(db: str | Path) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in query(db, "SELECT * FROM job WHERE parent_id IS NULL")}


def tasks(db: str | Path, job_name: str) -> dict[str, dict[str, Any]]:
    return {
        t["name"]: t
        for t in query(
            db,
            "SELECT t.* FROM task t JOIN job j ON j.id = t.job_id "
            "WHERE j.name=? AND j.parent_id IS NULL ORDER BY t.seq",
            job_name,
        )
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(build_demo(tmp_path_factory.mktemp("demo") / "batchdeck-demo"))


def test_files_and_recipes(demo: Path) -> None:
    root = demo.parent
    assert demo.name == "batchdeck.db"
    results = check_path(root / "recipes")
    assert sorted(Path(f).stem for f, _ in results) == sorted(recipe_names())
    assert [(f, err) for f, err in results if err] == []
    assert (root / "recipes" / "demo_tasks.py").is_file()
    with open(root / "data" / "leads.csv", encoding="utf-8") as fh:
        assert sum(1 for _ in fh) == 20_001  # header + 20,000 leads
    nightly = tasks(demo, "nightly-import")
    load = json.loads(nightly["load"]["params"])
    assert load["chunk_rows"] == 500 and load["rows_per_second"] == 400
    assert load["file"] == str(root / "data" / "leads.csv")


def test_every_terminal_status(demo: Path) -> None:
    js = jobs(demo)
    assert set(js) == set(FINISHED) | set(LIVE)

    assert js["crm-export"]["status"] == "ended"
    assert {t["status"] for t in tasks(demo, "crm-export").values()} == {"ended"}

    assert js["invoice-sync"]["status"] == "error"
    invoice = tasks(demo, "invoice-sync")
    assert invoice["parse"]["status"] == "error"
    assert "unknown currency" in invoice["parse"]["error"]
    assert invoice["load"]["status"] == "didnt_run"

    sandbox = js["sandbox-refresh"]
    assert sandbox["status"] == "canceled"
    assert CANCEL_REASON in sandbox["cancel_reason"]
    assert sandbox["cancel_reason"].startswith("Job canceled by ")
    assert sandbox["canceled_by"] and sandbox["canceled_at"]
    assert sandbox["started_at"] is None  # canceled while Waiting: nothing ran
    assert {t["status"] for t in tasks(demo, "sandbox-refresh").values()} == {"didnt_run"}

    assert js["cache-warmup"]["status"] == "canceled"
    warm = tasks(demo, "cache-warmup")["warm"]
    assert warm["status"] == "canceled" and warm["progress_done"] > 0

    legacy = js["legacy-migration"]
    assert legacy["status"] == "canceled"
    assert legacy["aborted_by"] and legacy["aborted_at"]
    migration = tasks(demo, "legacy-migration")
    assert migration["migrate"]["status"] == "aborted"
    assert 0 < migration["migrate"]["progress_done"] < migration["migrate"]["progress_total"]
    assert migration["verify"]["status"] == "didnt_run"

    statuses = {t["status"] for t in query(demo, "SELECT status FROM task")}
    assert {"didnt_run", "canceled", "aborted", "ended", "error"} <= statuses


def test_statuses_changed_only_through_the_engine(demo: Path) -> None:
    """Every status a row holds beyond its initial one was reached by a recorded move."""
    for job in query(demo, "SELECT id, status FROM job"):
        if job["status"] != "waiting":
            last = query(
                demo,
                "SELECT to_status FROM event WHERE job_id=? AND task_id IS NULL "
                "AND kind='status' ORDER BY id DESC LIMIT 1",
                job["id"],
            )
            assert last == [{"to_status": job["status"]}], job
    for task in query(demo, "SELECT id, status FROM task"):
        moves = query(
            demo,
            "SELECT to_status FROM event WHERE task_id=? AND kind='status' ORDER BY id",
            task["id"],
        )
        if task["status"] in ("waiting", "ready") and not moves:
            continue  # as submitted
        assert moves and moves[-1]["to_status"] == task["status"], task


def test_live_jobs_wait_for_the_console(demo: Path) -> None:
    js = jobs(demo)
    for name in LIVE:
        assert js[name]["status"] == ("withhold" if name == HELD else "waiting"), name
    assert [n for n, j in js.items() if j["system"]] == ["system-housekeeping"]
    assert query(demo, "SELECT count(*) AS n FROM job WHERE parent_id IS NOT NULL") == [{"n": 0}]

    calls = tasks(demo, "month-end-close")
    modes = {name: json.loads(t["params"])["mode"] for name, t in calls.items()}
    assert modes == {"open-audit": "async", "rollup": "sync"}
    called = {Path(json.loads(t["params"])["recipe"]).stem for t in calls.values()}
    assert called == set(CHILDREN)

    chain = tasks(demo, "nightly-import")
    assert [(n, t["status"]) for n, t in chain.items()] == [
        ("extract", "ready"),
        ("load", "waiting"),
        ("score", "waiting"),
        ("report", "waiting"),
    ]
    actions = {t["action"] for t in query(demo, "SELECT action FROM task")}
    assert {
        "bulk_import_csv",
        "approval",
        "blocking_wait",
        "shell",
        "wait",
        "call_job",
        "python",
        "fail",
        "bulk_export_csv",
        "salesforce_bulk",
    } <= actions
    assert query(demo, "SELECT count(*) AS n FROM server WHERE lease_owner IS NOT NULL") == [
        {"n": 0}
    ]  # the build's engine is gone


def test_build_twice_gives_a_fresh_database(demo: Path, tmp_path: Path) -> None:
    # The first build is the module's, copied (a build takes ~1.5 s).
    shutil.copytree(demo.parent, tmp_path, dirs_exist_ok=True)
    first = str(tmp_path / demo.name)
    before = query(first, "SELECT id, name, status FROM job ORDER BY id")
    second = build_demo(tmp_path)
    assert second == first
    after = query(second, "SELECT id, name, status FROM job ORDER BY id")
    assert after == before
    assert len(after) == len(FINISHED) + len(LIVE)


def test_refuses_a_database_that_is_not_a_demo(tmp_path: Path) -> None:
    store = open_store(tmp_path / "batchdeck.db")
    store.dispose()
    with pytest.raises(DemoError, match="not a demo database"):
        build_demo(tmp_path)
    assert (tmp_path / "batchdeck.db").exists()


async def test_demo_runs(tmp_path: Path) -> None:
    # Called from inside a running loop: build_demo runs its own engine in a thread.
    db = build_demo(tmp_path / "demo")
    engine = Supervisor(db, dict(SERVERS))
    await engine.start()
    try:

        def task(job: str, name: str) -> dict[str, Any]:
            return tasks(db, job)[name]

        await until(
            lambda: task("nightly-import", "load")["progress_done"] > 0,
            "the bulk import reports progress",
            bound=BOUND_S,
        )
        await until(
            lambda: task("ledger-close", "approve-posting")["status"] == "executing",
            "the approval task waits for an operator",
            bound=BOUND_S,
        )
        await until(
            lambda: task("warehouse-sync", "pull-inventory")["status"] == "executing",
            "the blocking wait is executing",
            bound=BOUND_S,
        )
        await until(
            lambda: "tick" in (task("log-shipper", "ship")["output"] or ""),
            "the shell task shows its output",
            bound=BOUND_S,
        )
        await until(
            lambda: task("quarterly-reconcile", "reconcile")["status"] == "executing",
            "the 30-minute wait is executing",
            bound=BOUND_S,
        )
        await until(
            lambda: (
                sorted(
                    (j["name"], j["call_mode"])
                    for j in query(
                        db,
                        "SELECT c.name, c.call_mode FROM job c JOIN job p ON p.id = c.parent_id "
                        "WHERE p.name='month-end-close'",
                    )
                )
                == [("audit-trail", "async"), ("ledger-rollup", "sync")]
            ),
            "month-end-close has started its two children",
            bound=BOUND_S,
        )
        await until(
            lambda: task("crm-upsert", "upsert-leads")["progress_done"] > 0,
            "the remote bulk upsert reports the remote's counts",
            bound=BOUND_S,
        )
        assert task("crm-upsert", "upsert-leads")["remote_job"]
        assert jobs(db)["payroll-run"]["status"] == "withhold"
        assert engine.stats.errors == []
    finally:
        await engine.stop()


def test_the_demo_has_a_stuck_job_as_soon_as_it_opens(tmp_path: Path) -> None:
    """Through the console's own start (make_console, the host starting its engine):
    the blocking wait is canceled as it starts, so `list --stuck` and the STUCK banner
    show at once, naming the enhanced abort."""
    import argparse
    import asyncio

    from tui.launch import make_console

    args = argparse.Namespace(command="demo", dir=str(tmp_path / "demo"), server=None)
    made = make_console(args)  # builds the demo (its own loop): outside any loop
    assert not isinstance(made, int)
    app, host, db = made
    asyncio.run(_stuck_at_once(app.mode_label, host, db))


async def _stuck_at_once(mode: str, host: Any, db: str) -> None:
    from engine.reader.reader import Reader
    from tests.tui_support import RecordingApp, painted
    from tui.screens.detail import JobDetailScreen

    console = RecordingApp(db, mode_label=mode, host=host, actor="alice")
    async with console.run_test(size=(120, 40)) as pilot:
        await until(
            lambda: jobs(db)["warehouse-sync"]["status"] == "canceling",
            "the demo's blocking wait canceled",
            pilot=pilot,
            bound=BOUND_S,
        )
        reader = Reader(db)
        try:
            stuck = await reader.stuck_jobs()
        finally:
            await reader.close()
        assert [s.job.name for s in stuck] == ["warehouse-sync"]
        assert "A: enhanced abort" in stuck[0].banner
        console.open_job(stuck[0].job.id)
        await until(
            lambda: isinstance(console.screen, JobDetailScreen) and "STUCK ·" in painted(console),
            "the banner",
            pilot=pilot,
            bound=BOUND_S,
        )
        await host.stop_engine()
