"""The command line's parser: every command, its arguments and their help. Standard
library only (``batchdeck --help`` loads nothing else)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from engine.cli import arguments
from engine.cli.shared import EXIT_USAGE
from engine.core.safe_text import safe_line

SHELLS = ("bash", "zsh")

# ``cmd(name, help)``: a subcommand that takes ``--db`` too.
AddCommand = Callable[[str, str], argparse.ArgumentParser]


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit 2, like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {safe_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``batchdeck`` parser; ``args.command`` is None for the console (the default)."""
    db = _Parser(add_help=False)
    db.add_argument(
        "--db",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="database file (default: $BATCHDECK_DB or ./batchdeck.db)",
    )
    p = _Parser(
        prog="batchdeck",
        parents=[db],
        description="Watch, cancel and abort batch jobs. With no command: open the console.",
        epilog="Exit codes: 0 done, 1 refused (reason on stderr), 2 bad usage.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[db], help=help, description=help)

    _engine_commands(cmd)
    _job_commands(cmd)
    _tool_commands(cmd, db)
    _service_commands(p, cmd)
    return p


def _engine_commands(cmd: AddCommand) -> None:
    """console, demo, serve, submit, servers."""
    c = cmd(
        "console",
        "open the console (the default); runs the engine inside it unless "
        "`batchdeck serve` already serves this database",
    )
    c.add_argument(
        "--server",
        action="append",
        metavar="NAME[:SLOTS]",
        help="servers for the embedded engine (repeatable; default batch-01:4)",
    )
    d = cmd("demo", "open the console on a fresh demo database that shows every feature")
    d.add_argument(
        "--dir",
        default="./batchdeck-demo",
        help="where the demo database and recipes go (default ./batchdeck-demo)",
    )
    s = cmd(
        "serve", "run the engine headless; consoles and commands on the same database control it"
    )
    s.add_argument(
        "--server",
        action="append",
        metavar="NAME[:SLOTS]",
        help="a server to run (repeatable; default batch-01:4)",
    )
    s.add_argument(
        "--poll",
        type=arguments.poll,
        default=0.05,
        metavar="SECONDS",
        help="how often to look for requests from other processes (default 0.05)",
    )
    s.add_argument(
        "--metrics",
        type=arguments.listen,
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (off by default; "
        "a bare PORT listens on 127.0.0.1)",
    )
    s = cmd("submit", "submit a recipe; prints the new job's id")
    s.add_argument("recipe", metavar="RECIPE.toml")
    s.add_argument("--system", action="store_true", help="mark the job as a system job")
    s = cmd(
        "servers",
        "list the batch servers: status, host, pid, slots, in use, drain deadline, lease age",
    )
    s.add_argument("--json", action="store_true", help="print a JSON list")
    s.add_argument(
        "--forget",
        metavar="NAME",
        help="remove a server no engine runs any more from the list (recorded in the audit)",
    )


def _job_commands(cmd: AddCommand) -> None:
    """list, show, cancel, abort, rerun, hold, release, approve, reject, logs."""
    s = cmd("list", "list jobs, newest first")
    s.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="only jobs in this status (snake case; repeatable)",
    )
    s.add_argument(
        "--limit",
        type=arguments.limit,
        default=100,
        help="at most this many (default 100, up to 1000000)",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--stuck",
        action="store_true",
        help="only stuck jobs: a task Canceling or Aborting for longer than stuck_seconds",
    )
    s = cmd("show", "show a job: fields, tasks, children, events")
    s.add_argument("job", type=arguments.job_id, metavar="JOB")
    s.add_argument("--json", action="store_true", help="print JSON")
    s = cmd("cancel", "cancel a job gracefully: no new tasks, running tasks wind down")
    s.add_argument("job", type=arguments.job_id, metavar="JOB", nargs="?")
    s.add_argument("--reason", metavar="TEXT", help="your words, added to the reason for cancel")
    s.add_argument(
        "--with-children", action="store_true", help="cancel the job and every job it called"
    )
    _bulk_arguments(s, "cancel")
    s = cmd("abort", "force-stop a job's Canceling tasks (cancels an Executing job first)")
    s.add_argument("job", type=arguments.job_id, metavar="JOB", nargs="?")
    s.add_argument(
        "--enhanced",
        action="store_true",
        help="also restart the servers running them (other jobs there are disrupted)",
    )
    s.add_argument(
        "--yes",
        action="store_true",
        help="do it; without --yes, print what would be stopped and exit 1",
    )
    _bulk_arguments(s, "abort")
    s = cmd("rerun", "rerun what did not end: a new job of the tasks that did not end")
    s.add_argument("job", type=arguments.job_id, metavar="JOB")
    for name, what in (
        ("hold", "hold a Waiting job (Withhold)"),
        ("release", "release a held job"),
    ):
        cmd(name, what).add_argument("job", type=arguments.job_id, metavar="JOB")
    for name, what in (
        ("approve", "approve an approval task"),
        ("reject", "reject an approval task"),
    ):
        s = cmd(name, what)
        s.add_argument("job", type=arguments.job_id, metavar="JOB")
        s.add_argument("task", type=arguments.task_ref, metavar="TASK", help="task name or id")
    s = cmd("logs", "print a job's task logs (every task's, or one task's), or follow them")
    s.add_argument("job", type=arguments.job_id, metavar="JOB")
    s.add_argument(
        "task", type=arguments.task_ref, metavar="TASK", nargs="?", help="task name or id"
    )
    s.add_argument("--attempt", type=int, metavar="N", help="this attempt (default: the latest)")
    s.add_argument("-f", "--follow", action="store_true", help="print new lines until it ends")
    s.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    s.add_argument("--json", action="store_true", help="one JSON object per line")


def _bulk_arguments(s: argparse.ArgumentParser, verb: str) -> None:
    """``--all`` and its filters, for cancel and abort."""
    g = s.add_argument_group(f"{verb} many jobs (instead of JOB)")
    g.add_argument(
        "--all",
        action="store_true",
        help=f"{verb} every job the filters select (default: every job not in a final status)",
    )
    g.add_argument(
        "--status", action="append", metavar="S", help="only jobs in this status (repeatable)"
    )
    g.add_argument("--name", metavar="GLOB", help="only jobs whose name matches (e.g. 'nightly-*')")
    g.add_argument("--user", metavar="U", help="only jobs submitted by this user")
    g.add_argument(
        "--dry-run", action="store_true", help="print the plan and change nothing (exit 0)"
    )
    if verb == "cancel":
        g.add_argument(
            "--yes",
            action="store_true",
            help="do it; without --yes (or --dry-run) print the plan, change nothing, exit 1",
        )


def _tool_commands(cmd: AddCommand, db: argparse.ArgumentParser) -> None:
    """prune, recipes check, settings."""
    s = cmd(
        "prune",
        "delete finished jobs older than a date, with their tasks, events, recipes and logs",
    )
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", metavar="DATE", help="finished before this date (YYYY-MM-DD)")
    when.add_argument(
        "--older-than", metavar="AGE", help="finished longer ago than this (30d, 12h)"
    )
    s.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    s = cmd("recipes", "recipe tools")
    rsub = s.add_subparsers(dest="recipes_command", metavar="check", required=True)
    rc = rsub.add_parser("check", parents=[db], help="validate a recipe file or a directory")
    rc.add_argument("path", metavar="PATH")
    s = cmd("settings", "show settings, or set one: settings KEY VALUE")
    s.add_argument("key", nargs="?")
    s.add_argument("value", nargs="?")
    s.add_argument(
        "--force",
        action="store_true",
        help="set managers even to a value that leaves you out",
    )


def _service_commands(p: argparse.ArgumentParser, cmd: AddCommand) -> None:
    """``--version`` on ``p``; health, service unit, completion."""
    p.add_argument("--version", action=arguments.Version, help="print the version and exit")
    s = cmd(
        "health",
        "exit 0 when every server with a live lease serves, 1 when degraded (one line per "
        "problem), for a monitor",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument(
        "--max-stuck",
        type=arguments.count,
        default=0,
        metavar="N",
        help="degraded when more than N jobs are stuck (default 0)",
    )
    s = cmd("service", "run batchdeck as a systemd service")
    ssub = s.add_subparsers(dest="service_command", metavar="unit", required=True)
    u = ssub.add_parser(
        "unit",
        help="print a systemd unit file for `batchdeck serve`",
        description="Print a systemd unit file (Type=notify, with a watchdog) for "
        "`batchdeck serve`: save it as /etc/systemd/system/batchdeck.service.",
    )
    u.add_argument("--user", metavar="USER", help="the user it runs as (default: you)")
    u.add_argument(
        "--db",
        metavar="URL",
        dest="unit_db",
        help="its database: a path or a postgresql:// URL without its password "
        "(default: $BATCHDECK_DB or ./batchdeck.db, made absolute)",
    )
    u.add_argument(
        "--server",
        action="append",
        metavar="NAME:SLOTS",
        help="a server to run (repeatable; default batch-01:4)",
    )
    u.add_argument(
        "--metrics", type=arguments.listen, metavar="HOST:PORT", help="serve metrics there"
    )
    u.add_argument(
        "--watchdog",
        type=arguments.seconds,
        metavar="SECONDS",
        help="WatchdogSec: restart when the engine has not written for this long "
        "(default 30; at least twice lease_seconds)",
    )
    s = cmd("completion", "print a shell completion script: completion bash|zsh")
    s.add_argument("shell", choices=SHELLS, nargs="?", metavar="bash|zsh")
    s.add_argument("--job-ids", action="store_true", help=argparse.SUPPRESS)
