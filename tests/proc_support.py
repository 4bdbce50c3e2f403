"""Helpers for the tests that drive ``batchdeck`` as real processes.

Everything here runs the real command line in a fresh interpreter
(``python -c "from tui.cli import main; main()"``) against a real SQLite file, and
starts ``batchdeck serve`` as a real subprocess. Nothing is mocked. Waiting is always
for a condition, polled in a bounded loop; no test asserts on how long anything took.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.waiting import until_sync as wait_for  # the suite's one poller, for subprocesses

BATCHDECK = [sys.executable, "-c", "from tui.cli import main; main()"]

CLI_TIMEOUT_S = 60.0


def user() -> str:
    """The actor the command line records, with no SSH_CONNECTION in its environment:
    the name of the process's uid (never LOGNAME or USER)."""
    from engine.core.identity import os_user

    return os_user()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running process (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


@dataclass
class Result:
    args: list[str]
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return (
            f"batchdeck {' '.join(self.args)} -> exit {self.rc}\n"
            f"--- stdout ---\n{self.out}--- stderr ---\n{self.err}"
        )

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


class Serve:
    """One ``batchdeck serve`` subprocess; its output goes to files in the test's dir."""

    def __init__(self, deck: Deck, args: Iterable[str]) -> None:
        self.deck = deck
        self.args = list(args)
        n = len(deck.servers)
        self.out_path = deck.dir / f"serve-{n}.out"
        self.err_path = deck.dir / f"serve-{n}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*BATCHDECK, "serve", *self.args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=deck.env,
                cwd=deck.dir,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_serving(self) -> Serve:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"serve exited {self.proc.returncode} before serving:\n"
                    f"{self.output()}{self.errors()}"
                )
            return "serving" in self.output()

        wait_for(ready, "serve to say 'serving'")
        return self

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM (the engine stops cleanly), then SIGKILL if it does not exit. Bounded."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


class Deck:
    """One database file in ``tmp_path``, the CLI against it, and the processes started."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.db = root / "batchdeck.db"
        env = dict(os.environ)
        env.pop("SSH_CONNECTION", None)
        env.pop("NO_COLOR", None)
        env["BATCHDECK_DB"] = str(self.db)
        # Task code of the tests' own (tests.blocking_fn) imports in the server processes.
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.env = env
        self.servers: list[Serve] = []
        self.pid_files: list[Path] = []  # processes a recipe started, ended at close

    # -- command line -------------------------------------------------------------------
    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [*BATCHDECK, *args],
            capture_output=True,
            text=True,
            cwd=self.dir,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            timeout=CLI_TIMEOUT_S,
        )
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)

    def run_all(
        self, *commands: tuple[str, ...], env: dict[str, str] | None = None
    ) -> list[Result]:
        """Run independent commands side by side (each its own process); results in order."""
        procs = [
            (
                list(args),
                subprocess.Popen(
                    [*BATCHDECK, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=self.dir,
                    env={**self.env, **(env or {})},
                    stdin=subprocess.DEVNULL,
                ),
            )
            for args in commands
        ]
        results = []
        for args, proc in procs:
            try:
                out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            results.append(Result(args, proc.returncode, out, err))
        return results

    def refused_all(self, *commands: tuple[str, ...], code: int = 1) -> list[Result]:
        results = self.run_all(*commands)
        for res in results:
            assert res.rc == code, str(res)
            assert "Traceback" not in res.err, str(res)
        return results

    def ok(self, *args: str) -> Result:
        res = self.run(*args)
        assert res.rc == 0, str(res)
        return res

    def refused(self, *args: str, code: int = 1) -> Result:
        res = self.run(*args)
        assert res.rc == code, str(res)
        assert "Traceback" not in res.err, str(res)
        return res

    def submit(self, recipe: Path, *extra: str) -> int:
        res = self.ok("submit", str(recipe), *extra)
        assert res.out.strip().isdigit(), str(res)
        return int(res.out)

    def submit_all(self, *recipes: Path) -> list[int]:
        """Submit several recipes side by side; their ids, in the order of ``recipes``."""
        ids = []
        for res in self.run_all(*(("submit", str(r)) for r in recipes)):
            assert res.rc == 0 and res.out.strip().isdigit(), str(res)
            ids.append(int(res.out))
        return ids

    def show_all(self, *jobs: int) -> list[dict[str, Any]]:
        out = []
        for res in self.run_all(*(("show", str(j), "--json") for j in jobs)):
            assert res.rc == 0, str(res)
            out.append(json.loads(res.out))
        return out

    def show(self, job: int) -> dict[str, Any]:
        return json.loads(self.ok("show", str(job), "--json").out)

    def recipe(self, name: str, text: str) -> Path:
        path = self.dir / f"{name}.toml"
        path.write_text(text)
        return path

    # -- the database, read directly (fast enough to poll) ----------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(self.db, timeout=10)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def write_sql(self, query: str, params: tuple = ()) -> None:
        conn = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        try:
            conn.execute(query, params)
        finally:
            conn.close()

    def job_status(self, job: int) -> str | None:
        rows = self.sql("SELECT status FROM job WHERE id=?", (job,))
        return rows[0][0] if rows else None

    def task(self, job: int, name: str) -> dict[str, Any]:
        conn = sqlite3.connect(self.db, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(
                "SELECT * FROM task WHERE job_id=? AND name=?", (job, name)
            ).fetchone()
        finally:
            conn.close()
        assert row is not None, f"job {job} has no task {name!r}"
        return dict(row)

    def task_status(self, job: int, name: str) -> str:
        return self.task(job, name)["status"]

    def wait_task(self, job: int, name: str, *statuses: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            t = self.task(job, name)
            return t if t["status"] in statuses else None

        return wait_for(
            probe,
            f"task {name!r} of job {job} to be {'/'.join(statuses)} "
            f"(now {self.task_status(job, name)!r})",
        )

    def wait_job(self, job: int, *statuses: str) -> str:
        def probe() -> str | None:
            status = self.job_status(job)
            return status if status in statuses else None

        return wait_for(probe, f"job {job} to be {'/'.join(statuses)}")

    def events(self, job: int) -> list[tuple]:
        return self.sql(
            "SELECT task_id, from_status, to_status, actor, reason FROM event "
            "WHERE job_id=? ORDER BY id",
            (job,),
        )

    # -- processes ----------------------------------------------------------------------
    def serve(self, *args: str) -> Serve:
        """Start ``batchdeck serve`` and wait until it says it is serving."""
        return self.start_serve(*args).wait_serving()

    def start_serve(self, *args: str) -> Serve:
        """Start ``batchdeck serve`` without waiting; stopped at ``close``."""
        s = Serve(self, args)
        self.servers.append(s)
        return s

    def track_pid_file(self, path: Path) -> Path:
        self.pid_files.append(path)
        return path

    def close(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()
        for path in self.pid_files:
            pid = read_pid(path)
            if pid is not None and pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def deck_in(root: Path, db: str | None = None):  # noqa: ANN201 - a generator context manager
    """A Deck on its own SQLite file in ``root``, or on the PostgreSQL database ``db``."""
    if db is None:
        deck = Deck(root)
    else:
        from tests.pg_support import pg_deck

        deck = pg_deck(root, db)
    try:
        yield deck
    finally:
        deck.close()


def toml_str(value: str) -> str:
    """A TOML basic string."""
    return json.dumps(value)


def wait_recipe(name: str, seconds: float, *, system: bool = False, extra_task: str = "") -> str:
    head = f'name = "{name}"\n' + ("system = true\n" if system else "")
    return head + f'[[task]]\nname = "sleep"\naction = "wait"\nseconds = {seconds}\n' + extra_task
