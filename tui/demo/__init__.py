"""``batchdeck demo``: a fresh demo database that shows every feature in its first minute.

``build_demo(DIR)`` writes the data files and the recipes into DIR, creates
``DIR/batchdeck.db`` and fills it through the engine's own API only — submit, cancel,
abort, hold, and a short-lived embedded engine for the jobs that must have run — so
every status in it was reached through the transition table. No status column is
written here.

What the console finds when it opens the database with its engine on
``SERVERS`` (batch-01 with 6 slots, batch-02 with 4). Tasks are claimed in id order,
batch-01's slots first, so the submission order below is the slot plan; there are
enough slots for the children and the system job to start within the first seconds.

finished (built here):
  sandbox-refresh      Canceled while Waiting, reason "...: demo: wrong sandbox"
  crm-export           Ended
  invoice-sync         Error (parse fails; load Didn't run)
  cache-warmup         Canceled while running (its wait task Canceled)
  legacy-migration     aborted mid-import (task Aborted, progress kept; job Canceled)
live (Waiting until the console's engine starts them):
  nightly-import       batch-01  extract -> load (bulk import, ~50 s) -> score (python)
                                 -> report
  ledger-close         batch-01  approval -> post-entries
  log-shipper          batch-01  shell, a line a second (output tail)
  month-end-close      batch-01  async child audit-trail, then waits for a sync child
                                 ledger-rollup
  warehouse-sync       batch-02  blocking_wait 600 s, canceled as the console's engine
                                 starts it (``stage_stuck``): stuck at once (a cancel
                                 cannot stop an unmanaged wait); abort shows Aborting
  quarterly-reconcile  batch-02  30-minute wait: cancel is Canceled at once
  crm-upsert           batch-02  salesforce_bulk on the demo's remote stand-in
                                 (tui.demo.remote): cancel aborts the remote job
  system-housekeeping  queued    system job: cancel refused; next free slot is its
  payroll-run          held      Withhold
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from engine.core.identity import current_actor
from engine.core.refusal import Refusal
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import requests
from engine.flows import settings as setting_flows
from engine.recipes import load_recipe
from engine.store.db import Store, open_store
from tui.demo.data import remove, write_crm, write_leads
from tui.demo.remote import RECIPE as REMOTE_RECIPE
from tui.demo.remote import point_at_emulator

R = TypeVar("R")

HERE = Path(__file__).parent
SERVERS = {"batch-01": 6, "batch-02": 4}
DB_NAME = "batchdeck.db"
MARKER = ".batchdeck-demo"
CANCEL_REASON = "demo: wrong sandbox"
WARMUP_REASON = "demo: superseded by the nightly run"
# Short enough that an enhanced abort's restart happens while the operator watches.
DRAIN_SECONDS = "30"
BUILD_TIMEOUT_S = 60.0

#: Jobs that have finished when the demo opens, in submission order.
FINISHED = ("sandbox-refresh", "crm-export", "invoice-sync", "cache-warmup", "legacy-migration")
#: Jobs left for the console's engine, in submission order: that order decides which
#: tasks get the slots first.
LIVE = (
    "nightly-import",
    "ledger-close",
    "log-shipper",
    "month-end-close",
    "warehouse-sync",
    "quarterly-reconcile",
    "crm-upsert",
    "system-housekeeping",
    "payroll-run",
)
HELD = "payroll-run"
#: Recipes only called by other recipes (month-end-close's children).
CHILDREN = ("audit-trail", "ledger-rollup")
PY_MODULE = "demo_tasks.py"


class DemoError(Exception):
    """The demo cannot be built; the message is one line."""


def recipe_names() -> list[str]:
    return [*FINISHED, *LIVE, *CHILDREN]


def build_demo(directory: str | os.PathLike[str]) -> str:
    """Build a fresh demo in ``directory``; returns the path of its database."""
    root = Path(os.path.abspath(directory))
    root.mkdir(parents=True, exist_ok=True)
    db = root / DB_NAME
    marker = root / MARKER
    if db.exists() and not marker.exists():
        raise DemoError(
            f"{db} exists and is not a demo database: choose another directory for the demo"
        )
    marker.write_text("A batchdeck demo directory: `batchdeck demo` rebuilds it.\n")
    for suffix in ("", "-wal", "-shm", "-journal"):
        remove(Path(str(db) + suffix))
    recipes = _write_files(root)
    store = open_store(db)
    try:
        with store.transaction() as sql:
            setting_flows.store(sql, "drain_seconds", DRAIN_SECONDS)
        actor = current_actor()
        _build_finished(store, recipes, actor)
        _submit_live(store, recipes, actor)
    finally:
        store.dispose()
    return str(db)


# -- files ------------------------------------------------------------------------------


def _write_files(root: Path) -> Path:
    data = root / "data"
    reports = root / "reports"
    recipes = root / "recipes"
    for folder in (data, reports, recipes):
        folder.mkdir(exist_ok=True)
    write_leads(data / "leads.csv")
    write_crm(data / "crm.db")
    for name in ("target.db", "legacy.db"):  # the import targets start empty
        for suffix in ("", "-journal", "-wal", "-shm"):
            remove(data / (name + suffix))
    for name in ("leads-by-region.csv", "contacts.csv", "leads-failed.csv"):
        for suffix in ("", ".partial"):
            remove(reports / (name + suffix))
    # Only the demo's own files are replaced: anything else in DIR is left alone.
    for name in recipe_names():
        shutil.copyfile(HERE / f"{name}.toml", recipes / f"{name}.toml")
    shutil.copyfile(HERE / PY_MODULE, recipes / PY_MODULE)
    point_at_emulator(recipes / f"{REMOTE_RECIPE}.toml")
    return recipes


# -- jobs -------------------------------------------------------------------------------


def _submit(store: Store, recipes: Path, name: str, actor: str) -> int:
    return flows.submit(store.transaction, load_recipe(recipes / f"{name}.toml"), actor=actor)


def _submit_live(store: Store, recipes: Path, actor: str) -> None:
    for name in LIVE:
        job_id = _submit(store, recipes, name, actor)
        if name == HELD:
            requests.hold(store.transaction, job_id, actor=actor)


def _build_finished(store: Store, recipes: Path, actor: str) -> None:
    # Canceled while Waiting: no engine is running yet, so nothing has started.
    sandbox = _submit(store, recipes, "sandbox-refresh", actor)
    flows.cancel(store.transaction, sandbox, actor=actor, words=CANCEL_REASON)
    _run_async(lambda: _run_finishing(store, recipes, actor))


async def _run_finishing(store: Store, recipes: Path, actor: str) -> None:
    """A short-lived engine runs the jobs that must have run; stopped before returning."""
    from engine.runtime.supervisor import Supervisor

    engine = Supervisor(store.path, dict(SERVERS))
    await engine.start()
    try:
        ids = {}
        for name in ("crm-export", "invoice-sync", "cache-warmup", "legacy-migration"):
            ids[name] = await asyncio.to_thread(_submit, store, recipes, name, actor)

        def warming() -> bool:
            status, done = _task(store, ids["cache-warmup"], "warm")
            return status == "executing" and done >= 1  # "waited 1 s of 600 s"

        await _until(warming, "cache-warmup waiting its first second")
        await asyncio.to_thread(
            flows.cancel, store.transaction, ids["cache-warmup"], actor=actor, words=WARMUP_REASON
        )

        def migrating() -> bool:
            status, done = _task(store, ids["legacy-migration"], "migrate")
            return status == "executing" and done >= 2000

        await _until(migrating, "legacy-migration importing its first rows")
        await asyncio.to_thread(
            abort_flow.abort, store.transaction, ids["legacy-migration"], actor=actor
        )

        await _until(
            lambda: all(
                _job_status(store, j) in ("ended", "error", "canceled") for j in ids.values()
            ),
            "the finished demo jobs ending",
        )
    finally:
        await engine.stop()


STUCK_JOB, STUCK_TASK = "warehouse-sync", "pull-inventory"
STUCK_REASON = "demo: stuck in an unmanaged wait"
# The cancel is dated this far back, past stuck_seconds (300 by default), so that the
# STUCK banner and `batchdeck list --stuck` show as soon as the demo opens.
STUCK_AGO_S = 330.0


async def stage_stuck(db_path: str) -> None:
    """Once the console's engine runs the demo's blocking wait, cancel it, dated
    STUCK_AGO_S back: a cancel cannot stop an unmanaged wait, so the job is stuck at
    once and names its next step (enhanced abort). Gives up quietly after
    BUILD_TIMEOUT_S: the demo runs on without it."""
    store = Store(db_path)
    try:
        with store.read() as conn:
            job_id = conn.exec_driver_sql(
                "SELECT id FROM job WHERE name=? AND parent_id IS NULL", (STUCK_JOB,)
            ).scalar_one()
        await _until(lambda: _task(store, job_id, STUCK_TASK)[0] == "executing", STUCK_JOB)
        await asyncio.to_thread(
            flows.cancel,
            store.transaction,
            job_id,
            actor=current_actor(),
            words=STUCK_REASON,
            at=time.time() - STUCK_AGO_S,
        )
    except (DemoError, Refusal):
        pass  # the operator acted on it first, or it never started: nothing to stage
    finally:
        store.dispose()


def _task(store: Store, job_id: int, name: str) -> tuple[str, float]:
    with store.read() as conn:
        row = conn.exec_driver_sql(
            "SELECT status, progress_done FROM task WHERE job_id=? AND name=?", (job_id, name)
        ).one()
    return row[0], row[1]


def _job_status(store: Store, job_id: int) -> str:
    with store.read() as conn:
        return conn.exec_driver_sql("SELECT status FROM job WHERE id=?", (job_id,)).scalar_one()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise DemoError(f"demo build: gave up waiting for {what} after {BUILD_TIMEOUT_S:g} s")
        await asyncio.sleep(0.05)


def _run_async(make: Callable[[], Awaitable[R]]) -> R:
    """``asyncio.run``, also when called from inside a running loop (in a thread then)."""

    def run() -> R:
        async def main() -> Any:
            return await make()

        return asyncio.run(main())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(1, thread_name_prefix="batchdeck-demo") as pool:
        return pool.submit(run).result()


__all__ = ["DemoError", "build_demo", "recipe_names", "stage_stuck"]
