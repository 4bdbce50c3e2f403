"""A lease is judged by a clock that cannot jump (issue 21): two engines on one SQLite
file, one of whose wall clocks jumps an hour forward. The other engine's heartbeats
then look an hour old to it; it must not take that engine's servers over (nor kill
them): a peer's lease expires only once it has been seen unchanged for a whole lease
of the observer's own monotonic time. Real server processes; the clock is injected.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.runtime.supervisor import Supervisor
from tests.engine_support import submit_tasks, task_row, until
from tests.fault_support import sqlite_row, store_with_lease, wait_for_go


def beats(path: Path, name: str) -> float:
    return sqlite_row(path, "SELECT heartbeat_at FROM server WHERE name=?", (name,))[0]


async def test_a_wall_clock_jump_takes_no_live_engines_servers_over(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    runs, go = tmp_path / "runs", tmp_path / "go"
    store = store_with_lease(path, "1")
    names = ["t1", "t2", "t3", "t4"]
    tasks = [{"name": n, "action": "shell", "command": wait_for_go(n, runs, go)} for n in names]
    job = submit_tasks(store, tmp_path, "jump", tasks)
    jump = [0.0]
    jumpy = Supervisor(str(path), {"batch-a": 2}, clock=lambda: time.time() + jump[0])
    steady = Supervisor(str(path), {"batch-b": 2})
    async with jumpy, steady:
        for n in names:
            await until(lambda n=n: task_row(store, job, n)["status"] == "executing", n)
        assert {task_row(store, job, n)["server"] for n in names} == {"batch-a", "batch-b"}
        jump[0] = 3600.0
        # Three leases of the jumped engine's beats: it looks at its peer at each.
        seen, count = beats(path, "batch-a"), 0
        while count < 9:
            await until(lambda s=seen: beats(path, "batch-a") != s, "a beat of the jumped engine")
            seen, count = beats(path, "batch-a"), count + 1
        go.touch()
        await until(
            lambda: all(task_row(store, job, n)["status"] == "ended" for n in names),
            "every task to end",
        )
        assert jumpy.stats.events == [] and steady.stats.events == []
    for n in names:
        assert task_row(store, job, n)["attempt"] == 1
    assert sorted(runs.read_text().split()) == sorted(
        [f"start-{n}" for n in names] + [f"end-{n}" for n in names]
    )


def test_a_takeover_takes_only_the_lease_it_saw(tmp_path: Path) -> None:
    """The re-check in the transaction that takes over: a peer that beat since it was
    seen keeps its server (and nothing of it is killed, which happens only after)."""
    from engine.runtime import tick as batch
    from engine.runtime.leases import peer_leases, take_over
    from tests.engine_support import submit_tasks, task_row

    store = store_with_lease(tmp_path / "t.db", "1")
    job = submit_tasks(store, tmp_path, "p", [{"name": "a", "action": "wait", "seconds": 600}])
    with store.write() as conn:
        batch.claim_leases(conn, {"ghost": 1}, "peer:1:x", at=time.time())
        batch.claim(conn, {"ghost": 1}, at=time.time())
    with store.read() as conn:
        seen = peer_leases(conn, "me:1:y")
    assert [(n, o) for n, o, _ in seen] == [("ghost", "peer:1:x")]
    with store.write() as conn:  # the peer beats after it was seen
        batch.heartbeat(conn, ["ghost"], "peer:1:x", at=time.time() + 1)
    with store.write() as conn:
        assert take_over(conn, "me:1:y", seen, at=time.time()) == ([], {})
    assert task_row(store, job, "a")["status"] == "executing"
    with store.read() as conn:
        seen = peer_leases(conn, "me:1:y")
    with store.write() as conn:  # seen as it is: taken, and its task recovered
        taken, moved = take_over(conn, "me:1:y", seen, at=time.time())
    assert taken == ["ghost"] and task_row(store, job, "a")["status"] == "ready"
    assert moved
