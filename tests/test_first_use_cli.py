"""What a new operator trips on at the command line (issue 23): an enhanced abort by
filter says how far it reaches, the plan lines line up, TRY reads as the console's, a
bad option names its command, the console's status groups, a mistyped ``--db``, the
managers setting that locks its writer out, server names. The real ``main`` on real
SQLite files (the fixed scenario of ``tests/scenario.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.cli.main import main as cli_main
from engine.runtime import tick as batch
from engine.store.db import Store
from tests import scenario


@pytest.fixture
def scenario_db(tmp_path: Path) -> str:
    return scenario.build(tmp_path / "scenario.db")


def run_cli(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = cli_main(["--db", db, *args])
    except SystemExit as exc:  # argparse's own usage errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def disrupted_ids(out: str) -> set[int]:
    """The job ids under "Other jobs disrupted" in a plan's text."""
    block = out.split("Other jobs disrupted", 1)[1].split("\n")[1:]
    ids = set()
    for line in block:
        m = re.match(r"  job (\d+) ", line)
        if not m:
            break
        ids.add(int(m.group(1)))
    return ids


def test_bulk_enhanced_abort_plan_shows_servers_and_every_other_job_disrupted(
    scenario_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the one-job plan does: the union of the jobs' reach, without the jobs acted on."""
    reach: set[int] = set()
    servers: set[str] = set()
    acted = {2, 5, 9, 10}  # the Executing jobs but the system one
    for job in acted:
        rc, out, err = run_cli(capsys, scenario_db, "abort", str(job), "--enhanced", "--dry-run")
        assert rc == 0, err
        reach |= disrupted_ids(out)
        servers |= set(re.search(r"Servers to restart: (.*) \(", out).group(1).split(", "))
    rc, out, err = run_cli(
        capsys, scenario_db, "abort", "--all", "--enhanced", "--status", "executing", "--dry-run"
    )
    assert rc == 0, err
    assert f"Servers to restart: {', '.join(sorted(servers))} (drain up to 10m00s)" in out
    others = reach - acted
    assert others == {6, 12, 13}  # the system job, and the two Canceling ones
    assert f"Other jobs disrupted ({len(others)}):" in out
    assert disrupted_ids(out) == others
    assert "  job 6 maintenance: vacuum" in out
    # A plain abort restarts nothing: no such lines.
    rc, out, _ = run_cli(
        capsys, scenario_db, "abort", "--all", "--status", "executing", "--dry-run"
    )
    assert rc == 0 and "Servers to restart" not in out and "disrupted" not in out


def test_bulk_plan_lines_are_aligned(scenario_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, scenario_db, "cancel", "--all", "--dry-run")
    assert rc == 0
    jobs = [line for line in out.splitlines() if re.match(r"  \d+ ", line)]
    assert len(jobs) == 9  # 6 to cancel, 3 refused
    # Each column starts at the same place on every line: the name, then the status.
    names = {line.index(line.split()[1]) for line in jobs}
    statuses = {re.search(r"(Executing|Waiting|Withhold|Canceling)", line).start() for line in jobs}
    assert len(names) == 1 and len(statuses) == 1, out
    acted = [line for line in jobs if " by " in line]
    assert len({line.index(" by ") for line in acted}) == 1, out
    rc, out, _ = run_cli(capsys, scenario_db, "abort", "--all", "--dry-run")
    forced = [line for line in out.splitlines() if "to force-stop" in line]
    assert len(forced) == 5 and len({line.index("(") for line in forced}) == 1, out


def test_show_try_column_reads_as_the_console(
    scenario_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run_cli(capsys, scenario_db, "show", "2")
    assert rc == 0
    load = next(line for line in out.splitlines() if line.startswith("load "))
    assert " 1/3 " in load, load


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("list", "--bogus"), "batchdeck list: unrecognized arguments: --bogus"),
        (("show", "2", "--wide"), "batchdeck show: unrecognized arguments: --wide"),
        (("--bogus",), "batchdeck: unrecognized arguments: --bogus"),
    ],
)
def test_an_unknown_option_names_its_command(
    scenario_db: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], said: str
) -> None:
    rc, out, err = run_cli(capsys, scenario_db, *args)
    assert (rc, out, err) == (2, "", said + "\n")


def test_status_takes_the_console_filter_groups(
    scenario_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_cli(capsys, scenario_db, "list", "--status", "running", "--json")
    assert rc == 0, err
    import json

    got = {(j["id"], j["status"]) for j in json.loads(out)}
    assert {s for _, s in got} == {"executing", "canceling"} and (13, "canceling") in got
    rc, out, err = run_cli(capsys, scenario_db, "list", "--status", "failed", "--json")
    assert rc == 0 and {j["status"] for j in json.loads(out)} == {"error", "canceled"}
    # A status of the group's name keeps its meaning: "waiting" is Waiting alone.
    rc, out, err = run_cli(capsys, scenario_db, "list", "--status", "waiting", "--json")
    assert [j["id"] for j in json.loads(out)] == [14]
    rc, out, err = run_cli(
        capsys, scenario_db, "cancel", "--all", "--status", "running", "--dry-run"
    )
    assert rc == 0 and "Cancel: 4 jobs (4 Executing)" in out, err
    rc, out, err = run_cli(capsys, scenario_db, "list", "--status", "nope")
    assert rc == 2 and "running" in err and "unknown status" in err


# -- a mistyped --db creates nothing ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("list", "--stuck"),
        ("show", "1"),
        ("servers",),
        ("settings",),
        ("settings", "stuck_seconds"),
        ("cancel", "1"),
        ("cancel", "--all", "--dry-run"),
        ("abort", "1", "--yes"),
        ("hold", "1"),
        ("rerun", "1"),
    ],
)
def test_a_read_on_a_missing_database_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    db = tmp_path / "batchdek.db"
    rc, out, err = run_cli(capsys, str(db), *args)
    assert (rc, out) == (1, ""), err
    assert err == f"batchdeck {args[0]}: no such database: {db}\n"
    assert list(tmp_path.iterdir()) == []


def test_only_writes_of_their_own_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.db"
    rc, out, err = run_cli(capsys, str(db), "settings", "stuck_seconds", "60")
    assert (rc, out) == (0, "stuck_seconds = 60\n"), err
    assert db.exists()
    rc, out, _ = run_cli(capsys, str(db), "list")
    assert (rc, out) == (0, "no jobs\n")
    # A missing directory is still named as such.
    rc, _, err = run_cli(capsys, str(tmp_path / "no" / "x.db"), "list")
    assert rc == 1 and "no such directory" in err


# -- a managers value that locks its writer out -------------------------------------------------


def test_managers_that_exclude_the_one_setting_them_are_refused_unless_forced(
    scenario_db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.core.identity.current_actor", lambda: "root")
    monkeypatch.setattr("engine.cli.main._actor", lambda: "root")
    rc, out, err = run_cli(capsys, scenario_db, "settings", "managers", "alice, @batchops")
    assert rc == 1 and out == ""
    assert err == (
        "batchdeck settings: managers alice, @batchops would leave you (root) out: you could "
        "no longer change settings or abort. Add yourself, or give --force\n"
    )
    rc, out, _ = run_cli(capsys, scenario_db, "settings", "managers")
    assert (rc, out) == (0, "\n")  # nothing changed
    rc, out, err = run_cli(capsys, scenario_db, "settings", "managers", "root, alice")
    assert rc == 0, err
    assert out == (
        "managers = root, alice\n"
        "Managers: root, alice (you are one); they abort and change settings\n"
    )
    rc, out, err = run_cli(
        capsys, scenario_db, "settings", "managers", "alice, @batchops", "--force"
    )
    assert rc == 0, err
    assert "Managers: alice, @batchops (you are not one)" in out


# -- server names, and forgetting a server ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("x y:2", "a server name uses only letters, digits, '.', '_' and '-'"),
        ("a" * 65, "a server name is at most 64 characters"),
        ("tab\there", "a server name uses only letters"),
        (":3", "a server name cannot be empty"),
        ("ok:many", "slots must be a whole number"),
    ],
)
def test_serve_refuses_a_bad_server_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, said: str
) -> None:
    db = tmp_path / "s.db"
    rc, out, err = run_cli(capsys, str(db), "serve", "--server", spec)
    assert rc == 2 and out == "" and said in err, err
    assert err.startswith("batchdeck serve: --server ") and err.count("\n") == 1
    assert not db.exists()


def test_server_names_of_the_allowed_characters_parse() -> None:
    from engine.cli.main import server_args

    assert server_args(["batch-01.eu_2:3", "a" * 64]) == {"batch-01.eu_2": 3, "a" * 64: 4}


def test_servers_forget_removes_an_offline_server_and_is_audited(
    scenario_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.tui_support import one, rows

    # The scenario's engine stopped beating long ago, but its tasks still run on the
    # server: refused until an engine recovers them.
    rc, _, err = run_cli(capsys, scenario_db, "servers", "--forget", "batch-01")
    assert rc == 1 and "server batch-01 holds 5 running tasks" in err, err
    # A server with nothing on it and no engine: forgotten.
    store = Store(scenario_db)
    try:
        with store.write() as conn:
            batch.claim_leases(conn, {"batch-03": 2}, "gone-host:1:x", at=scenario.T0)
    finally:
        store.dispose()
    rc, out, err = run_cli(capsys, scenario_db, "servers", "--forget", "batch-03")
    assert (rc, out) == (0, "Server batch-03 forgotten\n"), err
    assert rows(scenario_db, "SELECT name FROM server WHERE name='batch-03'") == []
    last = "SELECT reason FROM event WHERE kind='server' AND server='batch-03' ORDER BY id DESC"
    assert one(scenario_db, last) == "forgotten"
    rc, out, _ = run_cli(capsys, scenario_db, "servers")
    assert "batch-03" not in out
    rc, _, err = run_cli(capsys, scenario_db, "servers", "--forget", "batch-03")
    assert rc == 1 and "no server named 'batch-03'" in err


def test_servers_forget_is_refused_while_an_engine_serves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    db = str(tmp_path / "live.db")
    store = Store(db)
    try:
        with store.write() as conn:
            batch.claim_leases(conn, {"batch-01": 2}, "here:1:x", at=time.time())
    finally:
        store.dispose()
    rc, _, err = run_cli(capsys, db, "servers", "--forget", "batch-01")
    assert rc == 1 and "server batch-01 is Online: an engine serves it" in err, err
