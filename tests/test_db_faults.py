"""Faults from outside the engine (issue 21): the engine's supervisor killed with its
stderr a broken pipe, a task's oversized message, the database locked, full or gone,
a clock that jumps. Real ``batchdeck serve`` processes on a real database; every wait
is for a condition, bounded. Each test asserts what the contract says: no task ran
twice (a file each run appends to), no task Error from the fault, the job finishes,
the server rows tell the truth, no process is left behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_support import (
    assert_requeued_for_the_outage,
    assert_rows_tell_the_truth,
    runs_of,
    shells_recipe,
)
from tests.proc_support import BATCHDECK, Deck, deck_in, pid_alive, wait_for


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[Deck]:
    with deck_in(tmp_path) as d:
        yield d


def server_pids(deck: Deck) -> list[int]:
    """The pids of server processes the rows name (the engine's children); none
    before the engine has made the database."""
    try:
        return [r[0] for r in deck.sql("SELECT pid FROM server WHERE pid IS NOT NULL")]
    except sqlite3.OperationalError:
        return []


APPEND_AND_SLEEP = """\
name = "{name}"

[[task]]
name = "long"
action = "shell"
command = ["sh", "-c", "echo $$ >> {runs}; exec sleep 600"]
"""


def test_a_killed_serve_whose_stderr_is_a_broken_pipe_takes_its_server_with_it(
    deck: Deck,
) -> None:
    runs = deck.dir / "runs"
    deck.track_pid_file(runs)
    # serve 2>&1 | cat > log: its stderr (and so its server processes') is a pipe.
    reader = subprocess.Popen(
        ["cat"], stdin=subprocess.PIPE, stdout=open(deck.dir / "log", "wb"), cwd=deck.dir
    )
    serve = subprocess.Popen(
        [*BATCHDECK, "serve", "--server", "batch-01:2"],
        stdout=reader.stdin,
        stderr=reader.stdin,
        stdin=subprocess.DEVNULL,
        env=deck.env,
        cwd=deck.dir,
    )
    assert reader.stdin is not None
    reader.stdin.close()  # only serve holds the pipe's writing end now
    try:
        wait_for(lambda: server_pids(deck), "the server process to be running")
        (server,) = server_pids(deck)
        job = deck.submit(deck.recipe("long", APPEND_AND_SLEEP.format(name="long", runs=runs)))
        deck.wait_task(job, "long", "executing")
        wait_for(lambda: runs_of(runs), "the shell to start")
        (shell,) = map(int, runs_of(runs))
        # Both ends die: the pipe's reader first, then the supervisor, with SIGKILL.
        reader.kill()
        reader.wait(10)
        serve.kill()
        serve.wait(10)
        wait_for(lambda: not pid_alive(server), "the server process to die with its supervisor")
        wait_for(lambda: not pid_alive(shell), "the task's shell to die with its server")
    finally:
        for p in (serve, reader):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for pid in server_pids(deck) + [int(p) for p in runs_of(runs)]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


BIG_LOG = """\
def shout(ctx, runs):
    with open(runs, "a") as f:
        f.write("big\\n")
    ctx.log("x" * 20_000_000)
    ctx.progress(1, 1, "y" * 5_000)
    return "z" * 20_000_000
"""

BIG_AND_SMALL = """\
name = "big"

[[task]]
name = "big"
action = "python"
function = "big_log:shout"
runs = "{runs}"

[[task]]
name = "small"
action = "shell"
command = ["sh", "-c", "echo small >> {runs}; sleep 2"]
"""


def test_an_oversized_message_is_cut_in_the_server_and_fails_no_task(deck: Deck) -> None:
    runs = deck.dir / "runs"
    (deck.dir / "big_log.py").write_text(BIG_LOG)
    deck.serve("--server", "batch-01:2")
    job = deck.submit(deck.recipe("big", BIG_AND_SMALL.format(runs=runs)))
    assert deck.wait_job(job, "ended", "error") == "ended", deck.show(job)
    big, small = deck.task(job, "big"), deck.task(job, "small")
    assert (big["status"], big["attempt"], small["status"], small["attempt"]) == (
        "ended",
        1,
        "ended",
        1,
    )
    assert big["message"].endswith("… (cut)")
    assert len(big["message"].encode()) <= 64 * 1024  # the documented limit
    assert sorted(runs_of(runs)) == ["big", "small"]  # each ran once
    reasons = [r[0] for r in deck.sql("SELECT reason FROM event WHERE kind='server'")]
    assert not [r for r in reasons if "restart" in r], reasons
    assert "bad message" not in deck.servers[0].errors()


# -- the SQLite write lock held by another process ------------------------------------------


def heartbeat(deck: Deck) -> float:
    return deck.sql("SELECT heartbeat_at FROM server WHERE name='batch-01'")[0][0]


def hold_write_lock(deck: Deck, seconds: float) -> None:
    """Another process's write transaction (an admin's BEGIN EXCLUSIVE) for ``seconds``."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "time.sleep(float(sys.argv[2]))\n"
            "c.execute('ROLLBACK')\n",
            str(deck.db),
            str(seconds),
        ],
        check=True,
        timeout=120,
    )


def start_pair(deck: Deck) -> tuple[int, Path, Path]:
    """A job of two shell tasks that run until ``go`` exists, both started."""
    runs, go = deck.dir / "runs", deck.dir / "go"
    job = deck.submit(deck.recipe("pair", shells_recipe(["one", "two"], runs, go)))
    wait_for(lambda: len(runs_of(runs)) == 2, "both runs to start")
    return job, runs, go


def assert_each_ran_once(runs: Path, names: list[str]) -> None:
    lines = runs_of(runs)
    for name in names:
        assert lines.count(f"end-{name}") == 1, lines


def test_a_write_lock_shorter_than_the_lease_costs_the_running_tasks_nothing(
    deck: Deck,
) -> None:
    deck.ok("settings", "lease_seconds", "3")
    serve = deck.serve("--server", "batch-01:2")
    job, runs, go = start_pair(deck)
    (server,) = server_pids(deck)
    # Just before the next beat (one a second at a 3 s lease), for 2 s: the beat before
    # the lock is then 2.9 s old when the lock goes, past what it alone vouched for.
    seen = heartbeat(deck)
    wait_for(lambda: heartbeat(deck) != seen, "a heartbeat")
    time.sleep(0.85)
    hold_write_lock(deck, 2.0)
    go.touch()
    assert deck.wait_job(job, "ended", "error") == "ended", deck.show(job)
    for name in ("one", "two"):
        assert deck.task(job, name)["attempt"] == 1
    assert_each_ran_once(runs, ["one", "two"])
    assert server_pids(deck) == [server] and pid_alive(server)
    assert "lease" not in serve.errors(), serve.errors()
    assert_rows_tell_the_truth(deck)


def test_a_write_lock_of_three_leases_sends_the_stopped_runs_back_to_ready(deck: Deck) -> None:
    deck.ok("settings", "lease_seconds", "1")
    serve = deck.serve("--server", "batch-01:2")
    job, runs, go = start_pair(deck)
    (first,) = server_pids(deck)
    hold_write_lock(deck, 3.5)
    for name in ("one", "two"):
        wait_for(lambda n=name: deck.task(job, n)["attempt"] == 2, f"{name} to run again")
        deck.wait_task(job, name, "executing")
    go.touch()
    assert deck.wait_job(job, "ended", "error") == "ended", deck.show(job)
    assert not pid_alive(first)
    for name in ("one", "two"):
        t = deck.task(job, name)
        assert (t["status"], t["attempt"]) == ("ended", 2)
    assert_requeued_for_the_outage(deck, job, ["one", "two"])
    # Stopped once (the first run never ended), then ran to its end once.
    assert_each_ran_once(runs, ["one", "two"])
    assert runs_of(runs).count("start-one") == 2
    assert serve.running()
    (second,) = server_pids(deck)
    assert second != first and pid_alive(second)
    assert_rows_tell_the_truth(deck)


EXITS = """\
name = "exits"

[[task]]
name = "exit"
action = "shell"
command = ["sh", "-c", "kill -9 $PPID"]
"""


def test_a_serve_whose_log_reader_died_serves_on(deck: Deck) -> None:
    """serve 2>&1 | cat, and only cat killed: each line the engine logs then meets a
    broken pipe; the engine must serve on all the same."""
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    serve = subprocess.Popen(
        [*BATCHDECK, "serve", "--server", "batch-01:2"],
        stdout=reader.stdin,
        stderr=reader.stdin,
        stdin=subprocess.DEVNULL,
        env=deck.env,
        cwd=deck.dir,
    )
    assert reader.stdin is not None
    reader.stdin.close()
    try:
        wait_for(lambda: server_pids(deck), "the server process to be running")
        reader.kill()
        reader.wait(10)
        # A task that kills its own server process: the engine logs the death.
        job = deck.submit(deck.recipe("exits", EXITS))
        deck.wait_job(job, "ended", "error")
        after = deck.submit(
            deck.recipe(
                "after", 'name = "after"\n[[task]]\nname = "w"\naction = "wait"\nseconds = 0\n'
            )
        )
        assert deck.wait_job(after, "ended", "error") == "ended"
        assert serve.poll() is None
        assert_rows_tell_the_truth(deck)
    finally:
        serve.terminate()
        serve.wait(30)
