"""Opening the database: pragmas on every connection, schema creation and version check.

Writes go through a synchronous SQLAlchemy engine whose transactions start with
``BEGIN IMMEDIATE``: the engine, a console and the command line may all write, and
taking the write lock up front means a transaction never fails half way on a lock
upgrade. The console's reads use the async (aiosqlite) engine so they never block the
event loop it shares with the job engine.

Files: a new database is created 0600 (its -wal and -shm files take the same mode from
SQLite), since it holds shell output and the audit trail. A user who may read the file
but not write it (or its directory) gets a read-only Store: no WAL switch, no schema
creation, nothing written, so ``list``, ``show`` and the console work for them.

Damage: ``check_intact`` runs ``PRAGMA quick_check`` (about 0.14 s on a 100,000-job
database); ``describe_sqlite_error`` turns SQLite's own words for a damaged, locked or
read-only file into the one line the command line and the console show.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    QueuePool,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from engine.core.dburl import DbTarget, parse_db
from engine.sql import doorbell
from engine.sql.pg_light import NOTIFY_IF_WRITTEN, WRITE_LOCK
from engine.sql.protocol import Sql
from engine.sql.sqlite_file import (
    BUSY_TIMEOUT_MS,
    DB_FILE_MODE,
    DatabaseError,
    ReadOnlyError,
    _companions_like_main,
    _ro_uri,
    connect,
    default_db_path,
    describe_sqlite_error,
    is_postgresql,
    normalize_db,
    read_only_message,
    unreadable_message,
    wal_due,
    writable,
)
from engine.store.models import SCHEMA_VERSION
from engine.store.tables import meta
from engine.store.upgrade import UPGRADES, upgrade


def _create_private(path: str) -> None:
    """Create the (empty) database file 0600, whatever the umask, before SQLite opens it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        return  # another process created it first: its mode stands
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot create: {exc.strerror or exc}") from None
    os.close(fd)


def _make_sync_engine(path: str, begin: str, *, readonly: bool = False) -> Engine:
    # A creator keeps the pragmas in ``connect``; "sqlite://" with a creator would
    # otherwise get the pool of an in-memory database.
    eng = create_engine(
        "sqlite://",
        creator=lambda: connect(path, write=not readonly, read_only=readonly),
        poolclass=QueuePool,
    )

    @event.listens_for(eng, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql(begin)

    return eng


class Store:
    """One database file: a write engine (BEGIN IMMEDIATE) and a read engine.

    ``readonly``: open the file read-only (``mode=ro``): no WAL switch, no schema
    creation; ``write()`` raises ReadOnlyError. None: read-only exactly when this user
    may not write the file or its directory (``writable``).
    """

    shared_key: tuple[str, bool] | None = None  # set for the process's shared Store

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool | None = False
    ) -> None:
        self._refs = 1
        self._lock = threading.Lock()
        self._async: dict[asyncio.AbstractEventLoop, tuple[Any, int]] = {}
        self._watch_conn: sqlite3.Connection | None = None
        self._hub: Any = None  # PostgreSQL: the process's LISTEN connection (engine.watch)
        self._watch_lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._bells: list[Callable[[], None]] = []
        try:
            self.target: DbTarget = parse_db(str(path))
        except ValueError as exc:
            raise DatabaseError(str(exc)) from None
        if not self.target.is_sqlite:
            self._open_postgresql(create)
            return
        self.path = str(Path(str(self.target.path)))
        exists = Path(self.path).exists()
        if readonly is None:
            readonly = exists and not writable(self.path)
        self.readonly = readonly
        if (readonly or not create) and not exists:
            raise DatabaseError(f"{self.path}: no such database")
        unreadable = unreadable_message(self.path)
        if unreadable:
            raise DatabaseError(unreadable)
        if not Path(self.path).parent.is_dir():
            raise DatabaseError(f"{self.path}: no such directory")
        if not exists:
            _create_private(self.path)
        self.writer = None if readonly else _make_sync_engine(self.path, "BEGIN IMMEDIATE")
        self.reader = _make_sync_engine(self.path, "BEGIN", readonly=readonly)
        try:
            if readonly:
                self._check_schema()
            else:
                self._ensure_schema()
                _companions_like_main(self.path)
        except SQLAlchemyError as exc:
            self.dispose()
            raise DatabaseError(
                describe_sqlite_error(self.path, exc)
                or f"{self.path}: cannot use it as a batchdeck database: "
                f"{getattr(exc, 'orig', None) or exc}"
            ) from None
        except DatabaseError:
            self.dispose()
            raise

    @property
    def is_postgresql(self) -> bool:
        return not self.target.is_sqlite

    def _open_postgresql(self, create: bool) -> None:
        self.path = self.target.display()
        self.readonly = False
        # One engine serves writes and reads: PostgreSQL has no database-wide write lock
        # to take up front; row locks (claims: FOR UPDATE SKIP LOCKED) do that work.
        # Every statement prepared at its first run on a connection (psycopg prepares at
        # its fifth by default): a process that cancels a few jobs parsed and planned each
        # of a cancel's statements again for its first five cancels, 1-3 ms more each.
        eng = create_engine(
            self.target.sqlalchemy_url(),
            pool_pre_ping=True,
            connect_args={"prepare_threshold": 0},
        )
        self.writer = eng
        self.reader = eng
        try:
            with eng.begin() as conn:
                # Two hosts starting on a new database at once: one creates the schema.
                conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
                tables = set(inspect(conn).get_table_names())
                if "meta" not in tables:
                    if tables or not create:
                        raise DatabaseError(f"{self.path}: not a batchdeck database")
                    SQLModel.metadata.create_all(conn)
                    conn.execute(
                        insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                else:
                    self._check_version(conn)
        except SQLAlchemyError as exc:
            eng.dispose()
            detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
            raise DatabaseError(f"{self.path}: cannot use it: {detail}") from None
        except DatabaseError:
            eng.dispose()
            raise

    def async_engine(self) -> Any:
        """The process's async reader for this database, on the running event loop (an
        async engine's connections belong to the loop that opened them). Release it
        with ``release_async``."""
        from sqlalchemy.ext.asyncio import create_async_engine

        loop = asyncio.get_running_loop()
        with self._lock:
            eng, users = self._async.get(loop, (None, 0))
            if eng is None:
                if self.is_postgresql:
                    eng = create_async_engine(self.target.sqlalchemy_url(async_=True))
                else:
                    eng = create_async_engine(reader_url(self.path))
                    event.listen(eng.sync_engine, "connect", _reader_pragmas)
            self._async[loop] = (eng, users + 1)
            return eng

    async def release_async(self, eng: Any) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            held, users = self._async.get(loop, (None, 0))
            if held is not eng:
                last = True  # not ours to count: dispose what we were given
            else:
                last = users <= 1
                if last:
                    del self._async[loop]
                else:
                    self._async[loop] = (eng, users - 1)
        if last:
            await eng.dispose()

    def watcher(self) -> Any:
        """A change watch of its own (``changed()``, ``wait()``) over the process's one
        watch connection for this database."""
        from engine.store.watch import DataVersionWatch, NotifyHub

        if self.is_postgresql:
            with self._lock:
                if self._hub is None:
                    try:
                        self._hub = NotifyHub(self.target.url)
                    except Exception as exc:  # noqa: BLE001 - psycopg's own error, one line
                        detail = " ".join(str(exc).split())
                        raise DatabaseError(f"{self.path}: cannot listen: {detail}") from None
                return self._hub.watch()
        with self._lock:
            if self._watch_conn is None:
                self._watch_conn = connect(self.path, write=False)
            conn = self._watch_conn
        # Its own lock: reads of the one connection from several threads take turns.
        return DataVersionWatch(conn, self._watch_lock)

    def on_commit(self, bell: Callable[[], None]) -> Callable[[], None]:
        """Call ``bell`` after each write transaction of this Store commits, in the
        thread that committed; returns what stops it. A console and an engine in one
        process share a Store (``shared_store``): the engine hears the console's cancel
        at its commit instead of at its next look at ``data_version``."""
        with self._lock:
            self._bells = [*self._bells, bell]

        def stop() -> None:
            with self._lock:
                self._bells = [b for b in self._bells if b is not bell]

        return stop

    @contextmanager
    def write(
        self, *, after_commit: Callable[[Connection], None] | None = None, tag: str = ""
    ) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception.
        ``after_commit`` runs once it has committed, on the same connection, before
        the connection goes back to the pool (no other thread can have it meanwhile).
        ``tag``: on PostgreSQL, the payload of the commit's notification (a watch may
        ignore its own, ``NotifyWatch.ignore``)."""
        if self.writer is None:
            raise ReadOnlyError(read_only_message(self.path))
        with self.writer.connect() as conn:
            with conn.begin():
                if self.is_postgresql:
                    # Writers take turns, as on SQLite (BEGIN IMMEDIATE). Under READ
                    # COMMITTED two engines ending the last tasks of one job at once
                    # each saw the other's still running and left the job Canceling for
                    # good; locking the rows concerned instead deadlocked, since a
                    # transaction reaches jobs and tasks in no one order. Held until
                    # commit.
                    conn.exec_driver_sql(WRITE_LOCK)
                yield conn
                if self.is_postgresql:
                    # Watchers on every host learn of the change at commit (NOTIFY is
                    # transactional and deduplicated); a transaction that wrote nothing
                    # has no transaction id and wakes nobody. The NOTIFY and the COMMIT
                    # go in one round trip (psycopg's pipeline mode); the commit of
                    # conn.begin() then finds nothing left to commit.
                    raw: Any = conn.connection.driver_connection
                    with raw.pipeline():
                        raw.execute(NOTIFY_IF_WRITTEN, {"tag": tag})
                        raw.commit()
            if after_commit is not None:
                after_commit(conn)
        for bell in self._bells:
            bell()
        if not self.is_postgresql:
            if not tag:  # an engine's own tick is no news worth a ring
                doorbell.ring(self.path)
            self._checkpoint_if_due()

    def _checkpoint_if_due(self) -> None:
        """Copy the WAL back into the database once it has grown past WAL_CHECKPOINT_BYTES.

        SQLite's own automatic checkpoint runs inside the COMMIT that crosses its
        threshold, so a 10,000-task cancel held the write lock ~13 ms longer for it;
        here it runs after the commit, in a thread of its own, so neither the lock nor
        the caller waits for it (PASSIVE never waits for other connections either).
        ``dispose`` waits for a checkpoint under way, so a command line finishes it."""
        if not wal_due(self.path):
            return
        with self._lock:
            if self._checkpointer is not None and self._checkpointer.is_alive():
                return
            self._checkpointer = threading.Thread(
                target=self._checkpoint, name="batchdeck-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint(self) -> None:
        assert self.writer is not None
        try:
            with self.writer.connect() as conn:
                # On the driver: through SQLAlchemy it would first BEGIN IMMEDIATE.
                raw = conn.connection.driver_connection
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]
        except (SQLAlchemyError, sqlite3.Error):
            pass  # busy or closing: the next commit past the threshold tries again

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.reader.begin() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Sql]:
        """A write transaction for a flow (``engine.flows``): its statements by key,
        committed when the block ends, rolled back on any exception."""
        from engine.store.flow_statements import flow_sql

        with self.write() as conn:
            yield flow_sql(conn)

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        """A read transaction for a flow that only reads."""
        from engine.store.flow_statements import flow_sql

        with self.read() as conn:
            yield flow_sql(conn)

    def dispose(self) -> None:
        """Close it; a shared Store closes when its last user has disposed of it."""
        if self.shared_key is not None:
            with _SHARED_LOCK:
                self._refs -= 1
                if self._refs > 0:
                    return
                if _SHARED.get(self.shared_key) is self:
                    del _SHARED[self.shared_key]
        if self._checkpointer is not None:
            self._checkpointer.join()
        if self.writer is not None:
            self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
        with self._lock:
            if self._watch_conn is not None:
                self._watch_conn.close()
                self._watch_conn = None
            if self._hub is not None:
                self._hub.close()
                self._hub = None

    def _ensure_schema(self) -> None:
        with self.write() as conn:
            tables = set(inspect(conn).get_table_names())
            if "meta" not in tables:
                if tables - {"sqlite_sequence"}:
                    raise DatabaseError(f"{self.path}: not a batchdeck database")
                SQLModel.metadata.create_all(conn)
                conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            self._check_version(conn)

    def _check_schema(self) -> None:
        """Read-only: the schema must already be there, at this version."""
        with self.read() as conn:
            tables = set(inspect(conn).get_table_names())
            if "meta" not in tables:
                raise DatabaseError(f"{self.path}: not a batchdeck database")
            self._check_version(conn, writable=False)

    def _check_version(self, conn: Connection, *, writable: bool = True) -> None:
        found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        version = found if found is not None else "unknown"
        if version == str(SCHEMA_VERSION):
            return
        if writable and upgrade(conn, version, SCHEMA_VERSION):
            return
        why = (
            f"{self.path}: database schema version {version}, "
            f"this batchdeck needs version {SCHEMA_VERSION}"
        )
        if not writable and version in UPGRADES:
            why += (
                "; a command that writes (or `batchdeck serve`) run by a user who may "
                "write upgrades it"
            )
        raise DatabaseError(why)


# The process's database gateway: one Store per database and access mode, so that an
# embedded engine, its console and their readers share one write engine, one reader,
# one async reader per event loop and one change watch, and check the schema once.
_SHARED: dict[tuple[str, bool], Store] = {}
_SHARED_LOCK = threading.Lock()
SCHEMA_LOCK_KEY = 0x62617463  # "batc": the advisory lock held while creating the schema


def shared_store(path: str | os.PathLike[str], *, readonly: bool | None = False) -> Store:
    """The process's one Store for this database (opened, and its schema created or
    checked, on first use). Each caller gives it back with ``dispose()``.

    ``readonly`` None: read-only exactly when this user may not write it (``Store``)."""
    db = normalize_db(str(path))
    pg = is_postgresql(db)
    if readonly is None:
        readonly = False if pg else (os.path.exists(db) and not writable(db))
    key = (db if pg else os.path.realpath(db), bool(readonly))
    with _SHARED_LOCK:
        store = _SHARED.get(key)
        if store is not None:
            store._refs += 1
            return store
    store = Store(db, readonly=readonly)
    with _SHARED_LOCK:
        other = _SHARED.get(key)
        if other is not None:  # another thread opened it meanwhile: use that one
            other._refs += 1
        else:
            store.shared_key = key
            _SHARED[key] = store
    if other is not None:
        store.dispose()
        return other
    return store


def _reader_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def open_store(
    path: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
    readonly: bool | None = False,
) -> Store:
    return Store(path or default_db_path(), create=create, readonly=readonly)


def reader_url(path: str) -> str:
    """The aiosqlite URL the console's reads use: read-only when this user may not write."""
    if os.path.exists(path) and not writable(path):
        return f"sqlite+aiosqlite:///{_ro_uri(path)}&uri=true"
    return f"sqlite+aiosqlite:///{path}"
