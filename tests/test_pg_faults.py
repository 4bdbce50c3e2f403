"""PostgreSQL going away under ``batchdeck serve`` (issue 21): stopped with
``pg_ctl stop -m fast`` and started again on the suite's own server, or our
connections ended with ``pg_terminate_backend``. Real processes, a real database.

Each test asserts the contract: no task ran twice (each run appends to a file), no
task Error from the fault, the job finishes, the server rows tell the truth, and the
engine serves again on its own. The suite's server is always started again, whatever
happens in the test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fault_support import (
    assert_requeued_for_the_outage,
    assert_rows_tell_the_truth,
    runs_of,
    shells_recipe,
)
from tests.pg_support import new_pg_database, pg_deck
from tests.proc_support import wait_for


@pytest.fixture
def deck(tmp_path: Path, pg_server: Any) -> Iterator[Any]:
    d = pg_deck(tmp_path, new_pg_database(pg_server))
    try:
        yield d
    finally:
        d.close()


@contextlib.contextmanager
def postgresql_stopped(server: Any) -> Iterator[None]:
    """The suite's PostgreSQL stopped (``pg_ctl stop -m fast``) for the block; started
    again after it, whatever happens."""
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    try:
        yield
    finally:
        server.ensure_postgres_running()


def start_pair(deck: Any) -> tuple[int, Path, Path]:
    runs, go = deck.dir / "runs", deck.dir / "go"
    job = deck.submit(deck.recipe("pair", shells_recipe(["one", "two"], runs, go)))
    for name in ("one", "two"):
        deck.wait_task(job, name, "executing")
    wait_for(lambda: len(runs_of(runs)) == 2, "both runs to start")
    return job, runs, go


def finish(deck: Any, job: int, runs: Path, go: Path, attempt: int) -> None:
    for name in ("one", "two"):
        wait_for(lambda n=name: deck.task(job, n)["attempt"] == attempt, f"{name} at {attempt}")
        deck.wait_task(job, name, "executing")
    go.touch()
    assert deck.wait_job(job, "ended", "error") == "ended", deck.show(job)
    ends = [x for x in runs_of(runs) if x.startswith("end-")]
    assert sorted(ends) == ["end-one", "end-two"], runs_of(runs)  # each ran to its end once
    for name in ("one", "two"):
        assert deck.task(job, name)["attempt"] == attempt


def test_postgresql_stopped_for_three_leases_sends_the_stopped_runs_back_to_ready(
    deck: Any, pg_server: Any
) -> None:
    deck.ok("settings", "lease_seconds", "1")
    serve = deck.serve("--server", "batch-01:2")
    job, runs, go = start_pair(deck)
    with postgresql_stopped(pg_server):
        time.sleep(3.5)  # the fault's length, not a wait for a result
    finish(deck, job, runs, go, attempt=2)
    assert_requeued_for_the_outage(deck, job, ["one", "two"])
    assert serve.running()
    assert_rows_tell_the_truth(deck)
    assert "cannot reach database" in serve.errors()


def test_postgresql_stopped_briefly_costs_the_running_tasks_nothing(
    deck: Any, pg_server: Any
) -> None:
    deck.ok("settings", "lease_seconds", "5")
    serve = deck.serve("--server", "batch-01:2")
    job, runs, go = start_pair(deck)
    beat = deck.sql("SELECT heartbeat_at FROM server")[0][0]
    wait_for(lambda: deck.sql("SELECT heartbeat_at FROM server")[0][0] != beat, "a beat")
    with postgresql_stopped(pg_server):
        pass  # down for as long as a fast stop and a start take: well under the lease
    finish(deck, job, runs, go, attempt=1)
    assert serve.running()
    assert_rows_tell_the_truth(deck)


def test_terminated_connections_cost_the_running_tasks_nothing(deck: Any) -> None:
    deck.ok("settings", "lease_seconds", "2")
    serve = deck.serve("--server", "batch-01:2")
    job, runs, go = start_pair(deck)
    for _ in range(3):
        deck.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finish(deck, job, runs, go, attempt=1)
    assert serve.running()
    assert_rows_tell_the_truth(deck)
