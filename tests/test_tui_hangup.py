"""The terminal goes away (an SSH drop) under a console that embeds the engine: the jobs
go on, headless, until they are done; then the process stops its engine and exits.
SIGTERM is a normal quit that restores the terminal.

The last two tests run the real ``batchdeck`` console in a subprocess on a pseudo
terminal (``pty``), and hang it up by closing the master side, as sshd does. Waiting is
always for a condition, in bounded loops; nothing is timed.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sqlite3
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from engine.flows import requests as request_flows
from engine.store.db import Store
from tests.proc_support import BATCHDECK, pid_alive
from tests.tui_support import RecordingApp, add, embedded, job_status, make_db, one, rows, utc  # noqa: F401 - utc: autouse
from tests.waiting import until, until_sync
from tui.host import EngineHost
from tui.launch import placement, run_headless

SERVERS = {"batch-01": 2}

APPROVAL = """
name = "needs-approval"
[[task]]
name = "approve"
action = "approval"
prompt = "go?"
[[task]]
name = "after"
action = "wait"
seconds = 0.5
after = ["approve"]
"""

WAIT = """
name = "short-wait"
[[task]]
name = "sleep"
action = "wait"
seconds = 1
"""

LONG = """
name = "long-wait"
[[task]]
name = "sleep"
action = "wait"
seconds = 120
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    return make_db(tmp_path, {"approval.toml": APPROVAL, "wait.toml": WAIT, "long.toml": LONG})


def lease(db: str) -> tuple[str, str | None]:
    return one(db, "SELECT status, lease_owner FROM server WHERE name='batch-01'")


# -- in process ---------------------------------------------------------------------------
async def test_a_hangup_hands_the_engine_over_and_it_runs_until_the_work_is_done(db: str) -> None:
    job = add(db, "wait.toml")
    held = add(db, "long.toml")
    store = Store(db)
    request_flows.hold(
        store.transaction, held, actor="alice"
    )  # a held job is no work: it does not keep it
    store.dispose()
    app, host = embedded(db, SERVERS)
    engine = host.engine
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: job_status(db, job) == "executing", "the start", pilot=pilot)
        host.hangup()
        await until(lambda: host.handed_off is not None, "the hand-off", pilot=pilot)
    # The console is gone; its engine is not: the lease is still held, the job running.
    assert host.handed_off is engine and lease(db) == ("online", engine.owner)
    await run_headless(engine, db, check_s=0.05)
    assert job_status(db, job) == "ended"
    assert job_status(db, held) == "withhold"
    assert lease(db) == ("offline", None)  # stopped cleanly


async def test_a_hangup_when_attached_just_exits(db: str) -> None:
    host = EngineHost()
    app = RecordingApp(db, mode_label="attached", actor="alice", host=host)
    async with app.run_test(size=(100, 30)) as pilot:
        host.hangup()
        await until(lambda: not app.is_running, "the exit", pilot=pilot)
    assert host.handed_off is None


# -- a real console on a pseudo terminal ---------------------------------------------------
class Console:
    """``batchdeck`` on a pty whose master side we hold (as sshd holds it)."""

    def __init__(
        self, db: str, argv: tuple[str, ...] = ("console", "--server", "batch-01:2")
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = dict(os.environ)
        for name in ("NO_COLOR", "SSH_CONNECTION", "TEXTUAL"):
            env.pop(name, None)
        env.update(TERM="xterm-256color", TEXTUAL_ANIMATIONS="none", BATCHDECK_DB=db)

        def controlling_terminal() -> None:  # after setsid(): the pty becomes ours
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [*BATCHDECK, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=Path(db).parent,
            env=env,
            start_new_session=True,
            preexec_fn=controlling_terminal,  # one ioctl: safe in the forked child
        )
        os.close(slave)
        self.master: int | None = master
        self.output = bytearray()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        """Read what the console draws (a full pty would block it)."""
        assert self.master is not None
        while not self._done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.output += data

    def stop_reading(self) -> None:
        self._done.set()
        self._reader.join()

    def hang_up(self) -> None:
        """Close the master side: the kernel hangs the terminal up (SIGHUP to the console)."""
        self.stop_reading()
        assert self.master is not None
        os.close(self.master)
        self.master = None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master is not None:
            self.stop_reading()
            os.close(self.master)
            self.master = None


@pytest.fixture
def console(db: str):
    consoles: list[Console] = []

    def start(*argv: str) -> Console:
        c = Console(db, *([argv] if argv else []))
        consoles.append(c)
        return c

    yield start
    for c in consoles:
        c.close()


def fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


def test_an_ssh_drop_does_not_kill_the_jobs(db: str, console) -> None:  # noqa: ANN001
    job = add(db, "approval.toml")
    c = console()
    until_sync(
        lambda: (
            one(db, "SELECT status FROM task WHERE job_id=? AND name='approve'", job) == "executing"
        ),
        "the embedded engine to start the job",
    )
    owner = lease(db)[1]
    assert owner and owner.split(":")[1] == str(c.proc.pid)
    c.hang_up()
    # The console let go of the terminal (its fds point at /dev/null)...
    until_sync(lambda: fd_target(c.proc.pid, 1) == os.devnull, "the console to detach")
    # ...but the process and its engine live on: heartbeats go on, the lease stays live,
    # and a console started now would attach to it.
    beat = one(db, "SELECT heartbeat_at FROM server WHERE name='batch-01'")
    until_sync(
        lambda: one(db, "SELECT heartbeat_at FROM server WHERE name='batch-01'") > beat,
        "a heartbeat after the hangup",
    )
    assert c.proc.poll() is None and lease(db) == ("online", owner)
    engine, label = placement(db, SERVERS)
    assert engine is None and label.startswith("attached to 1 engine: ")
    # The operator approves from elsewhere; the job ends, and then the process exits.
    store = Store(db)
    request_flows.decide_approval(store.transaction, job, "approve", approve=True, actor="bob")
    store.dispose()
    until_sync(lambda: c.proc.poll() is not None, "the headless console to exit by itself")
    assert c.proc.returncode == 0
    shown = subprocess.run(
        [*BATCHDECK, "show", str(job), "--json", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["status"] == "ended"
    assert lease(db) == ("offline", None)  # the engine stopped cleanly
    assert not pid_alive(c.proc.pid)


def test_sigterm_quits_normally_and_restores_the_terminal(db: str, console) -> None:  # noqa: ANN001
    job = add(db, "long.toml")
    c = console()
    until_sync(lambda: job_status(db, job) == "executing", "the embedded engine to start the job")
    until_sync(lambda: b"\x1b[?1049h" in c.output, "the console to take the screen")
    assert c.master is not None
    assert not termios.tcgetattr(c.master)[3] & termios.ICANON  # raw while it runs
    c.proc.send_signal(signal.SIGTERM)
    until_sync(lambda: c.proc.poll() is not None, "the console to exit")
    assert c.proc.returncode == 0
    c.stop_reading()
    attrs = termios.tcgetattr(c.master)
    assert attrs[3] & termios.ICANON and attrs[3] & termios.ECHO  # the terminal is back
    assert c.output.rfind(b"\x1b[?1049l") > c.output.rfind(b"\x1b[?1049h")  # screen left
    # A normal quit stops the embedded engine: the running task goes back to Ready.
    assert lease(db) == ("offline", None)
    assert one(db, "SELECT status FROM task WHERE job_id=?", job) == "ready"


def test_the_demo_ends_with_its_terminal(db: str, console) -> None:  # noqa: ANN001
    """The demo's data is throwaway, and its approval task would wait for ever: when its
    terminal goes, the demo stops its engine and exits (a real console would go on)."""
    demo_dir = Path(db).parent / "demo"
    c = console("demo", "--dir", str(demo_dir))
    demo_db = str(demo_dir / "batchdeck.db")

    def engine_up() -> bool:
        try:  # the demo builds its database first: tables may not be there yet
            owners = rows(demo_db, "SELECT lease_owner FROM server WHERE lease_owner IS NOT NULL")
        except sqlite3.OperationalError:
            return False
        return len(owners) == 2 and all(o.split(":")[1] == str(c.proc.pid) for (o,) in owners)

    until_sync(engine_up, "the demo's engine to start", bound=120)
    until_sync(
        lambda: one(demo_db, "SELECT status FROM task WHERE name='approve-posting'") == "executing",
        "the demo's approval task to wait",
        bound=60,
    )
    c.hang_up()
    until_sync(lambda: c.proc.poll() is not None, "the demo to exit with its terminal")
    assert c.proc.returncode == 0
    # Its engine stopped cleanly: leases given back, the approval task back to Ready.
    assert rows(demo_db, "SELECT status, lease_owner FROM server ORDER BY name") == [
        ("offline", None),
        ("offline", None),
    ]
    assert one(demo_db, "SELECT status FROM task WHERE name='approve-posting'") == "ready"
    assert not pid_alive(c.proc.pid)
