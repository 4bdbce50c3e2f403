"""What every command shares: the exit codes, ``Fail`` (a refusal or bad input, printed
as one line), and opening the database a command works on (checked first, then through
the light path or the Store). Standard library only at import: each helper imports the
database modules it needs when it runs, so that ``batchdeck --help`` loads none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

# A read command checks the whole file for damage (PRAGMA quick_check reads every page)
# up to this size; above it, SQLite's own errors say so when a damaged page is read.
# Writes, serve and the console always check the whole file.
READ_CHECK_MAX_BYTES = 8 * 1024 * 1024

R = TypeVar("R")


class Fail(Exception):
    """A refusal or bad input: ``main`` prints it as one line on stderr and exits with
    ``code`` (``EXIT_REFUSED`` unless told)."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def db_path(args: argparse.Namespace) -> str:
    """The database the command names: ``--db``, else $BATCHDECK_DB, else ./batchdeck.db."""
    from engine.sql.sqlite_file import default_db_path

    return getattr(args, "db", None) or default_db_path()


def verb(args: argparse.Namespace) -> str:
    """What the command does, for a refusal's words ("cannot change settings: ...")."""
    return "change settings" if args.command == "settings" else str(args.command)


def usable(args: argparse.Namespace, *, write: bool, whole: bool | None = None) -> str:
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

    path = db_path(args)
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
        raise Fail(read_only_message(path, verb(args)))
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


def open_store(path: str, *, write: bool) -> Any:
    """The Store for a command at ``path`` (checked by ``usable``); ``write=False`` for
    one that only reads (then read-only for a user who may not write the database).
    The caller disposes of it."""
    from engine.store.db import DatabaseError, open_store

    try:
        return open_store(path, create=True, readonly=False if write else None)
    except DatabaseError as exc:
        raise Fail(str(exc)) from None


def actor() -> str:
    """Who runs the command, as the audit and the managers rule name them."""
    from engine.core.identity import current_actor

    return current_actor()


def read(
    coro_fn: Callable[[Any], Coroutine[Any, Any, R]],
    args: argparse.Namespace,
    path: str | None = None,
) -> R:
    """``coro_fn(reader)`` on an inline Reader of the command's database (``path``, once
    checked by ``usable``; else checked here as for a read), closed after."""
    from engine.reader.inline import complete
    from engine.reader.reader import Reader
    from engine.sql.sqlite_file import DatabaseError

    path = path or usable(args, write=False)
    try:
        # Inline: nothing else shares this process's loop, so no thread hand-off.
        reader = Reader(path, inline=True)
    except DatabaseError as exc:
        raise Fail(str(exc)) from None

    async def go() -> R:
        try:
            return await coro_fn(reader)
        finally:
            await reader.close()

    return complete(go())


def flow(args: argparse.Namespace, go: Callable[[Any, Any], R], *, write: bool) -> R:
    """``go(reading, transaction)``: a flow's read and write transactions (context
    managers giving an ``engine.flows.base.Sql``). On the light path (``engine.sql.pg_light.
    open_light``: the statements' rendered text through ``sqlite3`` or psycopg, no
    SQLAlchemy) when the database allows it, else through SQLAlchemy (no file or schema
    yet, another schema version, an unreachable server). ``write``: the file is checked
    and opened as for a write. A ``Refusal`` is the command's one-line Fail."""
    from engine.core.refusal import Refusal
    from engine.sql.light import NeedsGateway
    from engine.sql.pg_light import open_light

    path = usable(args, write=write)
    db = None
    with contextlib.suppress(NeedsGateway):
        db = open_light(path, write=write)
    try:
        if db is not None:
            return go(db.reading, db.transaction)
        store = open_store(path, write=write)
        try:
            return go(store.reading, store.transaction)
        finally:
            store.dispose()  # waits for a checkpoint under way
    except Refusal as exc:
        raise Fail(str(exc)) from None
    finally:
        if db is not None:
            db.close()


def write_flow(args: argparse.Namespace, go: Callable[[Any, float], R]) -> R:
    """``go(transaction, now)``: one of ``engine.flows``' writes, in one transaction
    (``flow``: on the light path when the database allows it)."""
    import time

    return flow(args, lambda _reading, transaction: go(transaction, time.time()), write=True)
