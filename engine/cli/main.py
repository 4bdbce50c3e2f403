"""The command line. Database modules are imported inside each command, so that
``batchdeck --help`` answers without loading SQLAlchemy.

Exit codes: 0 done, 1 refused (the reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from engine.core.safe_text import safe_line

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

# Job ids are SQLite integers: 64-bit signed.
MAX_JOB_ID = 2**63 - 1
MAX_LIST_LIMIT = 1_000_000
R = TypeVar("R")

# A read command checks the whole file for damage up to this size (PRAGMA quick_check
# reads every page, ~1.6 ms per MiB: 13 ms here, 0.14 s for 100,000 jobs, which would be
# most of a list's time); above it, SQLite's own errors say so when a damaged page is
# read. Writes, serve and the console always check.
READ_CHECK_MAX_BYTES = 8 * 1024 * 1024

ConsoleRunner = Callable[[argparse.Namespace], int]


class Fail(Exception):
    """A refusal or bad input, printed as one line on stderr."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def _whole(text: str, what: str, least: int, most: int) -> int:
    """A whole number written in ASCII digits, within [least, most]; ``int()`` alone
    would take "٣" for 3 and a 20-digit number that SQLite cannot hold."""
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(f"expected {what} (digits 0-9), got {text!r}")
    value = int(text)
    if not least <= value <= most:
        raise argparse.ArgumentTypeError(
            f"expected {what} from {least} to {most}, got {_shorten(text)}"
        )
    return value


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _job_id(text: str) -> int:
    return _whole(text, "a job id", 1, MAX_JOB_ID)


def _task_ref(text: str) -> str:
    """A task name, or a task id in ASCII digits that fits SQLite (checked like a job id)."""
    if text.isdigit():
        _whole(text, "a task id", 1, MAX_JOB_ID)
    return text


def _limit(text: str) -> int:
    return _whole(text, "a number of jobs", 1, MAX_LIST_LIMIT)


def _poll(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (text.isascii() and 0.01 <= value <= 60):  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0.01 to 60, got {_shorten(text)}"
        )
    return value


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit 2, like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {safe_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    from engine.service.commands import add_service_commands, listen_arg

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
        type=_poll,
        default=0.05,
        metavar="SECONDS",
        help="how often to look for requests from other processes (default 0.05)",
    )
    s.add_argument(
        "--metrics",
        type=listen_arg,
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
    s = cmd("list", "list jobs, newest first")
    s.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="only jobs in this status (snake case; repeatable)",
    )
    s.add_argument(
        "--limit", type=_limit, default=100, help="at most this many (default 100, up to 1000000)"
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--stuck",
        action="store_true",
        help="only stuck jobs: a task Canceling or Aborting for longer than stuck_seconds",
    )
    s = cmd("show", "show a job: fields, tasks, children, events")
    s.add_argument("job", type=_job_id, metavar="JOB")
    s.add_argument("--json", action="store_true", help="print JSON")
    s = cmd("cancel", "cancel a job gracefully: no new tasks, running tasks wind down")
    s.add_argument("job", type=_job_id, metavar="JOB", nargs="?")
    s.add_argument("--reason", metavar="TEXT", help="your words, added to the reason for cancel")
    s.add_argument(
        "--with-children", action="store_true", help="cancel the job and every job it called"
    )
    _bulk_arguments(s, "cancel")
    s = cmd("abort", "force-stop a job's Canceling tasks (cancels an Executing job first)")
    s.add_argument("job", type=_job_id, metavar="JOB", nargs="?")
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
    s.add_argument("job", type=_job_id, metavar="JOB")
    for name, what in (
        ("hold", "hold a Waiting job (Withhold)"),
        ("release", "release a held job"),
    ):
        cmd(name, what).add_argument("job", type=_job_id, metavar="JOB")
    for name, what in (
        ("approve", "approve an approval task"),
        ("reject", "reject an approval task"),
    ):
        s = cmd(name, what)
        s.add_argument("job", type=_job_id, metavar="JOB")
        s.add_argument("task", type=_task_ref, metavar="TASK", help="task name or id")
    from engine.cli import logs as log_cli
    from engine.cli import prune as prune_cli

    log_cli.add_parser(cmd, _job_id, _task_ref)
    prune_cli.add_parser(cmd)
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
    add_service_commands(p, cmd)
    return p


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


def _db_path(args: argparse.Namespace) -> str:
    from engine.sql.sqlite_file import default_db_path

    return getattr(args, "db", None) or default_db_path()


def _verb(args: argparse.Namespace) -> str:
    return "change settings" if args.command == "settings" else str(args.command)


def _usable(args: argparse.Namespace, *, write: bool, whole: bool | None = None) -> str:
    """The database path, once it is known to be intact and, for a write, writable by
    this user; else a one-line Fail (nothing is written to a damaged or foreign file).

    ``whole``: check every page whatever the size (default: for a write)."""
    from engine.sql.sqlite_file import (
        DatabaseError,
        check_intact,
        read_only_message,
        unreadable_message,
        writable,
    )

    path = _db_path(args)
    if "://" in path:
        return path  # a PostgreSQL server: no file of ours to check
    if not os.path.exists(path) and not _may_create(args):
        # A mistyped --db: say so, and leave no empty database behind.
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise Fail(f"{path}: no such directory")
        raise Fail(f"no such database: {path}")
    unreadable = unreadable_message(path)
    if unreadable:
        raise Fail(unreadable)
    if write and os.path.exists(path) and not writable(path):
        raise Fail(read_only_message(path, _verb(args)))
    try:
        whole = write if whole is None else whole
        check_intact(path, max_bytes=None if whole else READ_CHECK_MAX_BYTES)
    except DatabaseError as exc:
        raise Fail(str(exc)) from None
    return path


def _may_create(args: argparse.Namespace) -> bool:
    """Only commands that write something of their own may create a database: submit,
    serve (and the console), ``settings KEY VALUE``. A read, or a request about a job,
    on a file that is not there finds nothing to act on."""
    return args.command in ("submit", "serve") or (
        args.command == "settings" and args.value is not None
    )


def _store(path: str, *, write: bool) -> Any:
    """The Store for a command at ``path`` (checked by ``_usable``); ``write=False`` for
    one that only reads (then read-only for a user who may not write the database)."""
    from engine.store.db import DatabaseError, open_store

    try:
        return open_store(path, create=True, readonly=False if write else None)
    except DatabaseError as exc:
        raise Fail(str(exc)) from None


def _reader(args: argparse.Namespace, path: str | None = None) -> Any:
    from engine.reader.reader import Reader
    from engine.sql.sqlite_file import DatabaseError

    path = path or _usable(args, write=False)
    try:
        # Inline: nothing else shares this process's loop, so no thread hand-off.
        return Reader(path, inline=True)
    except DatabaseError as exc:
        raise Fail(str(exc)) from None


def _actor() -> str:
    from engine.core.identity import current_actor

    return current_actor()


def _request(args: argparse.Namespace, name: str, **kw: Any) -> int:
    """An operator's request on one job (``engine.flows.requests``: hold, release, an
    approval decided)."""
    from engine.flows import requests as request_flows

    def request(transaction: Any, at: float) -> str:
        flow = getattr(request_flows, name)
        return flow(transaction, args.job, actor=_actor(), at=at, **kw)

    print(safe_line(_write_flow(args, request)))
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from engine.flows import base as flows
    from engine.recipes import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as exc:
        raise Fail(str(exc)) from None
    system = True if args.system else None

    def insert(transaction: Any, at: float) -> int:
        return flows.submit(transaction, recipe, actor=_actor(), system=system, at=at)

    # A new file goes through SQLAlchemy, which creates the schema first.
    print(_write_flow(args, insert))
    return EXIT_OK


def _run(coro_fn: Callable[[Any], Any], args: argparse.Namespace, path: str | None = None) -> Any:
    """``coro_fn(reader)`` with an inline Reader, closed after."""
    reader = _reader(args, path)

    async def go() -> Any:
        try:
            return await coro_fn(reader)
        finally:
            await reader.close()

    return _complete(go())


def _complete(coro: Any) -> Any:
    """The result of a coroutine that never waits, as an inline Reader's never do: no
    event loop needed, which spares a command importing asyncio (~25 ms)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an inline read waited on something")


def cmd_list(args: argparse.Namespace) -> int:
    from engine.core.statuses import LABELS, with_groups

    try:
        args.status = with_groups(args.status, list(LABELS))
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    if args.stuck:
        return _list_stuck(args)
    page = _run(lambda r: r.list_jobs(0, args.limit, statuses=args.status, with_total=False), args)
    if args.json:
        print(json.dumps([j.to_json() for j in page.rows], indent=2))
        return EXIT_OK
    from engine.reader.text import job_table

    print(job_table(page.rows))
    return EXIT_OK


def _list_stuck(args: argparse.Namespace) -> int:
    stuck = _run(lambda r: r.stuck_jobs(), args)
    stuck = [s for s in stuck if not args.status or s.job.status in args.status][: args.limit]
    if args.json:
        print(json.dumps([s.to_json() for s in stuck], indent=2))
        return EXIT_OK
    if not stuck:
        print("no stuck jobs")
        return EXIT_OK
    from engine.reader.text import job_table

    print(job_table([s.job for s in stuck]))
    for s in stuck:
        print(f"{s.job.id}: {s.banner}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    async def both(r: Any) -> Any:
        return await r.job_detail(args.job), await r.stuck_job(args.job)

    detail, stuck = _run(both, args)
    if detail is None:
        from engine.core.statuses import no_such_job

        raise Fail(no_such_job(args.job))
    if args.json:
        print(json.dumps(detail.to_json(), indent=2))
        return EXIT_OK
    from engine.reader.text import job_detail_text

    print(job_detail_text(detail, banner=stuck.banner if stuck else None))
    return EXIT_OK


def _bulk_usage(args: argparse.Namespace) -> None:
    """JOB or --all, filters only with --all, --dry-run or --yes: else bad usage."""
    filters = [f"--{n}" for n in ("status", "name", "user") if getattr(args, n, None) is not None]
    if args.all and args.job is not None:
        raise Fail("give JOB or --all, not both", EXIT_USAGE)
    if not args.all:
        if args.job is None:
            raise Fail("give a JOB, or --all with filters", EXIT_USAGE)
        if filters:
            raise Fail(f"{', '.join(filters)} select jobs for --all only", EXIT_USAGE)
    if args.dry_run and args.yes:
        raise Fail("give --dry-run or --yes, not both", EXIT_USAGE)
    if args.all and getattr(args, "with_children", False):
        raise Fail("--with-children is for one JOB, not --all", EXIT_USAGE)
    from engine.core.statuses import JobStatus, with_groups

    try:
        args.status = with_groups(args.status, [s.value for s in JobStatus])
    except ValueError as exc:
        raise Fail(str(exc).replace("unknown status", "unknown job status"), EXIT_USAGE) from None


def _bulk(args: argparse.Namespace, kind: str) -> int:
    """``cancel --all`` / ``abort --all``: plan, then act only with --yes (on the light
    path when the database allows it: ``engine.flows.bulk``)."""
    import time

    from engine.core.refusal import Refusal
    from engine.flows import base as flows
    from engine.flows import bulk as bulk_flow
    from engine.reader.text import bulk_plan_text

    actor = _actor()
    yes = bool(getattr(args, "yes", False))

    def go(reading: Any, transaction: Any) -> tuple[Any, Any]:
        try:
            with reading() as sql:
                plan = bulk_flow.plan(
                    sql, kind, actor=actor, statuses=args.status, name=args.name, user=args.user
                )
        except Refusal as exc:
            if yes:
                flows.audit_refusal(transaction, str(exc), actor=actor, job_id=None, at=time.time())
            raise
        if not (yes and plan.jobs):
            return plan, None
        reason = getattr(args, "reason", None)
        return plan, bulk_flow.apply(transaction, plan, actor=actor, reason=reason, at=time.time())

    plan, results = _flow(args, go, write=yes)
    verb = {"cancel": "cancel", "abort": "abort", "enhanced_abort": "enhanced-abort"}[kind]
    if not plan.jobs:
        if args.dry_run:
            print("No job matches: nothing to do.")
            return EXIT_OK
        raise Fail("No job matches: nothing done")
    if not yes:
        print(bulk_plan_text(plan))
        if args.dry_run:
            print("Dry run: nothing changed.")
            return EXIT_OK
        n = len(plan.act)
        print(
            f"Nothing changed: add --yes to {verb} {n} job{'s' if n != 1 else ''}.",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    for res in results:
        print(res.text if res.done else f"refused: {res.text}")
    refused = sum(not r.done for r in results)
    if refused:
        print(f"{refused} of {len(results)} jobs refused", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    _bulk_usage(args)
    if args.all:
        return _bulk(args, "cancel")
    if args.dry_run:
        return _cancel_dry_run(args)
    from engine.flows import base as flows

    if not args.with_children:
        why = _quick_cancel_refusal(args)
        if why is not None:
            raise Fail(str(why))
    flow = flows.cancel_tree if args.with_children else flows.cancel

    def cancel(transaction: Any, at: float) -> str:
        return flow(transaction, args.job, actor=_actor(), words=args.reason, at=at)

    print(safe_line(_write_flow(args, cancel)))
    return EXIT_OK


def _cancel_dry_run(args: argparse.Namespace) -> int:
    """``cancel JOB --dry-run``: each job the cancel would reach, refused or not; a read,
    so a user who may only read the database may ask too."""
    from engine.core.refusal import Refusal
    from engine.flows import base as flows

    def plan(reading: Any, _transaction: Any) -> list[tuple[int, Any]]:
        with reading() as sql:
            try:
                jobs = flows.cancel_dry_run(sql, args.job, actor=_actor(), tree=args.with_children)
            except Refusal as exc:  # no such job: said as its refusal
                return [(args.job, exc)]
            return [(job.id, why) for job, why in jobs]

    for job_id, why in _flow(args, plan, write=False):
        print(f"Job {job_id}: " + (f"refused: {safe_line(why)}" if why else "would be canceled"))
    print("Dry run: nothing changed.")
    return EXIT_OK


def _flow(args: argparse.Namespace, go: Callable[[Any, Any], R], *, write: bool) -> R:
    """``go(reading, transaction)``: a flow's read and write transactions (context
    managers giving an ``engine.flows.base.Sql``). On the light path (``engine.sql.pg_light.
    open_light``: the statements' rendered text through ``sqlite3`` or psycopg, no
    SQLAlchemy) when the database allows it, else through SQLAlchemy (no file or schema
    yet, another schema version, an unreachable server). ``write``: the file is checked
    and opened as for a write. A ``Refusal`` is the command's one-line Fail."""
    from engine.core.refusal import Refusal

    path = _usable(args, write=write)
    db = None
    from engine.sql.light import NeedsGateway
    from engine.sql.pg_light import open_light

    with contextlib.suppress(NeedsGateway):
        db = open_light(path, write=write)
    try:
        if db is not None:
            return go(db.reading, db.transaction)
        store = _store(path, write=write)
        try:
            return go(store.reading, store.transaction)
        finally:
            store.dispose()  # waits for a checkpoint under way
    except Refusal as exc:
        raise Fail(str(exc)) from None
    finally:
        if db is not None:
            db.close()


def _write_flow(args: argparse.Namespace, flow: Callable[[Any, float], R]) -> R:
    """``flow(transaction, now)``: one of ``engine.flows.base``' writes, on the light path (the
    statements' rendered text through ``sqlite3``, without importing SQLModel: ~0.6 s of
    a ~1 s command) when the database allows it, else through SQLAlchemy (``_flow``)."""
    import time

    return _flow(args, lambda _reading, transaction: flow(transaction, time.time()), write=True)


def cancel_refusal_of(job_id: int, job: Any) -> Any:
    """Why a cancel of ``job`` (a ``JobView``, None: no such job) is refused when everyone
    is a manager (``engine.flows.base.cancel_refusal``), or None."""
    from engine.core.manager_rule import who_with
    from engine.core.refusal import Refusal
    from engine.core.statuses import no_such_job
    from engine.flows.base import cancel_refusal

    if job is None:
        return Refusal("missing", no_such_job(job_id))
    return cancel_refusal(who_with(None, ""), job)


def _quick_cancel_refusal(args: argparse.Namespace) -> str | None:
    """A cancel that would be refused, told from one light read before the write path is
    loaded: a job already ended is the common case. Only when everyone may cancel (no
    ``managers`` setting): a refusal by that rule is audited, which is a write. Nothing
    is written here, so the file is checked as for a read; ``engine.flows.base.cancel``
    checks again, in its write transaction, whatever this says."""
    path = _usable(args, write=True, whole=False)
    if "://" in path:
        return None

    async def status(reader: Any) -> str | None:
        if (await reader.managers()).strip():
            return None
        return cancel_refusal_of(args.job, await reader.job(args.job))

    return _run(status, args, path)


def cmd_abort(args: argparse.Namespace) -> int:
    from engine.flows import abort as abort_flow
    from engine.reader.text import abort_plan_text

    _bulk_usage(args)
    if args.all:
        return _bulk(args, "enhanced_abort" if args.enhanced else "abort")
    if args.yes and not args.dry_run:
        # abort checks who may, then plans exactly as the preview does.
        def do(transaction: Any, at: float) -> str:
            return abort_flow.abort(
                transaction,
                args.job,
                actor=_actor(),
                enhanced=args.enhanced,
                confirmed=None,
                at=at,
            )

        print(safe_line(_write_flow(args, do)))
        return EXIT_OK

    def preview(reading: Any, _transaction: Any) -> Any:
        with reading() as sql:
            return abort_flow.preview(sql, args.job, enhanced=args.enhanced, actor=_actor())

    # With --yes (and --dry-run) the file is checked as for the write it would be.
    plan = _flow(args, preview, write=args.yes)
    print(abort_plan_text(plan))
    if args.dry_run:
        print("Dry run: nothing changed.")
        return EXIT_OK
    print("Nothing done: add --yes to abort.", file=sys.stderr)
    return EXIT_REFUSED


def cmd_rerun(args: argparse.Namespace) -> int:
    from engine.flows import rerun

    def submit_rerun(transaction: Any, at: float) -> int:
        return rerun.rerun(transaction, args.job, actor=_actor(), at=at)

    print(_write_flow(args, submit_rerun))
    return EXIT_OK


def cmd_approval(args: argparse.Namespace) -> int:
    return _request(args, "decide_approval", task=args.task, approve=args.command == "approve")


def cmd_recipes(args: argparse.Namespace) -> int:
    from engine.recipes import check_path

    results = check_path(args.path)
    if not results:
        raise Fail(f"{args.path}: no recipe files (*.toml) found")
    bad = 0
    for path, error in results:
        if error:
            bad += 1
            print(safe_line(error), file=sys.stderr)
        else:
            print(safe_line(f"{path}: ok"))
    return EXIT_REFUSED if bad else EXIT_OK


def cmd_settings(args: argparse.Namespace) -> int:
    """Every setting, one, or (a manager) a change: ``engine.flows.settings``, on the light
    path when the database allows it."""
    import time

    from engine.core.setting_values import SettingError
    from engine.flows import settings as setting_flows

    write = args.value is not None

    def shown(sql: Any) -> list[str]:
        if args.key is None:
            return [f"{k} = {v}" for k, v in setting_flows.all_settings(sql).items()]
        value = setting_flows.get(sql, args.key)
        return [f"{args.key} = {value}" if write else value]

    def go(reading: Any, transaction: Any) -> list[str]:
        if write:
            setting_flows.put(
                transaction, args.key, args.value, actor=_actor(), at=time.time(), force=args.force
            )
        with reading() as sql:
            lines = shown(sql)
            if write and args.key == "managers":  # who will be managers, said
                lines.append(
                    setting_flows.managers_line(setting_flows.get(sql, "managers"), _actor())
                )
            return lines

    try:
        lines = _flow(args, go, write=write)
    except SettingError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    for line in lines:
        print(safe_line(line.rstrip()))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from engine.runtime.supervisor import Supervisor, freeze_heap
    from engine.runtime.tick import LeaseRefused
    from engine.service.serving import Service
    from engine.store.db import DatabaseError

    try:
        servers = server_args(args.server)
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    path = _usable(args, write=True)
    try:
        service = Service.prepare(args.metrics)
    except OSError as exc:
        raise Fail(f"--metrics {args.metrics[0]}:{args.metrics[1]}: {exc.strerror}") from None

    async def serve() -> None:
        def log(message: str) -> None:
            with contextlib.suppress(OSError):  # stderr's reader gone: serve all the same
                print(f"batchdeck serve: {message}", file=sys.stderr, flush=True)

        engine = Supervisor(
            path, servers, poll_interval=args.poll, server_stderr=sys.stderr, log=log
        )
        started = engine.clock()
        try:
            await engine.start()
        except BaseException:
            await service.close()
            raise
        await service.attach(engine, log, since=started)  # READY to systemd, metrics
        freeze_heap()  # this process serves for good: see freeze_heap
        stop = engine.nothing_to_serve
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        names = ", ".join(f"{n} ({k} slots)" for n, k in servers.items())
        with contextlib.suppress(OSError):  # stdout's reader gone: serve all the same
            print(
                # The store's name for it: a URL without its password.
                f"serving {names} on {engine.store.path}; pid {engine.owner.split(':')[1]}; "
                "Ctrl-C to stop",
                flush=True,
            )
        await stop.wait()
        if not engine.servers:
            log("every server's lease was taken by another engine; stopping")
        with contextlib.suppress(OSError):  # stdout's reader gone: stop all the same
            print("stopping: running tasks go back to Ready", flush=True)
        await service.stopping()
        await engine.stop()
        await service.close()
        if engine.given_up:  # a service manager restarts it: exit non-zero
            raise Fail(engine.given_up)

    try:
        asyncio.run(serve())
    except LeaseRefused as exc:
        raise Fail(str(exc)) from None
    except DatabaseError as exc:
        raise Fail(str(exc)) from None
    return EXIT_OK


def cmd_servers(args: argparse.Namespace) -> int:
    import time

    from engine.reader.servers import server_rows, servers_table

    async def read(reader: Any) -> list[dict[str, Any]]:
        now = time.time()  # the Reader puts the heartbeats on this clock
        return server_rows(await reader.servers(now), await reader.lease_seconds(), now)

    if args.forget is not None:
        from engine.runtime.server_names import forget

        def go(_reading: Any, transaction: Any) -> str:
            return forget(transaction, args.forget, actor=_actor(), at=time.time())

        print(safe_line(_flow(args, go, write=True)))
        return EXIT_OK
    path = _usable(args, write=False)  # a mistyped --db: "no such database", nothing made
    rows = _run(read, args, path)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(servers_table(rows))
    return EXIT_OK


def server_args(specs: list[str] | None) -> dict[str, int]:
    """``--server NAME[:SLOTS]`` values (``engine.runtime.server_names``: the one parser); raises
    ValueError naming the bad one."""
    from engine.runtime.server_names import parse_servers

    return parse_servers(specs)


def _database_failure(args: argparse.Namespace, exc: BaseException) -> str | None:
    """One line for an error of the database itself (damaged, read-only, locked)."""
    from engine.sql.sqlite_file import DatabaseError, describe_sqlite_error

    if isinstance(exc, DatabaseError):
        return str(exc)
    return describe_sqlite_error(_db_path(args), exc, _verb(args))


def _service_command(args: argparse.Namespace) -> int:
    from engine.service.commands import run_service_command

    return run_service_command(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "servers": cmd_servers,
    "submit": cmd_submit,
    "list": cmd_list,
    "show": cmd_show,
    "cancel": cmd_cancel,
    "abort": cmd_abort,
    "rerun": cmd_rerun,
    "hold": lambda a: _request(a, "hold"),
    "release": lambda a: _request(a, "release"),
    "approve": cmd_approval,
    "reject": cmd_approval,
    "recipes": cmd_recipes,
    "settings": cmd_settings,
    "health": _service_command,
    "service": _service_command,
    "completion": _service_command,
    "logs": lambda a: _lazy("logs", "cmd_logs", a),
    "prune": lambda a: _lazy("prune", "cmd_prune", a),
}


def _lazy(module: str, name: str, args: argparse.Namespace) -> int:
    """A command whose code lives in a module of its own (imported when it runs)."""
    import importlib

    return int(getattr(importlib.import_module(f"engine.cli.{module}"), name)(args))


def main(argv: Sequence[str] | None = None, console: ConsoleRunner | None = None) -> int:
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
            return 2
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
        return COMMANDS[command](args)
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
    sys.exit(main())
