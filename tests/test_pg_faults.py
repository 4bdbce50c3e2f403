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
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg_support import new_pg_database, pg_deck
from tests.proc_support import pid_alive, wait_for

WAIT = "echo start-{n} >> {runs}; while [ ! -f {go} ]; do sleep 0.05; done; echo end-{n} >> {runs}"


def pair_recipe(runs: Path, go: Path) -> str:
    """Two shell tasks, each appending to ``runs`` when it starts and when it ends (once
    ``go`` exists)."""
    text = 'name = "pair"\n'
    for n in ("one", "two"):
        command = json.dumps(["sh", "-c", WAIT.format(n=n, runs=runs, go=go)])
        text += f'\n[[task]]\nname = "{n}"\naction = "shell"\ncommand = {command}\n'
    return text


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


def runs_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def start_pair(deck: Any) -> tuple[int, Path, Path]:
    runs, go = deck.dir / "runs", deck.dir / "go"
    job = deck.submit(deck.recipe("pair", pair_recipe(runs, go)))
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


def assert_rows_tell_the_truth(deck: Any) -> None:
    for status, pid in deck.sql("SELECT status, pid FROM server"):
        if status == "online":
            assert pid is not None and pid_alive(pid), (status, pid)


def test_postgresql_stopped_for_three_leases_sends_the_stopped_runs_back_to_ready(
    deck: Any, pg_server: Any
) -> None:
    deck.ok("settings", "lease_seconds", "1")
    serve = deck.serve("--server", "batch-01:2")
    job, runs, go = start_pair(deck)
    with postgresql_stopped(pg_server):
        time.sleep(3.5)  # the fault's length, not a wait for a result
    finish(deck, job, runs, go, attempt=2)
    for name in ("one", "two"):
        tid = deck.task(job, name)["id"]
        reasons = [r[4] for r in deck.events(job) if r[0] == tid and r[2] == "ready"]
        assert any(
            r and r.startswith("interrupted: the engine could not reach its database for ")
            for r in reasons
        ), reasons
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
