"""The service commands on the command line: ``--version``, ``health``, ``service
unit`` and ``completion``. Their arguments are declared here and hooked into
``engine.cli.main.build_parser``; each command's module is imported only when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from engine.service.options import listen_address

SHELLS = ("bash", "zsh")


class _Version(argparse.Action):
    """``--version``: the distribution's version, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_a: Any, **_k: Any) -> None:
        from engine.service.options import version

        sys.stdout.write(f"batchdeck {version()}\n")
        parser.exit(0)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= 1_000_000):
        raise argparse.ArgumentTypeError(
            f"expected a number of jobs from 0 to 1000000, got {text!r}"
        )
    return int(text)


def _seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 86400):
        raise argparse.ArgumentTypeError(f"expected whole seconds from 1 to 86400, got {text!r}")
    return int(text)


def listen_arg(text: str) -> tuple[str, int]:
    """``--metrics HOST:PORT`` (``serve``, ``service unit``)."""
    try:
        return listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_service_commands(
    p: argparse.ArgumentParser, cmd: Callable[[str, str], argparse.ArgumentParser]
) -> None:
    """``--version`` on ``p``; ``health``, ``service unit`` and ``completion``
    through ``cmd(name, help)`` (a subcommand with ``--db``)."""
    p.add_argument("--version", action=_Version, help="print the version and exit")
    s = cmd(
        "health",
        "exit 0 when every server with a live lease serves, 1 when degraded (one line per "
        "problem), for a monitor",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument(
        "--max-stuck",
        type=_count,
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
    u.add_argument("--metrics", type=listen_arg, metavar="HOST:PORT", help="serve metrics there")
    u.add_argument(
        "--watchdog",
        type=_seconds,
        metavar="SECONDS",
        help="WatchdogSec: restart when the engine has not written for this long "
        "(default 30; at least twice lease_seconds)",
    )
    s = cmd("completion", "print a shell completion script: completion bash|zsh")
    s.add_argument("shell", choices=SHELLS, nargs="?", metavar="bash|zsh")
    s.add_argument("--job-ids", action="store_true", help=argparse.SUPPRESS)


def run_service_command(args: argparse.Namespace) -> int:
    """Run ``health``, ``service unit`` or ``completion`` (``engine.cli.main.main`` turns a
    ``Fail`` into its one line and exit code)."""
    if args.command == "health":
        from engine.service.health import cmd_health

        return cmd_health(args)
    if args.command == "service":
        from engine.service.unit import cmd_unit

        return cmd_unit(args)
    from engine.service.completion import cmd_completion

    return cmd_completion(args)
