"""batchdeck as a service: systemd's notify protocol (a socket the test binds, a real
``serve``), the unit file, the health check, and shell completion. Metrics:
``tests/test_metrics.py``; the installed wheel: ``tests/test_wheel.py``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.proc_support import Deck, deck_in, wait_recipe
from tests.waiting import BOUND_S
from tests.waiting import until_sync as wait_for


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[Deck]:
    with deck_in(tmp_path) as d:
        yield d


class NotifySocket:
    """The socket systemd would listen on: every datagram ``serve`` sends, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.seen: list[str] = []

    def _take(self) -> str | None:
        try:
            msg = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.seen.append(msg)
        return msg

    def until(self, test: Callable[[str], bool], what: str) -> str:
        """The next datagram for which ``test`` holds (those before it are kept)."""
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline:
            msg = self._take()
            if msg is not None and test(msg):
                return msg
        raise AssertionError(f"no datagram {what}; seen: {self.seen[-10:]}")

    def during(self, seconds: float) -> list[str]:
        """Every datagram that arrives over the next ``seconds``."""
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            msg = self._take()
            if msg is not None:
                got.append(msg)
        return got

    def close(self) -> None:
        self.sock.close()


def test_serve_tells_systemd_ready_status_watchdog_and_stopping(deck: Deck, tmp_path: Path) -> None:
    """READY once serving, STATUS lines, WATCHDOG while writes succeed; none while another
    process holds the database's write lock beyond the lease (then ``health`` says so),
    again once it is released; STOPPING on SIGTERM."""
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        deck.ok("settings", "lease_seconds", "2")
        seen_env = tmp_path / "task-env.txt"
        # The task's code is not the service: systemd's variables do not reach it.
        job = deck.submit(
            deck.recipe(
                "long",
                'name = "long"\n[[task]]\nname = "sleep"\naction = "shell"\n'
                f'command = ["sh", "-c", "echo ${{NOTIFY_SOCKET:-unset}} > {seen_env}; '
                'exec sleep 60"]\n',
            )
        )
        deck.env = {**deck.env, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "300000"}
        serve = deck.start_serve("--server", "batch-01:2", "--server", "batch-02:2")
        ready = notify.until(lambda m: "READY=1" in m.splitlines(), "READY=1")
        assert re.search(r"^STATUS=2 servers, \d+ running, \d+ waiting$", ready, re.M), ready
        assert f"MAINPID={serve.pid}" in ready.splitlines()
        notify.until(lambda m: m == "WATCHDOG=1", "WATCHDOG=1")
        deck.wait_task(job, "sleep", "executing")
        notify.until(lambda m: m == "STATUS=2 servers, 1 running, 0 waiting", "STATUS 1 running")
        assert wait_for(lambda: seen_env.exists() and seen_env.read_text(), "the task") == "unset\n"

        lock = sqlite3.connect(deck.db, isolation_level=None, timeout=10)
        try:
            lock.execute("BEGIN EXCLUSIVE")  # every write of serve's now waits, then fails
            stopped = notify.until(lambda m: "not petting the watchdog" in m, "petting given up")
            assert stopped.startswith("STATUS=no database write has succeeded for "), stopped
            # Three watchdog periods and more under the lock: not one WATCHDOG=1.
            held = notify.during(1.5)
            assert "WATCHDOG=1" not in held, held
            health = deck.run("health")
            assert health.rc == 1, str(health)
            # Beyond the lease: both servers' leases are stale, one line each.
            assert len(health.out.splitlines()) == 2, str(health)
            assert all("lease stale" in line for line in health.out.splitlines()), str(health)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        notify.until(lambda m: m == "WATCHDOG=1", "WATCHDOG=1 once the lock is released")
        assert serve.running(), serve.errors()

        serve.proc.send_signal(signal.SIGTERM)
        stopping = notify.until(lambda m: "STOPPING=1" in m.splitlines(), "STOPPING=1")
        assert "STATUS=stopping" in stopping
        assert serve.proc.wait(30) == 0, serve.errors()
        after = notify.seen[notify.seen.index(stopping) + 1 :]
        assert "WATCHDOG=1" not in after
    finally:
        notify.close()


def test_serve_without_notify_socket_sends_nothing_and_serves(deck: Deck) -> None:
    """No NOTIFY_SOCKET (a tmux window, not systemd): serve as before."""
    deck.env.pop("NOTIFY_SOCKET", None)
    deck.ok("settings", "lease_seconds", "5")  # creates the database (a read would not)
    serve = deck.serve()
    assert serve.stop() == 0, serve.errors()
    assert "Traceback" not in serve.errors()


# -- the unit file ---------------------------------------------------------------------------
def _unit(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, line
        current.append((key, value))
    return sections


SERVE_OPTIONS = ("--server", "batch-01:8", "--server", "batch-02:2", "--metrics", "127.0.0.1:9464")


def test_service_unit_prints_a_notify_unit_with_watchdog_and_hardening(deck: Deck) -> None:
    res = deck.ok("service", "unit", "--user", "batch", "--db", "data/jobs.db", *SERVE_OPTIONS)
    unit = _unit(res.out)
    service = dict(unit["Service"])
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["User"] == "batch"
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed"
    assert int(service["WatchdogSec"]) >= 2 * 5  # twice the default lease at least
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables", "RestrictSUIDSGID"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    db = str(deck.dir / "data" / "jobs.db")  # made absolute: systemd runs it from /
    assert service["ReadWritePaths"] == str(deck.dir / "data")
    argv = service["ExecStart"].split()
    assert os.path.isabs(argv[0]) and argv[1:4] == ["serve", "--db", db]
    assert argv[4:] == list(SERVE_OPTIONS)
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"
    assert unit["Unit"][0][0] == "Description"


def test_service_unit_watchdog_option_and_postgresql_url(deck: Deck) -> None:
    res = deck.ok(
        "service", "unit", "--db", "postgresql://batch@db.example:5432/jobs", "--watchdog", "45"
    )
    service = dict(_unit(res.out)["Service"])
    assert service["WatchdogSec"] == "45"
    assert "ReadWritePaths" not in service
    url = "postgresql://batch@db.example:5432/jobs"
    assert f"--db {url} --server batch-01:4" in service["ExecStart"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--db", "postgresql://batch:secret@db/jobs"), "leave the password out"),
        (("--server", "batch-01:many"), "slots must be a whole number"),
        (("--user", "two words"), "not a user name"),
        (("--watchdog", "0"), "whole seconds from 1 to 86400"),
        (("--metrics", "127.0.0.1:99999"), "port from 0 to 65535"),
    ],
)
def test_service_unit_refuses_bad_usage_in_one_line(deck: Deck, args: tuple, words: str) -> None:
    res = deck.refused("service", "unit", *args, code=2)
    assert words in res.err, str(res)
    assert len(res.err_lines) == 1 and res.out == "", str(res)
    assert "secret" not in res.err


def test_service_unit_passes_systemd_analyze_verify(deck: Deck, tmp_path: Path) -> None:
    analyze = "/usr/bin/systemd-analyze"
    if not os.path.exists(analyze):
        pytest.skip("systemd-analyze is not installed")
    res = deck.ok("service", "unit", "--user", "root")
    path = tmp_path / "batchdeck.service"
    path.write_text(res.out)
    proc = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    # It may complain of the host (no systemd running here), never of the unit's keys.
    assert "Unknown key" not in proc.stderr and "Unknown section" not in proc.stderr, proc.stderr
    assert "Invalid" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


# -- health ------------------------------------------------------------------------------------
def test_health_healthy_while_serving_then_stuck_jobs_then_a_dead_engine(deck: Deck) -> None:
    """0 while every live lease serves; 1 with one line per problem: stuck jobs above
    --max-stuck, then the leases of an engine killed -9 gone stale."""
    # The default lease (5 s, a beat a second): a busy machine's late beat is no problem.
    deck.ok("settings", "stuck_seconds", "0.1")
    serve = deck.serve("--server", "batch-01:2", "--server", "batch-02:2")
    res = deck.ok("health")
    assert res.out == "healthy: 2 servers serving\n", str(res)
    report = json.loads(deck.ok("health", "--json").out)
    assert report["healthy"] is True and report["problems"] == []
    assert {s["name"] for s in report["servers"]} == {"batch-01", "batch-02"}

    # A task that finishes only on its own: Canceling, stuck after 0.1 s.
    slow = deck.recipe(
        "slow",
        'name = "slow"\n[[task]]\nname = "run"\naction = "shell"\n'
        'command = ["sleep", "60"]\non_cancel = "finish"\n',
    )
    job = deck.submit(slow)
    deck.wait_task(job, "run", "executing")
    deck.ok("cancel", str(job))

    def degraded() -> object:
        res = deck.run("health")
        return res if res.rc == 1 else None

    res = wait_for(degraded, "health to see the stuck job")
    assert res.out == f"1 stuck job (more than --max-stuck 0): {job}\n", str(res)
    assert deck.ok("health", "--max-stuck", "1").out.startswith("healthy")
    report = json.loads(deck.refused("health", "--json").out)
    assert report["healthy"] is False and report["stuck_jobs"] == 1
    deck.ok("abort", str(job), "--yes")
    deck.wait_task(job, "run", "aborted")

    serve.kill9()

    def stale() -> list[str] | None:
        res = deck.run("health")
        lines = res.out.splitlines()
        return lines if res.rc == 1 and any("lease stale" in line for line in lines) else None

    lines = wait_for(stale, "health to see the stale leases")
    assert [line.split(":")[0] for line in lines] == ["server batch-01", "server batch-02"]


def test_health_with_no_engine_and_bad_usage(deck: Deck) -> None:
    deck.refused("health")  # no such database: nothing created
    assert not deck.db.exists()
    deck.ok("settings", "lease_seconds", "5")  # creates the database (a read would not)
    res = deck.refused("health")
    assert res.out == "no engine serves this database\n", str(res)
    res = deck.refused("health", "--max-stuck", "-1", code=2)
    assert "--max-stuck" in res.err and len(res.err_lines) == 1, str(res)
    res = deck.refused("health", "--bogus", code=2)
    assert len(res.err_lines) == 1, str(res)


def test_health_names_a_late_beat_and_a_server_not_serving() -> None:
    """The lines for what a live test cannot hold still: a beat late but within the
    lease (writes failing), a server Restarting under a live lease."""
    from engine.core.views import ServerView
    from engine.service.health import problems_of

    def server(name: str, status: str, beat: float) -> ServerView:
        return ServerView(name, 4, status, None, None, "h:1:x", beat, 0, live=beat > 100 - 5)

    lines = problems_of(
        [server("a", "online", 99.5), server("b", "online", 96.5), server("c", "restarting", 99)],
        {},
        ttl=5,
        max_stuck=0,
        now=100.0,
    )
    assert lines == [
        "server b: last heartbeat 3.5 s ago (lease 5 s): its engine cannot write the "
        "database or is stalled",
        "server c: restarting under a live lease",
    ]


# -- completion ----------------------------------------------------------------------------------
def _bash_complete(deck: Deck, script: Path, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` (the completion function, as bash
    runs it on TAB), with ``batchdeck`` on PATH for the job ids."""
    line = " ".join(words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
        f"COMP_POINT=${{#COMP_LINE}}\n"
        "_shtab_batchdeck\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**deck.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.split() if w]


def test_bash_completion_offers_commands_options_statuses_keys_and_live_job_ids(
    deck: Deck, tmp_path: Path
) -> None:
    script = tmp_path / "batchdeck.bash"
    script.write_text(deck.ok("completion", "bash").out)
    waiting = deck.submit(deck.recipe("w", wait_recipe("w", 1)))
    ended = deck.submit(deck.recipe("e", wait_recipe("e", 1)))
    deck.write_sql("UPDATE job SET status = 'ended' WHERE id = ?", (ended,))

    assert _bash_complete(deck, script, ["batchdeck", "ca"]) == ["cancel"]
    assert {"health", "service", "completion", "servers"} <= set(
        _bash_complete(deck, script, ["batchdeck", "''"])
    )
    assert "--with-children" in _bash_complete(deck, script, ["batchdeck", "cancel", "--"])
    assert _bash_complete(deck, script, ["batchdeck", "list", "--status", "ex"]) == ["executing"]
    assert _bash_complete(deck, script, ["batchdeck", "settings", "stu"]) == ["stuck_seconds"]
    for verb in ("cancel", "abort", "show"):
        offered = _bash_complete(deck, script, ["batchdeck", verb, "''"])
        assert str(waiting) in offered and str(ended) not in offered, (verb, offered)


def test_zsh_completion_script_loads_and_names_live_job_ids(deck: Deck, tmp_path: Path) -> None:
    script = deck.ok("completion", "zsh").out
    assert script.startswith("#compdef batchdeck")
    assert "batchdeck completion --job-ids" in script
    assert "executing" in script and "stuck_seconds" in script
    if not os.path.exists("/usr/bin/zsh"):
        pytest.skip("zsh is not installed")
    fpath = tmp_path / "zfunc"
    fpath.mkdir()
    (fpath / "_batchdeck").write_text(script)
    # Installed as the README says (a file on $fpath): compinit binds it to batchdeck.
    program = (
        f"fpath=({fpath} $fpath); autoload -U compinit && compinit -u -d {tmp_path}/zcd\n"
        'print -r -- "$_comps[batchdeck]"'
    )
    proc = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == "_batchdeck\n", proc.stdout
    syntax = subprocess.run(
        ["zsh", "-n", str(fpath / "_batchdeck")], capture_output=True, text=True, timeout=60
    )
    assert syntax.returncode == 0, syntax.stderr


def test_completion_refuses_a_shell_it_does_not_know(deck: Deck) -> None:
    res = deck.refused("completion", "fish", code=2)
    assert len(res.err_lines) == 1, str(res)
    res = deck.refused("completion", code=2)
    assert "completion bash|zsh" in res.err, str(res)


def test_version(deck: Deck) -> None:
    from importlib.metadata import version

    assert deck.ok("--version").out == f"batchdeck {version('batchdeck')}\n"
