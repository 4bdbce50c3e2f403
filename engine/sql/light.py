"""A light driver for the statements' checked-in text (``engine.sql.text``): the standard
library's ``sqlite3`` runs it, so a command line reads and runs a flow without importing
SQLAlchemy and SQLModel (~0.6 s before the first row). ``SqliteReads`` is a connection
for the reads (and, when asked, a flow's write transaction); ``LightSql`` is an
``engine.flows.base.Sql`` over a sqlite3 or psycopg connection. A database this path
cannot take as it is raises ``NeedsGateway``: the gateway (``engine.store.db``) opens it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from engine.sql import doorbell
from engine.sql.keys import FLOW
from engine.sql.text import Rendered, SqlText, fetch_rows, rendered


class NeedsGateway(Exception):
    """The light path cannot read this database as it is (no file yet, no schema, another
    schema version, an SQLite error on opening): the gateway (``engine.store.db``) opens it,
    creating the schema or saying in one line what is wrong."""


class RenderedReads:
    """A connection (``conn``) running the rendered statements (``sql``): the light
    path's reads, on SQLite (``SqliteReads``) or PostgreSQL (``engine.sql.pg_light``)."""

    conn: Any
    sql: Rendered

    def rows(self, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        text = self.sql.statements[key]
        cur = self.conn.execute(text.sql, text.bind(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _expect_schema(
        self, where: str, errors: type[Exception] | tuple[type[Exception], ...]
    ) -> None:
        """This version's schema, or NeedsGateway (the connection closed): the gateway
        upgrades another version, or says what is wrong."""
        try:
            found = self.rows("schema_version", {})
        except errors as exc:
            self.conn.close()
            raise NeedsGateway(where) from exc
        if not found or found[0]["value"] != str(self.sql.schema_version):
            self.conn.close()
            raise NeedsGateway(where)

    def close(self) -> None:
        self.conn.close()


class SqliteReads(RenderedReads):
    """One sqlite3 connection running the rendered reads, read-only for a user who may
    not write the database. Not thread-safe: one thread at a time uses it.

    ``write``: a read-write connection with the pragmas every writer sets
    (``engine.sql.sqlite_file._pragmas``), whose ``transaction()`` runs a flow
    (``engine.flows.base``) on the rendered text; the caller has checked the file is
    writable and intact."""

    def __init__(self, path: str, *, write: bool = False) -> None:
        from engine.sql.sqlite_file import _companions_like_main, connect

        self.path = path
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            raise NeedsGateway(path)
        self.sql = rendered("sqlite")
        try:
            self.conn = connect(path, write=write)  # read-only where this user may not write
            if write:
                _companions_like_main(path)  # as Store does when it opens a file to write
        except sqlite3.Error as exc:
            raise NeedsGateway(path) from exc
        self._expect_schema(path, sqlite3.Error)

    @contextmanager
    def reading(self) -> Iterator[LightSql]:
        """A read transaction: the flow's statements see one snapshot of the database."""
        self.conn.execute("BEGIN")
        try:
            yield LightSql(self.conn, self.sql)
        finally:
            self.conn.execute("ROLLBACK")  # it wrote nothing: there is nothing to keep

    @contextmanager
    def transaction(self) -> Iterator[LightSql]:
        """A write transaction (BEGIN IMMEDIATE, as every writer's): committed when the
        block ends, rolled back on any exception; then the WAL is checkpointed if it is
        due, as ``Store`` does after its commits."""
        from engine.sql.sqlite_file import wal_due

        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield LightSql(self.conn, self.sql)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        doorbell.ring(self.path)
        if wal_due(self.path):
            with contextlib.suppress(sqlite3.Error):  # busy: the next writer does it
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class LightSql:
    """An ``engine.flows.base.Sql`` on a sqlite3 connection: the flows' statements as their
    rendered text, rows as named tuples (as ``engine.store.prepared`` gives them)."""

    def __init__(
        self, conn: Any, sql: Rendered, now: Callable[[float], float] | None = None
    ) -> None:
        self._conn = conn  # sqlite3's, or psycopg's (``engine.sql.pg_light``)
        self._sql = sql
        self._now = now

    def _text(self, key: str) -> SqlText:
        return self._sql.statements[FLOW + key]

    def rows(self, key: str, params: Mapping[str, Any]) -> list[Any]:
        text = self._text(key)
        return fetch_rows(self._conn.execute(text.sql, text.bind(params)))

    @property
    def moves_in_one(self) -> bool:
        return self._sql.dialect == "postgresql"

    def run(self, key: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        text = self._text(key)
        if isinstance(params, Mapping):
            return self._conn.execute(text.sql, text.bind(params)).rowcount
        cur = self._conn.cursor()
        cur.executemany(text.sql, [text.bind(p) for p in params])
        return cur.rowcount

    def db_now(self, fallback: float) -> float:
        # SQLite: one host, one clock; PostgreSQL: the database's (``engine.sql.pg_light``).
        return fallback if self._now is None else self._now(fallback)
