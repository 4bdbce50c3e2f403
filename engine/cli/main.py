"""``batchdeck``'s entry point: parse the command line, run the command, turn what it
raises into one line on stderr and an exit code: 0 done, 1 refused (the reason on
stderr), 2 bad usage. A command's module is imported only when it runs, so that
``batchdeck --help`` answers without loading SQLAlchemy or asyncio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from engine.cli.parser import build_parser
from engine.cli.shared import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Fail, db_path, verb
from engine.core.safe_text import safe_line

# Runs ``console`` and ``demo`` (the Textual console is not the engine's to import).
ConsoleRunner = Callable[[argparse.Namespace], int]
Command = Callable[[argparse.Namespace], int]


def _command(name: str) -> Command:
    """The function that runs command ``name`` (KeyError: not a command). Its module is
    imported here, when the command runs: ``--help`` and the light commands load no more
    than they use."""
    if name in ("cancel", "abort"):
        from engine.cli import cancel

        return cancel.cmd_cancel if name == "cancel" else cancel.cmd_abort
    if name in ("serve", "servers"):
        from engine.cli import serve

        return serve.cmd_serve if name == "serve" else serve.cmd_servers
    if name == "health":
        from engine.cli.health import cmd_health

        return cmd_health
    if name == "settings":
        from engine.cli.settings import cmd_settings

        return cmd_settings
    if name == "logs":
        from engine.cli.logs import cmd_logs

        return cmd_logs
    if name == "prune":
        from engine.cli.prune import cmd_prune

        return cmd_prune
    if name == "service":  # its one subcommand: unit
        from engine.cli.unit import cmd_unit

        return cmd_unit
    if name == "completion":
        from engine.cli.completion import cmd_completion

        return cmd_completion
    from engine.cli import jobs

    return {
        "submit": jobs.cmd_submit,
        "recipes": jobs.cmd_recipes,
        "list": jobs.cmd_list,
        "show": jobs.cmd_show,
        "rerun": jobs.cmd_rerun,
        "hold": jobs.cmd_request,
        "release": jobs.cmd_request,
        "approve": jobs.cmd_request,
        "reject": jobs.cmd_request,
    }[name]


def _database_failure(args: argparse.Namespace, exc: BaseException) -> str | None:
    """One line for an error of the database itself (damaged, read-only, locked), or
    None for any other exception."""
    from engine.sql.sqlite_file import DatabaseError, describe_sqlite_error

    if isinstance(exc, DatabaseError):
        return str(exc)
    return describe_sqlite_error(db_path(args), exc, verb(args))


def main(argv: Sequence[str] | None = None, console: ConsoleRunner | None = None) -> int:
    """Run ``batchdeck ARGV`` and return its exit code; ``console`` runs the console
    commands (without it they exit 2). Bad usage exits through argparse (SystemExit 2);
    nothing else raises, except a bug (an exception that is not the database's)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the command they were given to: `batchdeck list: ... --bogus`
        where = f"batchdeck {args.command}" if args.command else "batchdeck"
        print(f"{where}: unrecognized arguments: {safe_line(' '.join(extra))}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "db", None):
        # sqlite:///PATH is its PATH from here on; a PostgreSQL URL stays a URL.
        from engine.core.dburl import parse_db

        try:
            target = parse_db(args.db)
        except ValueError as exc:
            print(f"batchdeck: {exc}", file=sys.stderr)
            return EXIT_USAGE
        args.db = target.path if target.is_sqlite else target.url
    command = args.command or "console"
    if command in ("console", "demo"):
        if console is None:
            print("batchdeck: the console is not available in this build", file=sys.stderr)
            return EXIT_USAGE
        if not hasattr(args, "server"):
            args.server = None
        args.command = command
        return console(args)
    try:
        return _command(command)(args)
    except Fail as exc:
        print(f"batchdeck {command}: {safe_line(exc)}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        if command == "submit":  # ctrl-c before its write committed: it rolled back
            print("batchdeck submit: interrupted: nothing was submitted", file=sys.stderr)
        return EXIT_REFUSED
    except BrokenPipeError:
        # The reader went away (`batchdeck list | head`): nothing left to say, to anyone.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # The database failing under a command (a page found damaged only when read, a
        # write on a read-only file): one line, never a traceback. Anything else is a bug.
        line = _database_failure(args, exc)
        if line is None:
            raise
        print(f"batchdeck {command}: {safe_line(line)}", file=sys.stderr)
        return EXIT_REFUSED


def run() -> None:
    """``batchdeck`` without the console: exit with ``main``'s code."""
    sys.exit(main())
