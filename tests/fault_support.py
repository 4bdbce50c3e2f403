"""Helpers for the tests of faults from outside the engine (issue 21): runs that record
themselves in a file, and the checks every fault test makes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from engine.flows import settings as setting_flows
from engine.store.db import Store
from tests.proc_support import pid_alive

OUTAGE_CAUSE = "interrupted: the engine could not reach its database for "


def runs_of(path: Path) -> list[str]:
    """One word per start or end of a run (each run appends its own)."""
    return path.read_text().split() if path.exists() else []


def wait_for_go(name: str, runs: Path, go: Path) -> list[str]:
    """A shell command: say "start-NAME" in ``runs``, wait until ``go`` exists, then say
    "end-NAME"."""
    script = (
        f"echo start-{name} >> {runs}; while [ ! -f {go} ]; do sleep 0.05; done; "
        f"echo end-{name} >> {runs}"
    )
    return ["sh", "-c", script]


def shells_recipe(names: list[str], runs: Path, go: Path) -> str:
    """A recipe of one ``wait_for_go`` shell task per name."""
    text = 'name = "shells"\n'
    for n in names:
        text += (
            f'\n[[task]]\nname = "{n}"\naction = "shell"\n'
            f"command = {json.dumps(wait_for_go(n, runs, go))}\n"
        )
    return text


def store_with_lease(path: Path, seconds: str) -> Store:
    store = Store(path)
    with store.transaction() as sql:
        setting_flows.store(sql, "lease_seconds", seconds)
    return store


def sqlite_row(path: Path, query: str, params: tuple = ()) -> Any:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute(query, params).fetchone()
    finally:
        conn.close()


def assert_rows_tell_the_truth(deck: Any) -> None:
    """Each Online server row names a live server process."""
    for status, pid in deck.sql("SELECT status, pid FROM server"):
        if status == "online":
            assert pid is not None and pid_alive(pid), (status, pid)


def assert_requeued_for_the_outage(deck: Any, job: int, names: list[str]) -> None:
    """Each task went back to Ready once with the outage's true cause."""
    for name in names:
        tid = deck.task(job, name)["id"]
        reasons = [r[4] for r in deck.events(job) if r[0] == tid and r[2] == "ready"]
        assert any(r and r.startswith(OUTAGE_CAUSE) for r in reasons), reasons
