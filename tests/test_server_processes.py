"""Servers are processes: task code cannot take the engine down, a restart really
restarts, and every write about a run is fenced by its claim.

Real engine, real server subprocesses, real SQLite files; waits are for conditions.
"""

from __future__ import annotations

import asyncio
import gc
import os
import textwrap
import time
import weakref
from pathlib import Path

import pytest

from engine.core import procs
from engine.flows import abort as abort_flow
from engine.runtime import tick as batch
from engine.runtime.supervisor import Supervisor, freeze_heap
from engine.store.db import Store
from tests.engine_support import job_status, submit_tasks, task_row, task_statuses, until

# The engine on both databases (tests/pg_support.py).
BACKENDS = ("sqlite", "postgresql")

TASK_CODE = textwrap.dedent(
    """\
    import ctypes, os, sys, time

    def exit3(ctx):
        sys.exit(3)

    async def exit_async(ctx):
        raise SystemExit(4)

    def interrupt(ctx):
        raise KeyboardInterrupt

    def hard_exit(ctx):
        os._exit(3)

    def segfault(ctx):
        ctypes.string_at(0)

    def append_forever(ctx, path):
        while True:
            with open(path, "a") as f:
                f.write("x")
            time.sleep(0.05)
    """
)


@pytest.fixture
def servers() -> dict[str, int]:
    return {"batch-01": 4}


def _code(tmp_path: Path) -> None:
    (tmp_path / "taskcode.py").write_text(TASK_CODE)


def _py(name: str, function: str, **params: object) -> dict[str, object]:
    return {"name": name, "action": "python", "function": f"taskcode:{function}", **params}


def _long(tmp_path: Path, store: Store, name: str = "bystander") -> int:
    return submit_tasks(store, tmp_path, name, [{"name": "w", "action": "wait", "seconds": 60}])


@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("exit3", "task code exited with status 3"),
        ("exit_async", "task code exited with status 4"),
        ("interrupt", "task code raised KeyboardInterrupt"),
    ],
)
async def test_task_code_that_exits_fails_only_its_own_task(engine, tmp_path, function, error):
    store = engine.store
    _code(tmp_path)
    other = _long(tmp_path, store)
    await until(lambda: task_statuses(store, other) == {"w": "executing"})
    pid = engine.procs["batch-01"].pid
    job = submit_tasks(store, tmp_path, "exits", [_py("x", function)])
    await until(lambda: job_status(store, job) == "error", "the exiting task to fail")
    t = task_row(store, job, "x")
    assert (t["status"], t["error"], t["attempt"]) == ("error", error, 1)
    # Nothing else noticed: same server process, the other job's run untouched.
    assert engine.procs["batch-01"].pid == pid and procs.alive(pid)
    assert task_row(store, other, "w")["status"] == "executing"
    assert task_row(store, other, "w")["attempt"] == 1


async def test_os_exit_in_task_code_names_the_task_and_requeues_the_others(engine, tmp_path):
    store = engine.store
    _code(tmp_path)
    other = _long(tmp_path, store)
    await until(lambda: task_statuses(store, other) == {"w": "executing"})
    old_pid = engine.procs["batch-01"].pid
    job = submit_tasks(store, tmp_path, "hard-exit", [_py("x", "hard_exit")])
    await until(lambda: job_status(store, job) == "error", "the os._exit task to fail")
    assert task_row(store, job, "x")["error"] == "task code exited with status 3"
    # The server process died with it; the other job's run goes back to Ready with
    # attempt + 1 and runs again on a fresh process.
    await until(lambda: task_row(store, other, "w")["attempt"] == 2)
    await until(lambda: task_row(store, other, "w")["status"] == "executing")
    assert not procs.alive(old_pid)
    assert engine.procs["batch-01"].pid != old_pid


async def test_a_segfault_fails_the_task_with_the_signal(engine, tmp_path):
    store = engine.store
    _code(tmp_path)
    job = submit_tasks(store, tmp_path, "crash", [_py("x", "segfault")])
    await until(lambda: job_status(store, job) == "error", "the crashing task to fail")
    assert task_row(store, job, "x")["error"] == "server process died: signal 11 (SIGSEGV)"
    # The server came back: new work runs.
    after = submit_tasks(store, tmp_path, "after", [{"name": "w", "action": "wait", "seconds": 0}])
    await until(lambda: job_status(store, after) == "ended", "work after the crash")


async def test_enhanced_abort_restart_stops_a_plain_function_for_good(engine, tmp_path):
    store = engine.store
    _code(tmp_path)
    out = tmp_path / "appended"
    job = submit_tasks(store, tmp_path, "appender", [_py("x", "append_forever", path=str(out))])
    await until(lambda: out.exists() and out.stat().st_size >= 2, "the function to append")
    old_pid = engine.procs["batch-01"].pid
    abort_flow.abort(store.transaction, job, actor="alice")
    # A plain abort cannot stop an unmanaged wait: Aborting, and it keeps appending.
    assert task_statuses(store, job) == {"x": "aborting"}
    size = out.stat().st_size
    await until(lambda: out.stat().st_size > size, "the function to go on appending")
    abort_flow.abort(store.transaction, job, actor="alice", enhanced=True)
    await until(lambda: task_statuses(store, job) == {"x": "aborted"}, "the restart")
    # Aborted means its code runs nowhere: the process that ran it is gone, and so the
    # file stops growing.
    assert not procs.alive(old_pid)
    size = out.stat().st_size
    probe = submit_tasks(
        store, tmp_path, "probe", [{"name": "w", "action": "wait", "seconds": 0.3}]
    )
    await until(lambda: job_status(store, probe) == "ended", "a 0.3 s wait on the new process")
    assert out.stat().st_size == size


async def test_a_restart_kills_processes_that_left_their_group(engine, tmp_path):
    store = engine.store
    pid_file = tmp_path / "escaped.pid"
    job = submit_tasks(
        store,
        tmp_path,
        "escaper",
        [
            {
                "name": "sh",
                "action": "shell",
                "command": ["sh", "-c", f"setsid sleep 300 & echo $! > {pid_file}; wait"],
            }
        ],
    )
    await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    escaped = int(pid_file.read_text())
    assert procs.alive(escaped)
    abort_flow.abort(store.transaction, job, actor="alice", enhanced=True)
    await until(lambda: job_status(store, job) == "canceled", "the restart")
    assert task_statuses(store, job) == {"sh": "aborted"}
    assert not procs.alive(escaped)


async def test_stopping_the_engine_leaves_no_process_behind(tmp_path):
    pid_file = tmp_path / "child.pid"
    engine = Supervisor(str(tmp_path / "t.db"), {"batch-01": 2}, poll_interval=0.02)
    await engine.start()
    server_pid = engine.procs["batch-01"].pid
    try:
        job = submit_tasks(
            engine.store,
            tmp_path,
            "sleeper",
            [
                {
                    "name": "sh",
                    "action": "shell",
                    "command": ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"],
                }
            ],
        )
        await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    finally:
        await engine.stop()
    child = int(pid_file.read_text())
    assert not procs.alive(child) and not procs.alive(server_pid)
    store = Store(tmp_path / "t.db")
    try:
        t = task_row(store, job, "sh")
        assert (t["status"], t["attempt"], t["claim_token"]) == ("ready", 2, None)
    finally:
        store.dispose()


def test_a_stale_claim_writes_nothing(tmp_path):
    """Fencing at the database: a report carrying an old claim's token changes nothing."""
    store = Store(tmp_path / "t.db")
    try:
        job = submit_tasks(
            store, tmp_path, "fenced", [{"name": "w", "action": "wait", "seconds": 1}]
        )
        with store.write() as conn:
            (first,) = batch.claim(conn, {"s1": 1}, at=1.0, token="engine-a#1")
        with store.write() as conn:
            # Engine A is presumed dead: its task goes back to Ready and B claims it.
            batch.apply_outcomes(
                conn, [batch.Outcome(first.task_id, "interrupted", reason="recovered")], at=2.0
            )
            (second,) = batch.claim(conn, {"s2": 1}, at=3.0, token="engine-b#1")
        assert (second.task_id, second.attempt) == (first.task_id, 2)
        with store.write() as conn:
            # A wakes up and reports its stale run: fenced out.
            batch.write_progress(
                conn, [batch.Progress(first.task_id, 9, 9, "s", "stale", None, token=first.token)]
            )
            batch.apply_outcomes(
                conn, [batch.Outcome(first.task_id, "ended", "stale", token=first.token)], at=4.0
            )
        t = task_row(store, job, "w")
        assert (t["status"], t["server"], t["message"], t["progress_done"]) == (
            "executing",
            "s2",
            None,
            0,
        )
        with store.write() as conn:
            batch.apply_outcomes(
                conn, [batch.Outcome(second.task_id, "ended", "done", token=second.token)], at=5.0
            )
        assert task_row(store, job, "w")["status"] == "ended"
    finally:
        store.dispose()


async def test_a_cancel_during_the_spawn_leaves_no_child(tmp_path):
    """asyncio kills only the first process of a spawn it cancels; the group must go."""
    from engine.actions import shell
    from tests.test_actions import make_ctx

    marker = f"spawnrace{os.getpid()}"
    for yields in range(0, 12):
        ctx = make_ctx()
        task = asyncio.ensure_future(
            shell.run(
                ctx,
                ["env", f"{marker}=1", "sh", "-c", "sleep 300 & sleep 300 & wait"],
                "terminate",
                str(tmp_path),
            )
        )
        for _ in range(yields):
            await asyncio.sleep(0)
        # A busy machine: the loop stalls while the command starts its children.
        time.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left = procs.marked(marker, "1")
        procs.kill_now(left)
        assert left == [], f"cancelled after {yields} yields: {left} survived"


def test_freezing_the_heap_collects_its_garbage_first_and_spares_the_rest():
    """``freeze_heap`` (``batchdeck serve``): what is alive leaves the full collections'
    walk; garbage waiting for a collection is collected, never frozen for good."""

    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    kept = Node()
    try:
        freeze_heap()
        assert gone() is None
        assert not any(o is kept for o in gc.get_objects(generation=2))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects(generation=2))


def test_runs_that_end_in_one_turn_are_reported_in_one_line():
    """Three runs canceled by one message end in the same turn of the server's loop:
    their outcomes reach the supervisor as one line, settled in one tick, not three."""
    import json
    import subprocess
    import sys

    from engine.runtime import wire

    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.runtime.server_proc", "batch-01"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def say(msgs: list[dict[str, object]]) -> None:
        proc.stdin.write(wire.encode_batch(msgs))
        proc.stdin.flush()

    def heard() -> list[dict[str, object]]:
        return wire.decode_lines([proc.stdout.readline()])

    try:
        assert heard()[0]["op"] == "ready"
        ids = [1, 2, 3]
        say(
            [
                {
                    "op": "run",
                    "task": i,
                    "token": f"e#{i}",
                    "job": 1,
                    "name": f"t{i}",
                    "action": "wait",
                    "params_json": json.dumps({"seconds": 600}),
                    "attempt": 1,
                    "recipe_path": None,
                    "child": None,
                }
                for i in ids
            ]
        )
        say([{"op": "cancel", "task": i} for i in ids])
        line = heard()
        while not any(m["op"] == "done" for m in line):
            line = heard()  # the runs' progress, said before the cancel
        assert sorted(m["task"] for m in line if m["op"] == "done") == ids
        assert {m["outcome"] for m in line if m["op"] == "done"} == {"canceled"}
    finally:
        say([{"op": "stop"}])
        proc.wait(timeout=30)
