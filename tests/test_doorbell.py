"""Another process's commit wakes the engine as it happens (SQLite: the file's doorbell;
PostgreSQL: the notification, handed to the loop at once), not at its next poll: here
the poll is a minute away, so only the signal can make the engine act in time."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.flows import base as flows
from engine.runtime import supervisor as runtime
from engine.runtime.supervisor import Supervisor
from engine.sql import doorbell
from engine.store.db import Store
from tests.engine_support import job_status, submit_tasks, task_statuses, until

LONG = [{"name": "w", "action": "wait", "seconds": 600}]


@pytest.mark.both_databases
async def test_a_submit_and_a_cancel_from_another_process_wake_the_engine(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "WATCH_S", 60.0)
    engine = Supervisor(db, {"batch-01": 2}, poll_interval=60.0)
    await engine.start()
    other = Store(db)  # not the engine's Store: its commits reach the engine only by signal
    try:
        job = submit_tasks(other, tmp_path, "long", LONG)
        await until(lambda: task_statuses(other, job) == {"w": "executing"}, "started", bound=20)
        flows.cancel(other.transaction, job, actor="ops")
        await until(lambda: job_status(other, job) == "canceled", "canceled", bound=20)
    finally:
        other.dispose()
        await engine.stop()


def test_a_ring_reaches_the_bell_of_the_same_file_only(tmp_path: Path) -> None:
    import asyncio

    async def scenario() -> list[str]:
        heard: list[str] = []
        a = doorbell.Doorbell.open(str(tmp_path / "a.db"), lambda: heard.append("a"))
        b = doorbell.Doorbell.open(str(tmp_path / "b.db"), lambda: heard.append("b"))
        assert a is not None and b is not None
        try:
            doorbell.ring(str(tmp_path / "a.db"))
            # The same file by another name: its real path is the bell's.
            (tmp_path / "link.db").symlink_to(tmp_path / "a.db")
            doorbell.ring(str(tmp_path / "link.db"))
            for _ in range(100):
                if len(heard) >= 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            a.close()
            b.close()
        return heard

    heard = asyncio.run(scenario())
    assert heard and set(heard) == {"a"}


@pytest.mark.both_databases
async def test_a_cancel_reaches_the_running_task_before_the_engines_next_write(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told of another process's commit, the engine reads which of its runs an operator
    asked to stop and tells their server before its tick's write transaction: here every
    tick that would see the cancel is held back, and the task still stops."""
    import threading

    from engine.runtime import tick as batch

    held = threading.Event()
    real_tick = batch.tick

    def tick_unless_canceling(conn, inp):  # noqa: ANN001, ANN202 - batch.tick's own
        if inp.running and batch.stopping(conn, inp.running):
            held.wait(60)  # released when the test ends
        return real_tick(conn, inp)

    monkeypatch.setattr(batch, "tick", tick_unless_canceling)
    seen = tmp_path / "seen"
    script = f"trap 'echo stopped > {seen}; exit 0' TERM; while :; do sleep 0.05; done"
    engine = Supervisor(db, {"batch-01": 2}, poll_interval=0.02)
    await engine.start()
    other = Store(db)
    try:
        task = [{"name": "w", "action": "shell", "command": ["sh", "-c", script]}]
        job = submit_tasks(other, tmp_path, "long", task)
        await until(lambda: task_statuses(other, job) == {"w": "executing"}, "started", bound=20)
        await until(lambda: bool(engine._runners), "the run on its server", bound=20)
        flows.cancel(other.transaction, job, actor="ops")
        await until(seen.exists, "the task told of its cancel while no tick may write", bound=20)
    finally:
        held.set()
        other.dispose()
        await engine.stop()
