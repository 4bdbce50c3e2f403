"""Across processes: ``batchdeck serve`` runs the jobs, other processes ask for things.

A cancel, abort or enhanced abort written by one ``batchdeck`` process is acted on by
the engine in a ``serve`` process; leases keep a second engine off the same server;
a killed engine's work is recovered at the next start. Every wait is for a condition
in the database (or ``show --json``), bounded; no assertion is about how long anything
took. Tests that only submit and act on their own jobs share one ``serve`` (module
fixture); tests that configure, start or kill engines get a database of their own.
Every serve is stopped at the end (SIGTERM, then SIGKILL), and processes a recipe left
behind (found through their pid files) are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg_support import new_pg_database
from tests.proc_support import Deck, deck_in, pid_alive, read_pid, user, wait_for, wait_recipe

RUNNING = ("executing", "canceling", "aborting")


@pytest.fixture
def deck(tmp_path: Path, deck_db: str | None) -> Iterator[Deck]:
    """A database of its own, for tests that start, kill or configure engines."""
    with deck_in(tmp_path, deck_db) as d:
        yield d


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    """One database with one ``serve`` (16 slots), shared by the tests that only submit
    their own jobs and act on them; stopped at the end of the module."""
    with deck_in(tmp_path_factory.mktemp("served")) as d:
        d.serve("--server", "batch-01:16")
        yield d


@pytest.fixture(scope="module")
def served_pg(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[Deck]:
    """``served`` on PostgreSQL."""
    url = new_pg_database(pg_server)
    with deck_in(tmp_path_factory.mktemp("served-pg"), url) as d:
        d.serve("--server", "batch-01:16")
        yield d


@pytest.fixture
def shared(backend: str, request: pytest.FixtureRequest) -> Deck:
    served = request.getfixturevalue("served_pg" if backend == "postgresql" else "served")
    assert served.servers[0].running(), served.servers[0].errors()
    return served


def server_row(deck: Deck, name: str) -> dict:
    rows = deck.sql("SELECT status, lease_owner, heartbeat_at FROM server WHERE name=?", (name,))
    assert rows, f"no server {name}"
    status, owner, beat = rows[0]
    return {"status": status, "lease_owner": owner, "heartbeat_at": beat}


def server_events(deck: Deck, name: str) -> list[str]:
    return [
        r[0]
        for r in deck.sql(
            "SELECT reason FROM event WHERE kind='server' AND server=? ORDER BY id", (name,)
        )
    ]


def task_events(deck: Deck, job: int, name: str) -> list[tuple[str, str, str, str]]:
    tid = deck.task(job, name)["id"]
    return [(r[1], r[2], r[3], r[4]) for r in deck.events(job) if r[0] == tid]


# -- cancel and abort acted on by the serving engine ---------------------------------------


@pytest.mark.both_databases
def test_cancel_from_another_process_is_acted_on_by_serve(shared: Deck) -> None:
    deck = shared
    job_id = deck.submit(deck.recipe("cancel-me", wait_recipe("long-wait", 60)))
    deck.wait_task(job_id, "sleep", "executing")

    res = deck.ok("cancel", str(job_id), "--reason", "wrong sandbox")
    assert "Canceling" in res.out or "Canceled" in res.out, res.out

    def settled() -> dict | None:
        job = deck.show(job_id)
        return job if job["status"] == "canceled" else None

    job = wait_for(settled, f"job {job_id} to be canceled by the serving engine")
    task = job["tasks"][0]
    assert task["status"] == "canceled"
    assert task["server"] == "batch-01"
    assert "of 60 s" in task["message"]  # stopped at once, how far it got on record
    assert job["cancel_reason"] == f"Job canceled by {user()}: wrong sandbox"
    assert job["canceled_by"] == user()
    moves = [
        (e["from_status"], e["to_status"], e["actor"])
        for e in job["events"]
        if e["task_id"] == task["id"]
    ]
    assert moves == [
        ("ready", "executing", "engine"),
        ("executing", "canceling", user()),
        ("canceling", "canceled", "engine"),
    ]


@pytest.mark.both_databases
def test_abort_kills_the_shell_command_and_its_children(shared: Deck) -> None:
    deck = shared
    recipe = deck.recipe(
        "spawn",
        """\
name = "spawner"

[[task]]
name = "spawn"
action = "shell"
command = ["sh", "-c", "sleep 300 & echo $! > child.pid; echo $$ > parent.pid; wait"]
on_cancel = "finish"
""",
    )
    child_file = deck.track_pid_file(deck.dir / "child.pid")
    parent_file = deck.track_pid_file(deck.dir / "parent.pid")
    job_id = deck.submit(recipe)
    deck.wait_task(job_id, "spawn", "executing")
    parent = wait_for(lambda: read_pid(parent_file), "the command to write parent.pid")
    child = wait_for(lambda: read_pid(child_file), "the command to write child.pid")
    assert pid_alive(parent) and pid_alive(child)

    deck.ok("cancel", str(job_id))  # on_cancel = "finish": the command runs on
    assert deck.task_status(job_id, "spawn") == "canceling"
    assert pid_alive(parent) and pid_alive(child)
    plan = deck.refused("abort", str(job_id))
    assert "unsafe" in plan.out and "spawn on batch-01" in plan.out
    assert "canceled first" not in plan.out

    res = deck.ok("abort", str(job_id), "--yes")
    assert res.out.startswith(f"Aborting job {job_id}: 1 task"), res.out
    deck.wait_task(job_id, "spawn", "aborted")
    assert deck.wait_job(job_id, "canceled") == "canceled"
    wait_for(lambda: not pid_alive(parent), f"the command (pid {parent}) to be gone")
    wait_for(lambda: not pid_alive(child), f"its child (pid {child}) to be gone")

    job = deck.show(job_id)
    assert job["aborted_by"] == user() and isinstance(job["aborted_at"], float)
    assert job["cancel_reason"] == f"Job canceled by {user()}"
    assert job["tasks"][0]["started_at"] is not None
    assert [m[:2] for m in task_events(deck, job_id, "spawn")] == [
        ("ready", "executing"),
        ("executing", "canceling"),
        ("canceling", "aborting"),
        ("aborting", "aborted"),
    ]


@pytest.mark.both_databases
def test_abort_of_an_unmanaged_wait_shows_aborting_until_the_block_returns(shared: Deck) -> None:
    deck = shared
    release = deck.dir / f"release-{time.monotonic_ns()}"
    recipe = deck.recipe(
        "block",
        f"""\
name = "stuck-driver"

[[task]]
name = "block"
action = "python"
function = "tests.blocking_fn:block_until"
path = "{release}"

[[task]]
name = "after"
action = "wait"
seconds = 1
after = ["block"]
""",
    )
    job_id = deck.submit(recipe)
    deck.wait_task(job_id, "block", "executing")
    wait_for(lambda: Path(f"{release}.started").exists(), "the block to start")

    res = deck.ok("abort", str(job_id), "--yes")
    assert res.out.startswith(f"Canceled and aborting job {job_id}: 1 task"), res.out
    job = deck.show(job_id)
    assert job["status"] == "canceling"
    assert [t["status"] for t in job["tasks"]] == ["aborting", "didnt_run"]
    assert job["aborted_by"] == user()

    # A second plain abort cannot free it; only an enhanced abort (restart) could.
    again = deck.refused("abort", str(job_id), "--yes")
    assert "Aborting" in again.err, str(again)
    assert deck.task_status(job_id, "block") == "aborting"

    release.touch()  # the blocking call returns: only now is the task Aborted
    deck.wait_task(job_id, "block", "aborted")
    job = deck.show(job_id)
    assert job["status"] == "canceled"
    assert job["tasks"][0]["message"] != "released"  # the result of the wait is discarded
    assert not Path(f"{release}.after").exists()  # and nothing after it in the task ran
    assert job["tasks"][1]["status"] == "didnt_run"


# -- leases --------------------------------------------------------------------------------


def test_a_second_serve_on_the_same_server_is_refused(deck: Deck) -> None:
    first = deck.serve()
    owner = server_row(deck, "batch-01")["lease_owner"]
    assert owner and f":{first.pid}:" in owner

    same, mixed = deck.refused_all(
        ("serve",), ("serve", "--server", "batch-02", "--server", "batch-01:2")
    )
    for res in (same, mixed):
        assert len(res.err_lines) == 1, str(res)
        assert "batch-01" in res.err and "already served" in res.err, str(res)
    assert first.running()
    assert server_row(deck, "batch-01")["lease_owner"] == owner
    assert not deck.sql("SELECT name FROM server WHERE name='batch-02'")  # nothing taken

    other = deck.serve("--server", "batch-02:2")
    b2 = server_row(deck, "batch-02")
    assert b2["status"] == "online" and f":{other.pid}:" in b2["lease_owner"]
    assert other.stop() == 0
    assert "stopping" in other.output()
    assert server_row(deck, "batch-02")["status"] == "offline"
    b1 = server_row(deck, "batch-01")
    assert b1["status"] == "online" and b1["lease_owner"] == owner
    assert first.running()


def test_a_short_lease_never_lets_two_engines_serve_one_server(deck: Deck) -> None:
    res = deck.run("settings", "lease_seconds", "0.000001")
    if res.rc == 2:
        return  # refusing a lease shorter than the heartbeat would also keep the promise
    first = deck.serve()
    second = deck.start_serve()
    wait_for(
        lambda: second.proc.poll() is not None or "serving" in second.output(),
        "the second serve to be refused or to start serving",
    )
    assert first.running()
    assert second.proc.returncode == 1, second.output()


# -- enhanced abort --------------------------------------------------------------------------


BLOCK = """\
name = "{name}"

[[task]]
name = "block"
action = "blocking_wait"
seconds = 60
"""


def test_enhanced_abort_restarts_the_server_and_requeues_other_jobs(deck: Deck) -> None:
    deck.ok("settings", "drain_seconds", "1")
    deck.serve("--server", "batch-01:4")
    a, b = deck.submit_all(
        deck.recipe("a", BLOCK.format(name="stuck")), deck.recipe("b", wait_recipe("bystander", 60))
    )
    deck.wait_task(a, "block", "executing")
    deck.wait_task(b, "sleep", "executing")

    # A plain abort cannot free a thread blocked in an unmanaged wait: Aborting.
    deck.ok("abort", str(a), "--yes")
    assert deck.task_status(a, "block") == "aborting"
    assert deck.job_status(a) == "canceling"

    plan = deck.refused("abort", str(a), "--enhanced")
    assert "unsafe" in plan.out
    assert "block on batch-01" in plan.out
    assert "Servers to restart: batch-01" in plan.out
    assert "Other jobs disrupted (1)" in plan.out
    assert f"job {b} bystander: sleep" in plan.out
    assert server_row(deck, "batch-01")["status"] == "online"  # nothing done yet

    res = deck.ok("abort", str(a), "--enhanced", "--yes")
    assert "restarting batch-01" in res.out

    def restarted() -> bool:
        return (
            deck.task_status(a, "block") == "aborted"
            and deck.task(b, "sleep")["attempt"] == 2
            and deck.task_status(b, "sleep") == "executing"
        )

    wait_for(restarted, "the restart: A's task aborted, B's task executing again (attempt 2)")
    assert deck.job_status(a) == "canceled"
    assert deck.job_status(b) == "executing"
    moves = task_events(deck, b, "sleep")
    assert ("executing", "ready", "engine", "interrupted by server restart") in moves
    assert [m[:2] for m in moves] == [
        ("ready", "executing"),
        ("executing", "ready"),
        ("ready", "executing"),
    ]
    assert deck.task(b, "sleep")["server"] == "batch-01"

    job_a = deck.show(a)
    assert job_a["aborted_by"] == user() and job_a["tasks"][0]["status"] == "aborted"
    wait_for(lambda: server_row(deck, "batch-01")["status"] == "online", "batch-01 online")
    reasons = server_events(deck, "batch-01")
    drain = next(i for i, r in enumerate(reasons) if r.startswith("draining for restart"))
    later = reasons[drain:]
    assert "restarting: drain period over" in later, reasons
    assert later[-1] == "restarted: online", reasons


def test_enhanced_abort_restarts_at_once_when_nothing_else_runs_there(deck: Deck) -> None:
    deck.ok("settings", "drain_seconds", "600")
    deck.serve("--server", "batch-01:1", "--server", "batch-02:1")
    a = deck.submit(deck.recipe("a", BLOCK.format(name="stuck")))
    assert deck.wait_task(a, "block", "executing")["server"] == "batch-01"
    b = deck.submit(deck.recipe("b", wait_recipe("elsewhere", 60)))
    assert deck.wait_task(b, "sleep", "executing")["server"] == "batch-02"

    plan = deck.refused("abort", str(a), "--enhanced")
    assert "Servers to restart: batch-01" in plan.out
    assert "Other jobs disrupted (0)" in plan.out
    deck.ok("abort", str(a), "--enhanced", "--yes")

    # No need to wait out the 10-minute drain: only the aborted task is left on batch-01.
    deck.wait_task(a, "block", "aborted")
    assert deck.wait_job(a, "canceled") == "canceled"
    wait_for(lambda: server_row(deck, "batch-01")["status"] == "online", "batch-01 online")
    assert "restarting: nothing left but the aborted tasks" in server_events(deck, "batch-01")
    # The other server and its job were not touched.
    t = deck.task(b, "sleep")
    assert t["status"] == "executing" and t["attempt"] == 1
    assert server_row(deck, "batch-02")["status"] == "online"
    assert not any(
        r.startswith(("draining", "restarting")) for r in server_events(deck, "batch-02")
    )


# -- recovery ---------------------------------------------------------------------------------


def test_recovery_after_the_engine_is_killed(deck: Deck) -> None:
    deck.ok("settings", "lease_seconds", "1")
    first = deck.serve("--server", "batch-01:8")
    pid_file = deck.track_pid_file(deck.dir / "finish.pid")
    rerun, once, finishing, stuck, orphan = deck.submit_all(
        deck.recipe("rerun", wait_recipe("rerun", 30)),
        deck.recipe("once", "max_attempts = 1\n" + wait_recipe("once", 30)),
        deck.recipe(
            "finish",
            """\
name = "finishing"

[[task]]
name = "sh"
action = "shell"
command = ["sh", "-c", "echo $$ > finish.pid; exec sleep 300"]
on_cancel = "finish"
""",
        ),
        deck.recipe("stuck", BLOCK.format(name="stuck")),
        deck.recipe("orphan", wait_recipe("orphan", 30)),
    )
    for job_id, task in (
        (rerun, "sleep"),
        (once, "sleep"),
        (finishing, "sh"),
        (stuck, "block"),
        (orphan, "sleep"),
    ):
        deck.wait_task(job_id, task, "executing")
    wait_for(lambda: read_pid(pid_file), "the shell task to write its pid")
    deck.ok("cancel", str(finishing))
    assert deck.job_status(finishing) == "canceling"
    assert deck.task_status(finishing, "sh") == "canceling"  # "finish": it runs on
    assert "already Canceling" in deck.refused("cancel", str(finishing)).err
    deck.ok("abort", str(stuck), "--yes")
    assert deck.task_status(stuck, "block") == "aborting"  # blocked in its thread

    shell_pid = read_pid(pid_file)
    assert shell_pid is not None and pid_alive(shell_pid)
    first.kill9()
    # Its server process and the shell it ran die with it: nothing runs on under PID 1.
    wait_for(lambda: not pid_alive(shell_pid), "the shell of the killed engine to die")
    # The dead engine's lease must run out before another engine may take batch-01.
    wait_for(
        lambda: time.time() - server_row(deck, "batch-01")["heartbeat_at"] > 1.5,
        "the killed engine's lease to expire",
    )
    assert deck.task_status(rerun, "sleep") == "executing"  # nobody has recovered it yet

    # With no engine behind its server, the abort is recorded as requested: only an
    # engine can make sure the task's code runs nowhere before calling it Aborted.
    res = deck.ok("abort", str(orphan), "--yes")
    assert deck.task_status(orphan, "sleep") == "aborting", res.out
    assert deck.job_status(orphan) == "canceling"

    deck.serve("--server", "batch-01:8")
    wait_for(lambda: deck.task_status(orphan, "sleep") == "aborted", "recovery to abort it")
    assert deck.job_status(orphan) == "canceled"

    # Attempts left: back to Ready with attempt + 1, then run again.
    wait_for(
        lambda: (
            deck.task(rerun, "sleep")["attempt"] == 2
            and deck.task_status(rerun, "sleep") == "executing"
        ),
        "the rerun task's attempt 2",
    )
    moves = task_events(deck, rerun, "sleep")
    assert ("executing", "ready", "recovery", "interrupted: engine stopped") in moves
    assert deck.job_status(rerun) == "executing"

    # No attempts left: Error.
    t = deck.task(once, "sleep")
    assert t["status"] == "error" and t["attempt"] == 1
    assert "interrupted: engine stopped" in t["error"]
    assert deck.job_status(once) == "error"

    # Left Canceling when the engine died: finishes canceling.
    assert deck.job_status(finishing) == "canceled"
    assert deck.task_status(finishing, "sh") == "canceled"
    # Left Aborting: Aborted.
    assert deck.task_status(stuck, "block") == "aborted"
    assert deck.job_status(stuck) == "canceled"

    # Nothing stays running on a server that no live engine holds.
    live = {
        r[0]
        for r in deck.sql(
            "SELECT name FROM server WHERE status='online' AND lease_owner IS NOT NULL"
        )
    }
    running = deck.sql("SELECT id, server FROM task WHERE status IN (?, ?, ?)", RUNNING)
    assert running and all(server in live for _, server in running), (running, live)
    assert deck.sql("SELECT id FROM job WHERE status IN ('executing', 'canceling')") == [(rerun,)]


# -- child jobs ---------------------------------------------------------------------------------


CHILD = """\
name = "{name}"

[[task]]
name = "work"
action = "wait"
seconds = {seconds}
"""


CHILD_BLOCK = """\
name = "{name}"

[[task]]
name = "work"
action = "python"
function = "tests.blocking_fn:block_until"
path = "{path}"
"""


def test_canceling_a_parent_does_not_cancel_its_children(shared: Deck) -> None:
    deck = shared
    # The children run until the test releases them: however slow the machine, they are
    # still running when the parent is canceled.
    release = {k: deck.dir / f"release-{k}-{time.monotonic_ns()}" for k in ("sync", "async")}
    deck.recipe("child_sync", CHILD_BLOCK.format(name="child-sync", path=release["sync"]))
    deck.recipe("child_async", CHILD_BLOCK.format(name="child-async", path=release["async"]))
    parent = deck.submit(
        deck.recipe(
            "parent",
            """\
name = "parent"

[[task]]
name = "call_sync"
action = "call_job"
recipe = "child_sync.toml"
mode = "sync"

[[task]]
name = "call_async"
action = "call_job"
recipe = "child_async.toml"
mode = "async"
""",
        )
    )

    def children() -> dict[str, int] | None:
        rows = deck.sql(
            "SELECT name, id FROM job WHERE parent_id=? AND status='executing'", (parent,)
        )
        return dict(rows) if len(rows) == 2 else None

    kids = wait_for(children, "both children executing")
    sync_child, async_child = kids["child-sync"], kids["child-async"]
    deck.wait_task(parent, "call_async", "ended")  # async: done once the child started

    deck.ok("cancel", str(parent))
    assert deck.job_status(parent) == "canceling"
    for path in release.values():
        path.touch()

    def sync_child_done() -> bool:
        # One statement: one consistent snapshot of the child, the task and the parent.
        ((child, task, job),) = deck.sql(
            "SELECT (SELECT status FROM job WHERE id=?), (SELECT status FROM task "
            "WHERE job_id=? AND name='call_sync'), (SELECT status FROM job WHERE id=?)",
            (sync_child, parent, parent),
        )
        if child not in ("canceled", "ended", "error"):
            # While the child runs, the task waiting on it stays Canceling.
            assert (task, job) == ("canceling", "canceling"), (child, task, job)
            return False
        return True

    wait_for(sync_child_done, f"the sync child {sync_child} to end")
    assert deck.job_status(sync_child) == "ended"
    assert deck.wait_job(parent, "canceled") == "canceled"
    assert deck.task_status(parent, "call_sync") == "ended"
    assert deck.wait_job(async_child, "ended", "canceled", "error") == "ended"
    parent_job, *children = deck.show_all(parent, sync_child, async_child)
    assert sorted(parent_job["children"]) == sorted([sync_child, async_child])
    assert parent_job["cancel_reason"] == f"Job canceled by {user()}"
    for job in children:
        assert job["parent_id"] == parent
        assert job["cancel_reason"] is None and job["canceled_by"] is None


@pytest.mark.both_databases
def test_cancel_with_children_cancels_the_whole_tree_and_abort_orphans_a_child(
    shared: Deck,
) -> None:
    deck = shared
    deck.recipe("child60", CHILD.format(name="child", seconds=60))
    caller = """\
name = "{name}"

[[task]]
name = "call"
action = "call_job"
recipe = "child60.toml"
mode = "sync"
"""
    tree, aborted = deck.submit_all(
        deck.recipe("tree", caller.format(name="tree")),
        deck.recipe("aborted", caller.format(name="aborted")),
    )

    def child_of(parent: int) -> int | None:
        rows = deck.sql(
            "SELECT j.id FROM job j JOIN task t ON t.job_id = j.id "
            "WHERE j.parent_id=? AND t.status='executing'",
            (parent,),
        )
        return rows[0][0] if rows else None

    tree_child = wait_for(lambda: child_of(tree), "the first child to start")
    orphan = wait_for(lambda: child_of(aborted), "the second child to start")

    res = deck.ok("cancel", str(tree), "--with-children", "--reason", "whole tree")
    assert "2 jobs" in res.out, res.out
    assert deck.wait_job(tree_child, "canceled") == "canceled"
    assert deck.wait_job(tree, "canceled") == "canceled"
    assert deck.task_status(tree_child, "work") == "canceled"
    for job_id in (tree, tree_child):
        job = deck.show(job_id)
        assert job["cancel_reason"] == f"Job canceled by {user()}: whole tree"
    assert "already Canceled" in deck.refused("cancel", str(tree), "--with-children").err

    # Abort stops the calling task; the child runs on, shown as orphaned.
    deck.ok("abort", str(aborted), "--yes")
    deck.wait_task(aborted, "call", "aborted")
    assert deck.wait_job(aborted, "canceled") == "canceled"
    child = deck.show(orphan)
    assert child["status"] == "executing" and child["orphaned"] is True
    assert child["cancel_reason"] is None
    assert child["tasks"][0]["status"] == "executing"
    assert deck.show(aborted)["children"] == [orphan]


# -- approvals ----------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_approve_and_reject_from_another_process(shared: Deck) -> None:
    deck = shared
    gate = """\
name = "{name}"

[[task]]
name = "ok"
action = "approval"
prompt = "Load into production?"

[[task]]
name = "load"
action = "wait"
seconds = 0
after = ["ok"]
"""
    yes, no = deck.submit_all(
        deck.recipe("yes", gate.format(name="approved")),
        deck.recipe("no", gate.format(name="rejected")),
    )
    deck.wait_task(yes, "ok", "executing")
    deck.wait_task(no, "ok", "executing")

    deck.ok("approve", str(yes), "ok")
    deck.ok("reject", str(no), str(deck.task(no, "ok")["id"]))
    assert deck.wait_job(yes, "ended", "error", "canceled") == "ended"
    assert deck.wait_job(no, "ended", "error", "canceled") == "error"
    assert deck.task_status(yes, "load") == "ended"
    assert deck.task_status(no, "ok") == "error"
    assert deck.task_status(no, "load") == "didnt_run"
    assert deck.task(yes, "ok")["approval_by"] == user()
    deck.refused("approve", str(yes), "ok")


# -- a stalled engine: fencing and no second copy ------------------------------------------------

STALL = """\
name = "stall"

[[task]]
name = "sh"
action = "shell"
command = ["sh", "-c", "echo $$ >> pids; exec sleep 300"]

[[task]]
name = "slow"
action = "wait"
seconds = 4

[[task]]
name = "after"
action = "wait"
seconds = 0
after = ["slow"]
"""


def all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` in the stopped state ("T" in /proc)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            # The state follows the command name, which is in parentheses.
            states.append(stat.read_text().rpartition(")")[2].split()[0])
    return bool(states) and all(s in ("T", "t") for s in states)


def stop_outside_a_write(pid: int, db: Path) -> None:
    """SIGSTOP a serving engine at a moment it holds no write transaction.

    An engine stopped inside one holds SQLite's write lock, and then no other process
    may write until it runs again (every writer is told "the database is locked"): one
    file has one lock, and no lease can take it back. What this suite tests is an
    engine stalled between its writes, which is what another may take over."""
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        # The signal is delivered when each thread next leaves the kernel: a thread busy
        # in a system call until after the probe could still begin a write. Probe only
        # once every thread is stopped.
        wait_for(lambda: all_threads_stopped(pid), f"engine {pid} to stop", poll=0.001)
        probe = sqlite3.connect(db, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)  # caught inside a write: let it finish it
        finally:
            probe.close()
    raise AssertionError(f"engine {pid} was inside a write transaction at every try")


def test_a_stopped_engine_past_its_lease_runs_nothing_twice_and_writes_nothing(deck: Deck) -> None:
    deck.ok("settings", "lease_seconds", "1")
    first = deck.serve("--server", "batch-01:4")
    job = deck.submit(deck.recipe("stall", STALL))
    deck.wait_task(job, "slow", "executing")
    pids = deck.track_pid_file(deck.dir / "pids")
    wait_for(lambda: read_pid(pids), "the shell to write its pid")
    first_copy = read_pid(pids)
    assert first_copy is not None

    stop_outside_a_write(first.pid, deck.db)
    try:
        # Its servers stop every task once the lease it vouched for has run out: before
        # another engine may take the server over.
        wait_for(lambda: not pid_alive(first_copy), "the stalled engine's shell to be killed")
        wait_for(
            lambda: time.time() - server_row(deck, "batch-01")["heartbeat_at"] > 1.5,
            "the stalled engine's lease to expire",
        )
        second = deck.serve("--server", "batch-01:4")
        wait_for(lambda: deck.task(job, "sh")["attempt"] == 2, "the takeover of the shell task")
        wait_for(lambda: len(pids.read_text().split()) == 2, "the second engine's shell to start")
        assert deck.task(job, "slow")["attempt"] == 2
    finally:
        os.kill(first.pid, signal.SIGCONT)
    # Awake, the first engine finds its lease taken: it writes nothing and stops.
    first.proc.wait(30)
    assert "lease on batch-01 taken by another engine" in first.errors()
    deck.wait_task(job, "after", "ended")
    slow, after = deck.task(job, "slow"), deck.task(job, "after")
    assert (slow["status"], slow["attempt"]) == ("ended", 2)
    ended = [e for e in task_events(deck, job, "slow") if e[1] == "ended"]
    assert len(ended) == 1, ended
    assert after["started_at"] >= slow["ended_at"]
    assert deck.task(job, "sh")["status"] == "executing"
    assert second.running()
    deck.ok("abort", str(job), "--yes")
    deck.wait_task(job, "sh", "aborted")
    assert not any(pid_alive(int(p)) for p in pids.read_text().split())


@pytest.mark.both_databases
def test_servers_lists_each_server_process(deck: Deck) -> None:
    deck.serve("--server", "batch-01:16")
    job = deck.submit(deck.recipe("one-running", wait_recipe("busy", 60)))
    deck.wait_task(job, "sleep", "executing")
    rows = json.loads(deck.ok("servers", "--json").out)
    (row,) = rows
    assert (row["name"], row["status"], row["slots"], row["in_use"]) == (
        "batch-01",
        "online",
        16,
        1,
    )
    assert row["host"] == socket.gethostname() and row["lease_age"] is not None
    # The pid is the server process, not the engine: task code runs there.
    assert row["pid"] != deck.servers[0].pid and pid_alive(row["pid"])
    assert "engine.runtime.server_proc" in Path(f"/proc/{row['pid']}/cmdline").read_text()
    text = deck.ok("servers").out.splitlines()
    assert text[0].split() == [
        "NAME",
        "STATUS",
        "HOST",
        "PID",
        "SLOTS",
        "IN",
        "USE",
        "DRAIN",
        "DEADLINE",
        "LEASE",
        "AGE",
        "NOTE",
    ]
    assert text[1].split()[:6] == [
        "batch-01",
        "Online",
        socket.gethostname(),
        str(row["pid"]),
        "16",
        "1",
    ]
    deck.ok("cancel", str(job))
    deck.wait_task(job, "sleep", "canceled")
