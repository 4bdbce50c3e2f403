"""A sync ``call_job`` waiting for its child holds no slot (issue 21): as many callers
as the server has slots, or a chain of calls deeper than the slots, used to wait for
ever on children that needed a slot. Real server processes, a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from engine.runtime.supervisor import Supervisor
from engine.store.db import Store
from tests.engine_support import job_status, submit_tasks, write_recipe
from tests.waiting import until


async def test_as_many_sync_callers_as_slots_finish(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    child = write_recipe(tmp_path, "child", [{"name": "w", "action": "wait", "seconds": 0.1}])
    callers = [
        {"name": f"call-{i}", "action": "call_job", "recipe": str(child), "mode": "sync"}
        for i in range(2)
    ]
    job = submit_tasks(store, tmp_path, "parent", callers)
    async with Supervisor(str(tmp_path / "t.db"), {"batch-01": 2}):
        await until(lambda: job_status(store, job) in ("ended", "error"), "the parent to end")
    assert job_status(store, job) == "ended"


async def test_a_chain_of_sync_calls_deeper_than_the_slots_finishes(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    callee = write_recipe(tmp_path, "leaf", [{"name": "w", "action": "wait", "seconds": 0.1}])
    for depth in range(4):  # four callers deep, on two slots
        callee = write_recipe(
            tmp_path,
            f"level-{depth}",
            [{"name": "call", "action": "call_job", "recipe": str(callee), "mode": "sync"}],
        )
    job = submit_tasks(
        store,
        tmp_path,
        "top",
        [{"name": "call", "action": "call_job", "recipe": str(callee), "mode": "sync"}],
    )
    async with Supervisor(str(tmp_path / "t.db"), {"batch-01": 2}):
        await until(lambda: job_status(store, job) in ("ended", "error"), "the chain to end")
    assert job_status(store, job) == "ended"
