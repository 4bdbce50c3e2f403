"""What a new operator trips on at the command line (issue 23): an enhanced abort by
filter says how far it reaches, the plan lines line up, TRY reads as the console's, a
bad option names its command, the console's status groups, a mistyped ``--db``, the
managers setting that locks its writer out, server names. The real ``main`` on real
SQLite files (the fixed scenario of ``tests/scenario.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.cli import main as cli_main
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
