"""Hardening (issue 8), as a hostile user tries it: every bad input gets one line and
its exit code, nothing is corrupted, nothing in the audit can be spoofed.

One table, one row per case: the command, the database it runs on, who runs it, the
exit code, and the one line it prints (matched whole). Every row also checks that no
traceback and no raw control character reaches the terminal. Rows run in-process
(``engine.cli.main.main``) unless the process itself matters: a command that would run on
forever if the check were missing (``serve``, the console), or one that must run as a
user without root's override of file permissions (through ``setpriv``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import pwd
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-c", "from tui.cli import main; main()"]
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
PROC_TIMEOUT_S = 30
MAX_ID = str(2**63 - 1)
TOO_BIG_ID = str(2**63)
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")
DAMAGED = (
    r"{db}: the database is damaged \(.+\); recover what it holds with "
    r"`sqlite3 {db} \.recover \| sqlite3 {db}\.recovered` and use {db}\.recovered"
)

WAIT = """\
name = "plain"

[[task]]
name = "w"
action = "wait"
seconds = 60
"""

HOSTILE_NAME = "evil\x1b[2J\x1b]0;owned\x07\nname"
HOSTILE = """\
name = "evil\\u001b[2J\\u001b]0;owned\\u0007\\nname"

[[task]]
name = "load\\u001b[31m"
action = "wait"
seconds = 60
"""
HOSTILE_MESSAGE = "a\x1b]0;pwned\x07b\nnext\x00\u202e"
HOSTILE_OUTPUT = "line1\n\x1b[2Jline2\r\n"


def recipe_text(**top: Any) -> str:
    """A one-task recipe; ``task_*`` keys go to the task, the rest to the top level."""
    task = {"name": "t", "action": "wait", "seconds": 1}
    task.update({k[5:]: v for k, v in top.items() if k.startswith("task_")})
    head = {"name": "r", **{k: v for k, v in top.items() if not k.startswith("task_")}}

    def toml(value: Any) -> str:
        return json.dumps(value) if isinstance(value, str) else str(value)

    lines = [f"{k} = {toml(v)}" for k, v in head.items()] + ["", "[[task]]"]
    lines += [f"{k} = {toml(v)}" for k, v in task.items()]
    return "\n".join(lines) + "\n"


RECIPES = {
    "plain": WAIT,
    "attempts": recipe_text(max_attempts=99999999999999999999),
    "chunk": recipe_text(
        task_name="load",
        task_action="bulk_import_csv",
        task_seconds=None,
        task_file="in.csv",
        task_database="t.db",
        task_table="leads",
        task_key="id",
        task_chunk_rows=2**63 - 1,
    ).replace("seconds = None\n", ""),
    "wait": recipe_text(task_seconds="1e300").replace('"1e300"', "1e300"),
    "blocking": recipe_text(task_action="blocking_wait", task_seconds="1e300").replace(
        '"1e300"', "1e300"
    ),
    "fail": recipe_text(task_action="fail", task_seconds=None, task_delay="1e300")
    .replace("seconds = None\n", "")
    .replace('"1e300"', "1e300"),
    "longname": recipe_text(name="n" * 201),
    "longtask": recipe_text(task_name="t" * 300),
    "nul": 'name = "r"\n[[task]]\nname = "t"\naction = "shell"\ncommand = ["a\\u0000b"]\n',
}


# -- databases the rows run on ------------------------------------------------------------


@dataclass
class Place:
    """Where a row runs: a directory with recipes and a database."""

    dir: Path
    db: Path
    holders: list[sqlite3.Connection] = field(default_factory=list)

    def recipe(self, name: str) -> Path:
        path = self.dir / f"{name}.toml"
        path.write_text(RECIPES[name])
        return path


def _submit(db: Path, recipe: Path, actor: str = "alice") -> int:
    from engine.flows import base as flows
    from engine.recipes import load_recipe
    from engine.store.db import Store

    store = Store(db)
    try:
        return flows.submit(store.transaction, load_recipe(recipe), actor=actor)
    finally:
        store.dispose()


def _sql(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def setup_plain(place: Place) -> None:
    """One Waiting job (id 1), named "plain"."""
    _submit(place.db, place.recipe("plain"))


def setup_hostile(place: Place) -> None:
    """Job 1: its name, its task's name, message and output hold ESC, BEL, NUL, newline."""
    path = place.dir / "hostile.toml"
    path.write_text(HOSTILE)
    _submit(place.db, path)
    _sql(place.db, "UPDATE task SET message=?, output=?", (HOSTILE_MESSAGE, HOSTILE_OUTPUT))


def setup_damaged(place: Place) -> None:
    """600 jobs, then 64 KiB overwritten in the middle of the file."""
    import time

    from engine.flows import base as flows
    from engine.recipes import recipe_from_dict
    from engine.store.db import Store

    recipe = recipe_from_dict(
        {
            "name": "n" * 150,
            "task": [{"name": f"t{i}", "action": "wait", "seconds": 1} for i in range(5)],
        },
        "test",
    )
    store = Store(place.db)
    with store.transaction() as sql:
        for _ in range(600):
            flows.insert_job(sql, recipe, actor="alice", at=time.time())
    store.dispose()
    size = place.db.stat().st_size
    with open(place.db, "r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(b"\xa5" * 65536)
    place.recipe("plain")


def setup_read_only(place: Place) -> None:
    """Job 1 in a database the user may read (0644) but not write, in a 0755 directory."""
    setup_plain(place)
    place.db.chmod(0o644)


def setup_read_only_dir(place: Place) -> None:
    """The file is writable by all (0666) but its directory (0755) is not."""
    setup_plain(place)
    place.db.chmod(0o666)


def setup_read_only_live(place: Place) -> None:
    """Read-only, while the owner has it open (an engine would): -wal and -shm exist."""
    setup_read_only(place)
    conn = sqlite3.connect(place.db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("UPDATE job SET name='renamed' WHERE id=1")  # only in the -wal so far
    place.holders.append(conn)
    assert Path(str(place.db) + "-wal").exists()


def setup_private(place: Place) -> None:
    """Created by its owner through batchdeck (mode 0600): other users cannot read it."""
    setup_plain(place)


SETUPS: dict[str, Callable[[Place], None]] = {
    "none": lambda place: None,
    "plain": setup_plain,
    "hostile": setup_hostile,
    "damaged": setup_damaged,
    "read_only": setup_read_only,
    "read_only_dir": setup_read_only_dir,
    "read_only_live": setup_read_only_live,
    "private": setup_private,
}


# -- checks after a row ---------------------------------------------------------------------


def os_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def canceled_by_uid_user(place: Place) -> None:
    assert _sql(place.db, "SELECT canceled_by FROM job WHERE id=1") == [(os_user(),)]
    actors = {a for (a,) in _sql(place.db, "SELECT actor FROM event WHERE job_id=1")}
    assert "someone-else" not in " ".join(actors)


def canceled_from_ssh_client(place: Place) -> None:
    assert _sql(place.db, "SELECT canceled_by FROM job WHERE id=1") == [
        (f"{os_user()} from 10.9.8.7",)
    ]


def private_files(place: Place) -> None:
    """The database, and its -wal and -shm while open, are 0600."""
    assert stat.S_IMODE(place.db.stat().st_mode) == 0o600
    conn = sqlite3.connect(place.db)
    try:
        conn.execute("SELECT count(*) FROM job").fetchall()
        for suffix in ("-wal", "-shm"):
            companion = Path(str(place.db) + suffix)
            assert companion.exists(), companion
            assert stat.S_IMODE(companion.stat().st_mode) == 0o600, companion
    finally:
        conn.close()


def nothing_written(place: Place) -> None:
    assert _sql(place.db, "SELECT id, status, canceled_by FROM job") == [(1, "waiting", None)]


def show_json_keeps_the_stored_text(place: Place, out: str) -> None:
    data = json.loads(out)
    assert data["name"] == HOSTILE_NAME
    assert data["tasks"][0]["message"] == HOSTILE_MESSAGE


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # after `--db {db}`; {db}, {dir}, {recipe:NAME} are filled in
    rc: int
    line: str  # regex: the one line printed (stderr when refused, else found in stdout)
    setup: str = "plain"
    how: str = "inproc"  # "inproc", "proc" (a real process), "nobody" (as uid 65534)
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[..., None] | None = None
    patch: dict[str, Any] = field(default_factory=dict)  # engine.cli constants, in-process


def usage(cmd: str, what: str) -> str:
    return re.escape(f"batchdeck {cmd}: {what}")


BIG_ID = f"argument JOB: expected a job id from 1 to {MAX_ID}, got '{TOO_BIG_ID}'"

CASES = [
    # -- ids and limits: one line, exit 2, never an OverflowError ---------------------------
    *(
        Case(f"{cmd}-id-2**63", (cmd, TOO_BIG_ID, *extra), 2, usage(cmd, BIG_ID))
        for cmd, extra in (
            ("show", ()),
            ("cancel", ()),
            ("abort", ("--yes",)),
            ("hold", ()),
            ("release", ()),
            ("approve", ("t",)),
        )
    ),
    Case(
        "approve-task-id-huge",
        ("approve", "1", "99999999999999999999"),
        2,
        usage(
            "approve",
            f"argument TASK: expected a task id from 1 to {MAX_ID}, got '99999999999999999999'",
        ),
    ),
    Case(
        "show-arabic-digit",
        ("show", "٣"),
        2,
        usage("show", "argument JOB: expected a job id (digits 0-9), got '٣'"),
    ),
    Case(
        "list-limit-huge",
        ("list", "--limit", "99999999999999999999"),
        2,
        usage(
            "list",
            "argument --limit: expected a number of jobs from 1 to 1000000, "
            "got '99999999999999999999'",
        ),
    ),
    Case(
        "serve-poll-huge",
        ("serve", "--poll", "1e308"),
        2,
        usage(
            "serve", "argument --poll: expected a number of seconds from 0.01 to 60, got '1e308'"
        ),
        how="proc",
    ),
    Case(
        "serve-slots-huge",
        ("serve", "--server", "b:99999999999999999999"),
        2,
        usage("serve", "--server 'b:99999999999999999999': at most 1000 slots"),
        how="proc",
    ),
    # -- recipes: `recipes check` and `submit` agree, naming the file and the field ----------
    *(
        Case(
            f"{cmd}-{name}",
            (*argv, "{recipe:" + name + "}"),
            1,
            re.escape(prefix) + "{recipe_re:" + name + "}" + re.escape(": " + problem),
        )
        for name, problem in (
            ("attempts", "field 'max_attempts': must be at most 100, got 99999999999999999999"),
            (
                "chunk",
                "task 'load': field 'chunk_rows': must be at most 1000000, got 9223372036854775807",
            ),
            ("wait", "task 't': field 'seconds': must be at most 31536000, got 1e+300"),
            ("blocking", "task 't': field 'seconds': must be at most 31536000, got 1e+300"),
            ("fail", "task 't': field 'delay': must be at most 31536000, got 1e+300"),
            ("longname", "field 'name': longer than 200 characters (201)"),
            ("longtask", "task #1: field 'name': longer than 200 characters (300)"),
            ("nul", "task 't': field 'command': must not contain a NUL character"),
        )
        for cmd, argv, prefix in (
            ("check", ("recipes", "check"), ""),
            ("submit", ("submit",), "batchdeck submit: "),
        )
    ),
    # -- settings: bounded, so that recovery stays possible -----------------------------------
    Case(
        "settings-lease-huge",
        ("settings", "lease_seconds", "1e308"),
        2,
        usage(
            "settings",
            "setting lease_seconds: expected a positive number of at least 1 and at most 3600 "
            "(seconds), got '1e308'",
        ),
    ),
    Case(
        "settings-drain-huge",
        ("settings", "drain_seconds", "1e308"),
        2,
        usage(
            "settings",
            "setting drain_seconds: expected a positive number and at most 86400 (seconds), "
            "got '1e308'",
        ),
    ),
    # -- a damaged database: every command says so, and how to recover ------------------------
    *(
        Case(
            f"damaged-{argv[0]}",
            argv,
            1,
            ("batchdeck: " if how == "console" else f"batchdeck {argv[0]}: ") + DAMAGED,
            "damaged",
            how,
        )
        for argv, how in (
            (("list",), "inproc"),
            (("show", "1"), "inproc"),
            (("cancel", "1"), "inproc"),
            (("submit", "{recipe:plain}"), "inproc"),
            (("settings", "drain_seconds", "5"), "inproc"),
            (("serve",), "proc"),
            (("console",), "console"),
        )
    ),
    Case(
        # Above the size a read command checks in full, SQLite's own error says it.
        "damaged-list-unchecked",
        ("list", "--limit", "1000"),
        1,
        "batchdeck list: " + DAMAGED,
        "damaged",
        patch={"READ_CHECK_MAX_BYTES": 0},
    ),
    # -- read-only: reads work, writes are refused in one line ---------------------------------
    *(
        Case(f"{setup}-{argv[0]}", argv, 0, line, setup, how="nobody")
        for setup in ("read_only", "read_only_dir")
        for argv, line in (
            (("list",), r"^1\s+Waiting\s+plain\s+0/1\s.*alice$"),
            (("show", "1"), r"^Job:\s+1 plain$"),
            (("settings",), r"^lease_seconds = 5$"),
        )
    ),
    *(
        Case(
            f"{setup}-{argv[0]}",
            argv,
            1,
            re.escape(f"batchdeck {argv[0]}: ")
            + "{db}"
            + re.escape(f": read-only for you (user nobody): cannot {verb}"),
            setup,
            how="nobody",
            check=nothing_written,
        )
        for setup in ("read_only", "read_only_dir")
        for argv, verb in (
            (("cancel", "1"), "cancel"),
            (("abort", "1", "--yes"), "abort"),
            (("hold", "1"), "hold"),
            (("submit", "{recipe:plain}"), "submit"),
            (("settings", "lease_seconds", "4"), "change settings"),
            (("serve",), "serve"),
        )
    ),
    # -- files: created 0600 with their -wal and -shm; another user cannot read them -----------
    Case("new-db-is-private", ("submit", "{recipe:plain}"), 0, r"^1$", "none", check=private_files),
    Case(
        "private-db-other-user",
        ("list",),
        1,
        re.escape("batchdeck list: ") + "{db}" + re.escape(": not readable for you (user nobody)"),
        "private",
        how="nobody",
    ),
    # -- identity: the user from the uid, the client from SSH_CONNECTION or SSH_CLIENT ---------
    Case(
        "logname-spoof",
        ("cancel", "1"),
        0,
        r"^Job 1 Canceled$",
        env={"LOGNAME": "someone-else", "USER": "someone-else"},
        check=canceled_by_uid_user,
    ),
    Case(
        "ssh-client-only",
        ("cancel", "1"),
        0,
        r"^Job 1 Canceled$",
        env={"SSH_CLIENT": "10.9.8.7 50022 22"},
        check=canceled_from_ssh_client,
    ),
    # -- terminal injection: list and show escape what recipes and tasks wrote ------------------
    Case(
        "hostile-list",
        ("list",),
        0,
        re.escape(r"evil\x1b[2J\x1b]0;owned\x07\nname"),
        "hostile",
    ),
    Case(
        "hostile-show-task-row",
        ("show", "1"),
        0,
        r"^load\\x1b\[31m\s+Ready\s.*" + re.escape(r"a\x1b]0;pwned\x07b\nnext\x00\u202e") + "$",
        "hostile",
    ),
    Case(
        "hostile-show-fields",
        ("show", "1"),
        0,
        r"^Job:\s+1 " + re.escape(r"evil\x1b[2J\x1b]0;owned\x07\nname") + "$",
        "hostile",
    ),
]


# What already held before the hardening and must keep holding: JSON escapes control
# characters itself (and keeps the stored text exact); a reader sees the owner's
# uncheckpointed writes while an engine has the database open (the -wal path of mode=ro).
GUARDS = [
    Case(
        "read_only_live-list",
        ("list",),
        0,
        r"^1\s+Waiting\s+renamed\s+0/1\s.*alice$",
        "read_only_live",
        how="nobody",
    ),
    Case(
        "hostile-show-json",
        ("show", "1", "--json"),
        0,
        r'"name": "evil\\u001b\[2J',
        "hostile",
        check=show_json_keeps_the_stored_text,
    ),
]


# -- running a row ------------------------------------------------------------------------------


@contextlib.contextmanager
def place_for(case: Case, tmp_path: Path) -> Iterator[Place]:
    if case.how != "nobody":
        place = Place(tmp_path, tmp_path / "batchdeck.db")
        yield place
        return
    # pytest's tmp_path is private to root: the unprivileged user needs a way in.
    d = Path(tempfile.mkdtemp(prefix="batchdeck-h8-", dir="/tmp"))
    place = Place(d, d / "batchdeck.db")
    try:
        d.chmod(0o755)
        yield place
    finally:
        for conn in place.holders:
            conn.close()
        shutil.rmtree(d, ignore_errors=True)


def fill(text: str, place: Place, regex: bool = False) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "db":
            value = str(place.db)
        elif key == "dir":
            value = str(place.dir)
        elif key.startswith("recipe:"):
            value = str(place.recipe(key[7:]))
        elif key.startswith("recipe_re:"):
            return re.escape(str(place.recipe(key[10:])))
        else:
            raise KeyError(key)
        return re.escape(value) if regex else value

    return re.sub(r"\{([a-z_]+(?::[a-z]+)?)\}", sub, text)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "SSH_CLIENT")}
    env.pop("BATCHDECK_DB", None)
    env.update(extra)
    return env


def run_inproc(
    argv: list[str], case: Case, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str, str]:
    import engine.cli.main as cli_main

    for var in ("SSH_CONNECTION", "SSH_CLIENT", "BATCHDECK_DB"):
        monkeypatch.delenv(var, raising=False)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    for k, v in case.patch.items():
        monkeypatch.setattr(cli_main, k, v, raising=False)
    capsys.readouterr()
    try:
        rc = cli_main.main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def run_proc(argv: list[str], case: Case, place: Place) -> tuple[int, str, str]:
    prefix: list[str] = []
    env = clean_env(case.env)
    if case.how == "nobody":
        prefix = [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        env["HOME"] = str(place.dir)
    proc = subprocess.run(
        [*prefix, *CLI, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=place.dir,
        timeout=PROC_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_console(argv: list[str], case: Case, place: Place) -> tuple[int, str, str]:
    """The console needs a terminal: give it a pty; what it refuses with is on stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *argv],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=clean_env({"TERM": "xterm-256color"}),
        cwd=place.dir,
        start_new_session=True,
        text=True,
    )
    os.close(slave)
    try:
        _, err = proc.communicate(timeout=PROC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise AssertionError("the console started on a damaged database") from None
    finally:
        os.close(master)
    return proc.returncode, "", err


def needs_unprivileged_user(case: Case) -> None:
    if case.how != "nobody":
        return
    if os.getuid() != 0:
        pytest.skip("file-permission rows run as uid 65534 through setpriv, which needs root")
    if SETPRIV is None:
        pytest.skip("setpriv is not installed: cannot drop root's override of file modes")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hardening(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    check_case(case, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("case", GUARDS, ids=lambda c: c.id)
def test_hardening_guards(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    check_case(case, tmp_path, monkeypatch, capsys)


def check_case(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    needs_unprivileged_user(case)
    with place_for(case, tmp_path) as place:
        SETUPS[case.setup](place)
        argv = ["--db", str(place.db), *(fill(a, place) for a in case.argv)]
        if case.how == "inproc":
            rc, out, err = run_inproc(argv, case, monkeypatch, capsys)
        elif case.how == "console":
            rc, out, err = run_console(argv, case, place)
        else:
            rc, out, err = run_proc(argv, case, place)
        shown = f"exit {rc}\n--- stdout ---\n{out}--- stderr ---\n{err}"
        assert "Traceback" not in err, shown
        assert not RAW_CONTROL.search(out + err.replace("\n", "")), shown
        assert rc == case.rc, shown
        pattern = fill(case.line, place, regex=True)
        if case.rc == 0:
            assert err == "", shown
            assert re.search(pattern, out, re.M), f"{pattern!r} not in stdout\n{shown}"
        else:
            lines = [x for x in err.splitlines() if x.strip()]
            assert len(lines) == 1, f"expected one line on stderr\n{shown}"
            assert re.fullmatch(pattern, lines[0]), f"{pattern!r}\n{shown}"
        if case.check is not None:
            if case.check is show_json_keeps_the_stored_text:
                case.check(place, out)
            else:
                case.check(place)


# -- actions: bad data ends the task in Error, naming what was wrong and where ------------------

ACTION_CASES = [
    pytest.param(
        "bulk_import_csv",
        {"in.csv": 'id,name\n1,"unterminated\n2,b\n3,c\n'},
        {"file": "in.csv", "database": "t.db", "table": "leads", "key": "id"},
        r".*/in\.csv: line 2: a quoted field is never closed \(unterminated quote\)",
        id="csv-unterminated-quote",
    ),
    pytest.param(
        "bulk_import_csv",
        {"in.csv": 'id,name\n1,ok\n2,"a"b\n'},
        {"file": "in.csv", "database": "t.db", "table": "leads", "key": "id"},
        r".*/in\.csv: line 3: not valid CSV: ',' expected after '\"'",
        id="csv-stray-quote",
    ),
    pytest.param(
        "shell",
        {},
        {"command": ["true"], "cwd": "no/such/dir"},
        r"cannot run 'true': no such directory: .*/no/such/dir",
        id="shell-missing-cwd",
    ),
]


@pytest.mark.parametrize(("action", "files", "given", "error"), ACTION_CASES)
async def test_action_errors(
    action: str, files: dict[str, str], given: dict[str, Any], error: str, tmp_path: Path
) -> None:
    from engine.actions.context import ActionError
    from tests.test_actions import make_ctx, run

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ActionError) as info:
        await run(action, make_ctx(), tmp_path, **given)
    assert re.fullmatch(error, str(info.value)), str(info.value)
    if action == "bulk_import_csv" and (tmp_path / "t.db").exists():
        # Nothing half imported: the file is checked before any row is written.
        tables = _sql(tmp_path / "t.db", "SELECT name FROM sqlite_master WHERE type='table'")
        if tables:
            assert _sql(tmp_path / "t.db", "SELECT count(*) FROM leads") == [(0,)]


# -- the console: escaped text, and read-only for a user who may not write ----------------------

CONSOLE_PROBE = """
import asyncio, json, sys
from tui.app import BatchdeckApp

async def main():
    app = BatchdeckApp(sys.argv[1], mode_label="attached", live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if getattr(app.screen, "loaded", False):
                break
        shown = {b.binding.key for b in app.screen.active_bindings.values()}
        await pilot.press("c")
        await pilot.pause(0.2)
        print(json.dumps({
            "sub_title": app.sub_title,
            "keys": sorted(shown),
            "screen": type(app.screen).__name__,
        }))

asyncio.run(main())
"""


def test_console_opens_read_only_without_the_keys_that_write() -> None:
    needs_unprivileged_user(Case("console", (), 0, "", how="nobody"))
    d = Path(tempfile.mkdtemp(prefix="batchdeck-h8-", dir="/tmp"))
    try:
        d.chmod(0o755)
        place = Place(d, d / "batchdeck.db")
        setup_read_only(place)
        env = clean_env({"HOME": str(d)})
        proc = subprocess.run(
            [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            + [sys.executable, "-c", CONSOLE_PROBE, str(place.db)],
            capture_output=True,
            text=True,
            env=env,
            cwd=d,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen["sub_title"].startswith("READ-ONLY for you (user nobody)"), seen
        assert "c" not in seen["keys"] and "a" not in seen["keys"], seen
        assert {"q", "s"} <= set(seen["keys"]), seen
        assert seen["screen"] == "JobListScreen", seen  # `c` opened no confirmation
        nothing_written(place)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_console_draws_hostile_text_escaped(tmp_path: Path) -> None:
    from tests.tui_support import text_of
    from tests.waiting import until
    from tui.app import BatchdeckApp

    place = Place(tmp_path, tmp_path / "batchdeck.db")
    setup_hostile(place)
    _sql(place.db, "UPDATE task SET action='shell'")  # its output tail is shown too
    app = BatchdeckApp(str(place.db), mode_label="attached", live=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(lambda: getattr(app.screen, "loaded", False), "the job list", pilot=pilot)
        listed = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert not RAW_CONTROL.search(listed.replace("\n", "")), repr(listed)
        assert r"evil\x1b[2J\x1b]0;owned\x07\nname" in listed, listed
        await pilot.press("enter")
        await until(
            lambda: type(app.screen).__name__ == "JobDetailScreen" and app.screen.loaded,
            "the job detail",
            pilot=pilot,
        )
        await pilot.pause(0.2)
        shown = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert not RAW_CONTROL.search(shown.replace("\n", "")), repr(shown)
        assert r"load\x1b[31m" in shown, shown
        assert r"a\x1b]0;pwned\x07b\nnext" in shown, shown
        output = text_of(app.screen.query_one("#output"))
        assert "line1" in output and r"\x1b[2Jline2" in output, output
