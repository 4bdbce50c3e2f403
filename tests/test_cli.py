"""``batchdeck`` on the command line: every command, its output and its exit code.

Each test runs the real command line against a real SQLite file in ``tmp_path``: in
this interpreter (``in_process``: the same parser, commands and exit codes, its output
captured), except where the process is the subject (what it imports, a lock it waits
for, a pipe closed under it) and for ``serve``, which are real processes. Exit codes:
0 done, 1 refused (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proc_support import BATCHDECK, Deck, Result, deck_in, user, wait_for, wait_recipe

SNAKE = {
    "waiting",
    "withhold",
    "ready",
    "executing",
    "canceling",
    "canceled",
    "didnt_run",
    "aborting",
    "aborted",
    "ended",
    "error",
}

TWO_TASKS = """\
name = "two-step"

[[task]]
name = "first"
action = "wait"
seconds = 60

[[task]]
name = "second"
action = "wait"
seconds = 1
after = ["first"]
"""


@pytest.fixture
def deck(tmp_path: Path, deck_db: str | None) -> Iterator[Deck]:
    with deck_in(tmp_path, deck_db) as d:
        in_process(d)
        yield d


def in_process(deck: Deck) -> None:
    """Run the deck's commands in this interpreter: a process start (~0.4 s for a write
    command, which imports SQLAlchemy) is not what these tests are about."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        from engine.cli.main import main
        from tui.cli import _console

        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        out, err = io.StringIO(), io.StringIO()
        os.environ.clear()
        os.environ.update({**deck.env, **(env or {})})
        os.chdir(deck.dir)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = main(list(args), console=_console)
                except SystemExit as exc:  # argparse: --help, bad usage
                    rc = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
        return Result(list(args), rc, out.getvalue(), err.getvalue())

    def run_all(*commands: tuple[str, ...], env: dict[str, str] | None = None) -> list[Result]:
        return [run(*args, env=env) for args in commands]

    deck.run = run  # type: ignore[method-assign]
    deck.run_all = run_all  # type: ignore[method-assign]


def one_line(res: Result) -> str:
    """The single line a refusal prints on stderr (and never a traceback)."""
    assert len(res.err_lines) == 1, f"expected one line on stderr:\n{res}"
    assert "Traceback" not in res.err, str(res)
    return res.err_lines[0]


# -- help ----------------------------------------------------------------------------


def test_help_exits_0_without_importing_the_database_layer_or_textual(deck: Deck) -> None:
    res = deck.ok("--help")
    for command in (
        "serve",
        "submit",
        "list",
        "show",
        "cancel",
        "abort",
        "hold",
        "release",
        "approve",
        "reject",
        "recipes",
        "settings",
    ):
        assert command in res.out
    probe = (
        "import sys; sys.argv=['batchdeck','--help']; from tui.cli import main\n"
        "try: main()\n"
        "except SystemExit: pass\n"
        "print('sqlalchemy' in sys.modules, 'textual' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=deck.dir,
        env=deck.env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False", proc.stdout


def test_command_help_and_bad_usage(deck: Deck) -> None:
    res = deck.ok("abort", "--help")
    assert "--yes" in res.out and "--enhanced" in res.out
    deck.refused("frobnicate", code=2)
    deck.refused("cancel", code=2)  # JOB missing
    deck.refused("cancel", "0", code=2)
    deck.refused("serve", "--server", "batch-01:many", code=2)
    assert not deck.db.exists()  # bad usage touches nothing


# -- submit, list, show --------------------------------------------------------------------


def test_submit_prints_the_new_id_alone_and_list_and_show_read_it(deck: Deck) -> None:
    first = deck.ok("submit", str(deck.recipe("a", TWO_TASKS)))
    assert re.fullmatch(r"\d+\n", first.out), repr(first.out)
    second = deck.ok("submit", str(deck.recipe("b", wait_recipe("beta", 5))))
    assert re.fullmatch(r"\d+\n", second.out), repr(second.out)
    a, b = int(first.out), int(second.out)
    assert b == a + 1
    deck.ok("hold", str(b))

    (text, all_rows, held, either, executing, limited, shown, shown_text, missing, bad_status) = (
        deck.run_all(
            ("list",),
            ("list", "--json"),
            ("list", "--status", "withhold", "--json"),
            ("list", "--status", "withhold", "--status", "waiting", "--json"),
            ("list", "--status", "executing", "--json"),
            ("list", "--limit", "1", "--json"),
            ("show", str(a), "--json"),
            ("show", str(a)),
            ("show", "999", "--json"),
            ("list", "--status", "Running"),
        )
    )

    assert text.rc == 0 and "two-step" in text.out and "beta" in text.out, str(text)
    assert "Withhold" in text.out
    rows = json.loads(all_rows.out)
    assert [r["id"] for r in rows] == [b, a]  # newest first
    for r in rows:
        assert {
            "id",
            "name",
            "status",
            "system",
            "cancel_reason",
            "canceled_by",
            "canceled_at",
            "aborted_by",
            "aborted_at",
            "parent_id",
        } <= set(r)
        assert "tasks" not in r and "events" not in r
    assert [r["status"] for r in rows] == ["withhold", "waiting"]
    assert [r["id"] for r in json.loads(held.out)] == [b]
    assert sorted(r["id"] for r in json.loads(either.out)) == [a, b]
    assert json.loads(executing.out) == []
    assert len(json.loads(limited.out)) == 1

    job = json.loads(shown.out)
    for key in (
        "id",
        "name",
        "status",
        "system",
        "cancel_reason",
        "canceled_by",
        "canceled_at",
        "aborted_by",
        "aborted_at",
        "parent_id",
        "tasks",
        "children",
        "events",
    ):
        assert key in job, key
    assert job["id"] == a and job["name"] == "two-step" and job["status"] == "waiting"
    assert job["system"] is False and job["parent_id"] is None and job["children"] == []
    assert job["recipe_path"] == str(deck.dir / "a.toml")
    assert [t["name"] for t in job["tasks"]] == ["first", "second"]
    for t in job["tasks"]:
        for key in (
            "name",
            "status",
            "server",
            "attempt",
            "progress_done",
            "progress_total",
            "message",
        ):
            assert key in t, key
        assert t["status"] in SNAKE and t["server"] is None and t["attempt"] == 1
    assert [t["status"] for t in job["tasks"]] == ["ready", "waiting"]
    assert job["events"] and job["events"][0]["actor"] == user()
    assert shown_text.rc == 0 and "two-step" in shown_text.out and "Waiting" in shown_text.out

    assert missing.rc == 1 and "Job 999 does not exist" in one_line(missing)
    assert bad_status.rc == 2 and "Running" in one_line(bad_status)
    res = deck.refused("show", "abc", code=2)
    assert "abc" in res.err


def test_submit_bad_or_missing_recipe_is_refused_with_one_line(deck: Deck) -> None:
    bad = deck.recipe("bad", TWO_TASKS.replace('after = ["first"]', 'after = ["frist"]'))
    invalid, missing = deck.refused_all(
        ("submit", str(bad)), ("submit", str(deck.dir / "nowhere.toml"))
    )
    line = one_line(invalid)
    assert "bad.toml" in line
    assert "task 'second'" in line and "field 'after'" in line and "'frist'" in line
    line = one_line(missing)
    assert "nowhere.toml" in line and "no such file" in line
    assert invalid.out == missing.out == ""
    assert not deck.db.exists()  # nothing was submitted anywhere


# -- cancel ------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_cancel_of_waiting_and_held_jobs_without_an_engine(deck: Deck) -> None:
    two = deck.submit(deck.recipe("two", TWO_TASKS))
    w = deck.recipe("w", wait_recipe("w", 5))
    held, remote = deck.submit_all(w, w)
    deck.ok("hold", str(held))
    for res in deck.run_all(
        ("cancel", str(two), "--reason", "wrong sandbox"), ("cancel", str(held))
    ):
        assert res.rc == 0 and "Canceled" in res.out, str(res)
    res = deck.run(
        "cancel",
        str(remote),
        "--reason",
        "  bad data  ",
        env={"SSH_CONNECTION": "10.1.2.3 50022 10.0.0.9 22"},
    )
    assert res.rc == 0, str(res)

    job, held_job, remote_job = deck.show_all(two, held, remote)
    assert job["status"] == "canceled"
    assert [t["status"] for t in job["tasks"]] == ["didnt_run", "didnt_run"]
    assert job["cancel_reason"] == f"Job canceled by {user()}: wrong sandbox"
    assert job["canceled_by"] == user()
    assert isinstance(job["canceled_at"], float)
    assert job["aborted_by"] is None and job["aborted_at"] is None
    assert any(e["to_status"] == "canceled" and e["actor"] == user() for e in job["events"])

    assert held_job["status"] == "canceled" and held_job["tasks"][0]["status"] == "didnt_run"
    assert held_job["cancel_reason"] == f"Job canceled by {user()}"  # no words: just who

    assert remote_job["canceled_by"] == f"{user()} from 10.1.2.3"
    assert remote_job["cancel_reason"] == f"Job canceled by {user()} from 10.1.2.3: bad data"

    again, abort, hold = deck.refused_all(
        ("cancel", str(two)), ("abort", str(two), "--yes"), ("hold", str(two))
    )
    assert f"Job {two} already Canceled" in one_line(again)
    assert f"Job {two} already Canceled" in one_line(abort)
    assert "Canceled" in one_line(hold)
    assert deck.show(two) == job  # nothing changed


def test_system_and_missing_jobs_are_refused_and_nothing_changes(deck: Deck) -> None:
    flagged = deck.submit(deck.recipe("w", wait_recipe("housekeeping", 5)), "--system")
    from_recipe = deck.submit(deck.recipe("sys", wait_recipe("sys", 5, system=True)))
    before = deck.show(flagged)
    assert before["system"] is True
    j, k = str(flagged), str(from_recipe)
    cancel, tree, abort, cancel2, *missing = deck.refused_all(
        ("cancel", j, "--reason", "please"),
        ("cancel", j, "--with-children"),
        ("abort", j, "--yes"),
        ("cancel", k),
        ("cancel", "42"),
        ("abort", "42", "--yes"),
        ("release", "42"),
    )
    for res in (cancel, cancel2):
        assert one_line(res).endswith("System jobs cannot be canceled"), str(res)
    one_line(tree)
    assert "System jobs cannot be aborted" in one_line(abort)
    for res in missing:
        assert "Job 42 does not exist" in one_line(res), str(res)
    after, other = deck.run_all(("show", j, "--json"), ("show", k, "--json"))
    assert json.loads(after.out) == before
    assert json.loads(other.out)["system"] is True
    assert json.loads(other.out)["status"] == "waiting"


# -- abort -------------------------------------------------------------------------------


def test_abort_approve_and_reject_of_a_waiting_job_are_refused(deck: Deck) -> None:
    job_id = deck.submit(deck.recipe("two", TWO_TASKS))
    (gate,) = deck.submit_all(
        deck.recipe(
            "gate", 'name = "gate"\n[[task]]\nname = "ok"\naction = "approval"\nprompt = "Go?"\n'
        )
    )
    before = deck.show(job_id)
    j, task_id = str(job_id), str(before["tasks"][0]["id"])
    results = deck.refused_all(
        ("abort", j),
        ("abort", j, "--enhanced", "--yes"),
        ("approve", j, "first"),
        ("reject", j, task_id),
        ("reject", j, "nope"),
        ("approve", str(gate), "ok"),
    )
    for res in results[:2]:
        line = one_line(res)
        assert f"Job {job_id}" in line and "Waiting" in line and "nothing is running" in line
    for res in results[2:4]:
        assert "not an approval task" in one_line(res)
    assert "no task 'nope'" in one_line(results[4])
    assert "not waiting for approval" in one_line(results[5])  # not started: no engine
    deck.refused("approve", j, code=2)  # TASK missing
    assert deck.show(job_id) == before


def _state(deck: Deck, job_id: int) -> tuple:
    job = deck.show(job_id)
    return (
        job["status"],
        job["cancel_reason"],
        job["aborted_by"],
        [(t["name"], t["status"]) for t in job["tasks"]],
        [e["id"] for e in job["events"]],
    )


@pytest.mark.both_databases
def test_abort_prints_the_plan_without_yes_and_enhanced_can_be_turned_off(deck: Deck) -> None:
    job_id = deck.submit(deck.recipe("two", TWO_TASKS))
    deck.serve()
    deck.wait_task(job_id, "first", "executing")
    before = _state(deck, job_id)

    plain, enhanced = deck.refused_all(("abort", str(job_id)), ("abort", str(job_id), "--enhanced"))
    assert "unsafe" in plain.out
    assert "first" in plain.out and "batch-01" in plain.out
    assert "--yes" in plain.err
    assert "unsafe" in enhanced.out and "Servers to restart: batch-01" in enhanced.out
    assert _state(deck, job_id) == before

    deck.ok("settings", "enhanced_abort", "off")
    for res in deck.refused_all(
        ("abort", str(job_id), "--enhanced"), ("abort", str(job_id), "--enhanced", "--yes")
    ):
        assert "turned off" in one_line(res)
    assert _state(deck, job_id) == before
    assert deck.job_status(job_id) == "executing"


# -- hold / release / approve / reject -------------------------------------------------------


@pytest.mark.both_databases
def test_hold_and_release_round_trip(deck: Deck) -> None:
    job_id = deck.submit(deck.recipe("w", wait_recipe("w", 5)))
    assert "Withhold" in deck.ok("hold", str(job_id)).out
    again, abort, shown = deck.run_all(
        ("hold", str(job_id)), ("abort", str(job_id), "--yes"), ("show", str(job_id), "--json")
    )
    assert again.rc == 1 and "only a Waiting job" in one_line(again)
    assert abort.rc == 1 and "Withhold" in one_line(abort)
    assert json.loads(shown.out)["status"] == "withhold"
    deck.ok("release", str(job_id))
    again, shown = deck.run_all(("release", str(job_id)), ("show", str(job_id), "--json"))
    assert again.rc == 1 and "only a held job" in one_line(again)
    job = json.loads(shown.out)
    assert job["status"] == "waiting"
    reasons = [e["reason"] for e in job["events"]]
    assert f"held by {user()}" in reasons and f"released by {user()}" in reasons


# -- recipes check -------------------------------------------------------------------------


def test_recipes_check_directory(deck: Deck) -> None:
    recipes = deck.dir / "recipes"
    (recipes / "sub").mkdir(parents=True)
    (recipes / "a.toml").write_text(wait_recipe("a", 1))
    (recipes / "sub" / "b.toml").write_text(TWO_TASKS)
    (recipes / "notes.txt").write_text("not a recipe")
    res = deck.ok("recipes", "check", str(recipes))
    lines = res.out.splitlines()
    assert len(lines) == 2 and all(line.endswith(": ok") for line in lines), res.out
    assert any("a.toml" in line for line in lines) and any("b.toml" in line for line in lines)
    assert res.err == ""

    (recipes / "sub" / "c.toml").write_text(wait_recipe("c", 1).replace('"wait"', '"wiat"'))
    res = deck.refused("recipes", "check", str(recipes))
    line = one_line(res)
    assert "c.toml" in line and "task 'sleep'" in line and "field 'action'" in line
    assert "'wiat'" in line
    assert len(res.out.splitlines()) == 2  # the good ones still say ok

    assert "ok" in deck.ok("recipes", "check", str(recipes / "a.toml")).out
    (deck.dir / "empty").mkdir()
    one_line(deck.refused("recipes", "check", str(deck.dir / "empty")))
    deck.refused("recipes", code=2)
    assert not deck.db.exists()  # checking recipes needs no database


# -- settings --------------------------------------------------------------------------------


def test_settings_show_get_set_and_bad_values(deck: Deck) -> None:
    missing = deck.run("settings")  # a read creates no database
    assert missing.rc == 1 and f"no such database: {deck.db}" in one_line(missing), str(missing)
    deck.ok("settings", "stuck_seconds", "300")  # a change may: it writes
    lines = deck.ok("settings").out.splitlines()
    assert sorted(lines) == [
        "drain_seconds = 900",
        "enhanced_abort = on",
        "keep_days =",
        "lease_seconds = 5",
        "log_max_bytes = 10485760",
        "managers =",
        "stuck_seconds = 300",
    ]
    # Read before writing: run together, the read could see either value.
    assert deck.ok("settings", "drain_seconds").out.strip() == "900"
    set_drain, set_abort = deck.run_all(
        ("settings", "drain_seconds", "2.5"),
        ("settings", "enhanced_abort", "off"),
    )
    assert set_drain.rc == 0 and set_drain.out.strip() == "drain_seconds = 2.5", str(set_drain)
    assert set_abort.rc == 0, str(set_abort)
    lines_after = deck.ok("settings").out.splitlines()
    assert "enhanced_abort = off" in lines_after and "drain_seconds = 2.5" in lines_after

    bad = (
        ("drain_seconds", "-1"),
        ("lease_seconds", "soon"),
        ("enhanced_abort", "maybe"),
        ("colour", "blue"),
    )
    *results, shown = deck.run_all(*(("settings", *a) for a in bad), ("settings",))
    for args, res in zip(bad, results, strict=True):
        assert res.rc == 2 and args[0] in one_line(res), str(res)
    assert shown.rc == 0 and shown.out.splitlines() == lines_after  # nothing changed


# -- schema version ----------------------------------------------------------------------------


def test_a_database_of_another_schema_version_is_refused_by_every_command(deck: Deck) -> None:
    recipe = deck.recipe("w", wait_recipe("w", 5))
    job_id = deck.submit(recipe)
    conn = sqlite3.connect(deck.db)
    with conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.close()
    j = str(job_id)
    commands = (
        ("list", "--json"),
        ("show", j),
        ("submit", str(recipe)),
        ("cancel", j),
        ("settings", "drain_seconds", "3"),
        ("serve",),
    )
    for res in deck.refused_all(*commands):
        line = one_line(res)
        assert "99" in line and "version" in line, str(res)
    rows = sqlite3.connect(deck.db).execute("SELECT id, status FROM job").fetchall()
    assert rows == [(job_id, "waiting")]


def test_not_a_batchdeck_database(deck: Deck) -> None:
    other = deck.dir / "other.db"
    conn = sqlite3.connect(other)
    with conn:
        conn.execute("CREATE TABLE leads(id INTEGER PRIMARY KEY)")
    conn.close()
    res = deck.run("--db", str(other), "list")
    assert res.rc == 1, str(res)
    assert "not a batchdeck database" in one_line(res)


def test_db_option_overrides_the_environment(deck: Deck) -> None:
    elsewhere = deck.dir / "elsewhere.db"
    recipe = deck.recipe("w", wait_recipe("w", 5))
    res = deck.ok("submit", "--db", str(elsewhere), str(recipe))
    assert elsewhere.exists() and not deck.db.exists()
    rows = json.loads(deck.ok("--db", str(elsewhere), "list", "--json").out)
    assert [r["id"] for r in rows] == [int(res.out)]


# -- bad databases, locks and odd settings ---------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_in_one_line(deck: Deck) -> None:
    text = deck.dir / "notes.txt"
    text.write_text("these are my notes, not a database\n" * 20)
    for res in deck.run_all(("--db", str(text), "list"), ("--db", str(text), "settings")):
        assert res.rc == 1, str(res)
        one_line(res)


def test_a_database_in_a_missing_directory_is_refused_in_one_line(deck: Deck) -> None:
    res = deck.run("--db", str(deck.dir / "no" / "such" / "dir.db"), "list")
    assert res.rc == 1, str(res)
    assert "dir.db" in one_line(res)


def test_settings_refuse_nan(deck: Deck) -> None:
    res = deck.run("settings", "drain_seconds", "nan")
    assert res.rc == 2, str(res)


def _waiting_on(pid: int, db: Path) -> bool:
    """Has process ``pid`` opened ``db``, and is it asleep in a timed wait?"""
    try:
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return str(db) in fds and "nanosleep" in wchan


def test_a_fresh_database_locked_by_another_process_is_waited_for(deck: Deck) -> None:
    holder = sqlite3.connect(deck.db, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a write lock on the new, empty file
        proc = subprocess.Popen(
            [*BATCHDECK, "settings", "drain_seconds"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=deck.dir,
            env=deck.env,
        )
        # Let go once the command is waiting for the lock: it has the file open and
        # sleeps (SQLite's busy handler, or the retry of the switch to WAL).
        wait_for(lambda: _waiting_on(proc.pid, deck.db), "the command to wait for the lock")
        holder.execute("ROLLBACK")
        out, err = proc.communicate(timeout=60)
    finally:
        holder.close()
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    assert out.strip() == "900"


def test_a_reader_that_goes_away_is_no_traceback(deck: Deck) -> None:
    """`batchdeck list --json | head -c 10`: the pipe closes under the command."""
    from engine.flows import base as flows
    from engine.recipes import Recipe, TaskSpec
    from engine.store.db import Store

    store = Store(deck.db)
    try:
        recipe = Recipe("many", None, False, (TaskSpec("t", "wait", (), {"seconds": 1}),))
        for _ in range(400):
            flows.submit(store.transaction, recipe, actor="tester")
    finally:
        store.dispose()
    cmd = " ".join(f"'{a}'" for a in BATCHDECK)
    res = subprocess.run(
        ["sh", "-c", f"{cmd} list --json --limit 400 | head -c 10 >/dev/null"],
        capture_output=True,
        text=True,
        env=deck.env,
        cwd=deck.dir,
        timeout=60,
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr
