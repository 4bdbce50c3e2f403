"""The command line's light path on PostgreSQL: the statements' rendered text
(``engine.sql.light``, rendered for PostgreSQL) run through psycopg, with no SQLAlchemy
imported: ``list``, ``show``, a cancel answer in the time of a connection and a few
statements instead of the ~0.5 s SQLAlchemy and SQLModel take to import.

A write transaction here is one as ``engine.store.db.Store.write`` makes it: writers take
turns on one advisory lock, and a transaction that wrote notifies the engines at
commit. A database this path cannot take as it is (unreachable, no schema yet, another
schema version) raises ``NeedsGateway``: the gateway opens it, creating the schema or
saying in one line what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.sql.light import LightSql, NeedsGateway, RenderedReads, rendered

# Shared with ``engine.store.db.Store.write``: one writer at a time, as SQLite's BEGIN IMMEDIATE.
WRITE_LOCK = "SELECT pg_advisory_xact_lock(1650553956)"  # "bdwr"
# Watchers on every host learn of a change at commit; a transaction that wrote nothing
# has no transaction id and wakes nobody.
NOTIFY_IF_WRITTEN = (
    "SELECT pg_notify('batchdeck', %(tag)s) WHERE pg_current_xact_id_if_assigned() IS NOT NULL"
)
NOW = "SELECT extract(epoch from clock_timestamp())::float8"


class PostgresReads(RenderedReads):
    """One psycopg connection running the rendered statements. Not thread-safe: one
    thread at a time uses it."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.sql = rendered("postgresql")
        try:
            self.conn: Any = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise NeedsGateway(url) from exc
        self._expect_schema(url, psycopg.Error)

    def db_now(self, _fallback: float = 0.0) -> float:
        """The database's clock, which leases are written and compared in."""
        return float(self.conn.execute(NOW).fetchone()[0])

    @contextmanager
    def reading(self) -> Iterator[LightSql]:
        """A read transaction: the flow's statements see one snapshot of the database."""
        with self.conn.transaction(force_rollback=True):
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield LightSql(self.conn, self.sql, self.db_now)

    @contextmanager
    def transaction(self) -> Iterator[LightSql]:
        """A write transaction: committed when the block ends, rolled back on any
        exception."""
        with self.conn.transaction():
            self.conn.execute(WRITE_LOCK)
            yield LightSql(self.conn, self.sql, self.db_now)
            self.conn.execute(NOTIFY_IF_WRITTEN, {"tag": ""})


def open_light(path: str, *, write: bool = False) -> Any:
    """The light path for the database ``path`` names: ``SqliteReads`` on a file,
    ``PostgresReads`` on PostgreSQL. Raises ``NeedsGateway`` where it cannot take it."""
    from engine.core.dburl import parse_db
    from engine.sql.light import SqliteReads
    from engine.sql.sqlite_file import is_postgresql

    if is_postgresql(path):
        return PostgresReads(parse_db(path).url)
    return SqliteReads(path, write=write)
