"""Opening the database: pragmas on every connection, schema creation and version check.

Writes go through a synchronous SQLAlchemy engine whose transactions start with
``BEGIN IMMEDIATE``: the engine, a console and the command line may all write, and
taking the write lock up front means a transaction never fails half way on a lock
upgrade. The console's reads use the async (aiosqlite) engine so they never block the
event loop it shares with the job engine.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from engine.models import SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000


class DatabaseError(Exception):
    """The database cannot be used: wrong schema version, not a batchdeck file."""


def default_db_path() -> str:
    return os.environ.get("BATCHDECK_DB") or "./batchdeck.db"


def _pragmas(dbapi_conn: sqlite3.Connection) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Switching a new file to WAL needs a lock the busy handler does not wait for:
    # another process creating the same database at this moment makes it fail at once.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _make_sync_engine(path: str, begin: str) -> Engine:
    eng = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "isolation_level": None},
    )

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        _pragmas(dbapi_conn)

    @event.listens_for(eng, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql(begin)

    return eng


class Store:
    """One database file: a write engine (BEGIN IMMEDIATE) and a read engine."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = str(Path(path))
        if not create and not Path(self.path).exists():
            raise DatabaseError(f"{self.path}: no such database")
        if not Path(self.path).parent.is_dir():
            raise DatabaseError(f"{self.path}: no such directory")
        self.writer = _make_sync_engine(self.path, "BEGIN IMMEDIATE")
        self.reader = _make_sync_engine(self.path, "BEGIN")
        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:
            self.dispose()
            raise DatabaseError(
                f"{self.path}: cannot use it as a batchdeck database: "
                f"{getattr(exc, 'orig', None) or exc}"
            ) from None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self.writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.reader.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()

    def _ensure_schema(self) -> None:
        with self.write() as conn:
            tables = set(inspect(conn).get_table_names())
            if "meta" not in tables:
                if tables - {"sqlite_sequence"}:
                    raise DatabaseError(f"{self.path}: not a batchdeck database")
                SQLModel.metadata.create_all(conn)
                conn.exec_driver_sql(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                return
            row = conn.exec_driver_sql(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()
            version = row[0] if row else "unknown"
            if version != str(SCHEMA_VERSION):
                raise DatabaseError(
                    f"{self.path}: database schema version {version}, "
                    f"this batchdeck needs version {SCHEMA_VERSION}"
                )


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    return Store(path or default_db_path(), create=create)


def raw_connection(path: str) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same pragmas (used to watch data_version)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    _pragmas(conn)
    return conn
