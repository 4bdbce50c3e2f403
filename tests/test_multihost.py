"""Many hosts on one PostgreSQL database: two ``batchdeck serve`` processes stand for two
hosts (distinct servers, one URL), and a third process, the command line, controls them.

Both take work; a cancel written by the command line is acted on by the engine running
the task; an abort kills the shell on whichever host runs it; and when one host's
``serve`` is killed with SIGKILL, the other recovers its task once the lease has expired
(Ready, attempt + 1) and runs it to the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg_support import new_pg_database, pg_deck
from tests.proc_support import pid_alive, read_pid
from tests.waiting import until_sync as wait_for

HOSTS = {"host-a": "host-a:2", "host-b": "host-b:2"}


@pytest.fixture
def deck(tmp_path: Path, pg_server: Any) -> Iterator[Any]:
    d = pg_deck(tmp_path, new_pg_database(pg_server))
    try:
        d.ok("settings", "lease_seconds", "1")  # the shortest lease: a quick failover
        yield d
    finally:
        d.close()


def serve_both(deck: Any) -> dict[str, Any]:
    started = {name: deck.start_serve("--server", spec) for name, spec in HOSTS.items()}
    return {name: s.wait_serving() for name, s in started.items()}


def executing_on(deck: Any, job: int) -> dict[str, str]:
    return dict(
        deck.sql("SELECT name, server FROM task WHERE job_id=? AND status='executing'", (job,))
    )


def test_both_hosts_take_work_and_a_cancel_from_a_third_process_is_acted_on(deck: Any) -> None:
    serve_both(deck)
    tasks = "".join(f'[[task]]\nname = "w{i}"\naction = "wait"\nseconds = 600\n' for i in range(4))
    job = deck.submit(deck.recipe("four", f'name = "four"\n{tasks}'))
    # Four tasks, two slots on each host: both hosts run two.
    wait_for(lambda: len(executing_on(deck, job)) == 4, "all four tasks to execute")
    on = sorted(executing_on(deck, job).values())
    assert on == ["host-a", "host-a", "host-b", "host-b"]

    assert deck.ok("cancel", str(job)).out.startswith(f"Job {job} Cancel")
    deck.wait_job(job, "canceled")
    assert {deck.task_status(job, f"w{i}") for i in range(4)} == {"canceled"}


def test_an_abort_kills_the_shell_on_the_host_running_it(deck: Any) -> None:
    serve_both(deck)
    recipe = deck.recipe(
        "shell",
        'name = "shell"\n[[task]]\nname = "sh"\naction = "shell"\n'
        'command = ["sh", "-c", "echo $$ > sh.pid; exec sleep 300"]\non_cancel = "finish"\n',
    )
    pid_file = deck.track_pid_file(deck.dir / "sh.pid")
    job = deck.submit(recipe)
    deck.wait_task(job, "sh", "executing")
    pid = wait_for(lambda: read_pid(pid_file), "the shell to write its pid")
    assert pid_alive(pid)
    deck.ok("abort", str(job), "--yes")
    deck.wait_task(job, "sh", "aborted")
    wait_for(lambda: not pid_alive(pid), "the aborted shell to be gone")


def test_a_killed_hosts_task_is_recovered_and_run_by_the_other_host(deck: Any) -> None:
    serves = serve_both(deck)
    recipe = deck.recipe(
        "gate",
        'name = "gate"\n[[task]]\nname = "g"\naction = "shell"\n'
        'command = ["sh", "-c", "echo $$ >> g.pids; while [ ! -f go ]; do sleep 0.05; done"]\n',
    )
    pids = deck.track_pid_file(deck.dir / "g.pids")
    job = deck.submit(recipe)
    first = deck.wait_task(job, "g", "executing")
    assert first["attempt"] == 1
    dead, alive = first["server"], ({"host-a", "host-b"} - {first["server"]}).pop()
    wait_for(lambda: pids.exists() and pids.read_text().strip(), "the shell to start")
    first_pid = int(pids.read_text().split()[0])

    serves[dead].kill9()
    # The dead host's shell dies with its serve (its server's pipe closes)...
    wait_for(lambda: not pid_alive(first_pid), "the killed host's shell to die")
    # ...and once its lease has expired the other host recovers the task and runs it.
    again = deck.wait_task(job, "g", "executing")
    wait_for(lambda: deck.task(job, "g")["server"] == alive, f"the task to run on {alive}")
    assert deck.task(job, "g")["attempt"] == 2
    wait_for(lambda: len(pids.read_text().split()) == 2, "the second attempt's shell to start")
    (deck.dir / "go").touch()
    deck.wait_job(job, "ended")
    assert deck.task_status(job, "g") == "ended"
    assert again["attempt"] in (1, 2)  # seen before or after the takeover
    assert serves[alive].running()
    offline = deck.sql("SELECT status, lease_owner FROM server WHERE name=?", (dead,))
    assert offline == [("offline", None)]
