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
import shlex
import sqlite3
import threading
import time
from collections.abc import Iterator
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

from engine.dburl import DbTarget, parse_db
from engine.models import SCHEMA_VERSION
from engine.tables import meta

BUSY_TIMEOUT_MS = 10_000


# A new database and its -wal/-shm files: readable and writable by their owner only.
# (A team shares one as 0640 or 0660 with a common group: see README, "Files".)
DB_FILE_MODE = 0o600
SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseError(Exception):
    """The database cannot be used: wrong schema version, not a batchdeck file, damaged,
    or read-only for a write. The message is one line."""


class ReadOnlyError(DatabaseError):
    """A write asked of a database this user may only read."""


def default_db_path() -> str:
    return normalize_db(os.environ.get("BATCHDECK_DB") or "./batchdeck.db")


def normalize_db(text: str) -> str:
    """``--db``/``BATCHDECK_DB`` as the rest of batchdeck takes it: a SQLite file as its
    path (``sqlite:///x.db`` -> ``x.db``), a PostgreSQL URL unchanged."""
    try:
        target = parse_db(text)
    except ValueError as exc:
        raise DatabaseError(str(exc)) from None
    return target.path if target.is_sqlite else target.url  # type: ignore[return-value]


def is_postgresql(db: str) -> bool:
    return "://" in str(db) and not parse_db(str(db)).is_sqlite


def writable(path: str | os.PathLike[str]) -> bool:
    """May this process write the database: the file, and its directory (SQLite creates
    and deletes the -wal and -shm files there)? A file not yet created: its directory."""
    p = Path(path)
    parent = p.parent
    if p.exists() and not os.access(p, os.W_OK):
        return False
    return os.access(parent, os.W_OK | os.X_OK)


def read_only_message(path: str | os.PathLike[str], verb: str | None = None) -> str:
    """ "PATH: read-only for you (user bob): cannot cancel"."""
    from engine.identity import os_user

    tail = f": cannot {verb}" if verb else ""
    return f"{path}: read-only for you (user {os_user()}){tail}"


def unreadable_message(path: str | os.PathLike[str]) -> str | None:
    """ "PATH: not readable for you (user bob)" when this user may not read the file."""
    from engine.identity import os_user

    if os.path.exists(path) and not os.access(path, os.R_OK):
        return f"{path}: not readable for you (user {os_user()})"
    return None


def damaged_message(path: str | os.PathLike[str], detail: str) -> str:
    p = shlex.quote(str(path))
    fixed = shlex.quote(f"{path}.recovered")
    return (
        f"{path}: the database is damaged ({detail}); recover what it holds with "
        f"`sqlite3 {p} .recover | sqlite3 {fixed}` and use {fixed}"
    )


def _looks_like_sqlite(path: str) -> bool:
    """Does the file start with SQLite's header? Only ever asked after SQLite itself said
    "file is not a database": opening and closing the file here drops every POSIX lock
    this process holds on it, the locks SQLite's other connections rely on (an engine's,
    in the console), so it is never done on a file in use."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError:
        return True  # cannot tell: let SQLite's own error speak
    return head in (b"", SQLITE_MAGIC)  # an empty file is a new database


def _sqlite_error(exc: BaseException) -> sqlite3.Error | None:
    """The sqlite3 error behind ``exc`` (SQLAlchemy wraps it as ``.orig``)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.Error):
            return cur
        orig = getattr(cur, "orig", None)
        if isinstance(orig, sqlite3.Error):
            return orig
        cur = cur.__cause__ or cur.__context__
    return None


def describe_sqlite_error(
    path: str | os.PathLike[str], exc: BaseException, verb: str | None = None
) -> str | None:
    """One line for an SQLite failure that says what is wrong with the file (damaged,
    not a database, read-only, locked); None when ``exc`` is no SQLite error."""
    err = _sqlite_error(exc)
    if err is None:
        return None
    text = " ".join(str(err).split())
    if "malformed" in text or "not a database" in text:
        if "not a database" in text and not _looks_like_sqlite(str(path)):
            return f"{path}: not a SQLite database"
        return damaged_message(path, text)
    if "readonly" in text or "read-only" in text:
        return read_only_message(path, verb)
    if "locked" in text or "busy" in text:
        return f"{path}: the database is locked by another process ({text}); try again"
    return f"{path}: {text}"


def _ro_uri(path: str) -> str:
    """A read-only SQLite URI for ``path``.

    ``mode=ro`` reads a WAL database through its -wal and -shm files, which exist while
    any connection (an engine, a console) has it open. With none open they are gone,
    and a reader who may not create files there cannot open it ``mode=ro``: then
    ``immutable=1``, which needs no -shm. It is exact when nothing writes meanwhile (no
    -wal means no writer had it open); a long-lived reader sees that moment's data.
    """
    uri = Path(os.path.abspath(path)).as_uri()
    if os.path.exists(path + "-wal"):
        return uri + "?mode=ro"
    return uri + "?immutable=1"


def _create_private(path: str) -> None:
    """Create the (empty) database file 0600, whatever the umask, before SQLite opens it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        return  # another process created it first: its mode stands
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot create: {exc.strerror or exc}") from None
    os.close(fd)


def _companions_like_main(path: str) -> None:
    """-wal and -shm with the main file's mode (SQLite does so too; this makes sure)."""
    try:
        mode = os.stat(path).st_mode & 0o666
    except OSError:
        return
    for suffix in ("-wal", "-shm"):
        try:
            st = os.stat(path + suffix)
        except OSError:
            continue
        if st.st_mode & 0o777 & ~mode:
            try:
                os.chmod(path + suffix, mode)
            except OSError:
                pass  # not ours to change: SQLite set it from the main file already


def check_intact(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> None:
    """Raise DatabaseError (one line, with how to recover) if SQLite's quick_check finds
    the file damaged. ``max_bytes``: skip the check on a larger file (a read command
    then relies on SQLite's errors: the check reads every page, ~1.6 ms per MiB)."""
    p = str(path)
    try:
        size = os.path.getsize(p)
    except OSError:
        return  # no file yet: nothing to check
    unreadable = unreadable_message(p)
    if unreadable:
        raise DatabaseError(unreadable)
    if size == 0 or (max_bytes is not None and size > max_bytes):
        return
    read_only = not writable(p)
    try:
        conn = sqlite3.connect(_ro_uri(p) if read_only else p, uri=read_only)
    except sqlite3.Error as exc:
        raise DatabaseError(describe_sqlite_error(p, exc) or str(exc)) from None
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.Error as exc:
        raise DatabaseError(describe_sqlite_error(p, exc) or str(exc)) from None
    finally:
        conn.close()
    result = rows[0][0] if rows else "no answer"
    if result != "ok":
        detail = str(result).replace("*** in database main ***", "")
        raise DatabaseError(damaged_message(p, " ".join(detail.split())))


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


def _ro_pragmas(dbapi_conn: sqlite3.Connection) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def _make_sync_engine(path: str, begin: str, *, readonly: bool = False) -> Engine:
    if readonly:
        eng = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(
                _ro_uri(path), uri=True, check_same_thread=False, isolation_level=None
            ),
            poolclass=QueuePool,
        )
    else:
        eng = create_engine(
            f"sqlite:///{path}",
            connect_args={"check_same_thread": False, "isolation_level": None},
        )

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        if readonly:
            _ro_pragmas(dbapi_conn)
        else:
            _pragmas(dbapi_conn)

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
        eng = create_engine(self.target.sqlalchemy_url(), pool_pre_ping=True)
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
        from engine.watch import DataVersionWatch, NotifyHub

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
                self._watch_conn = raw_connection(self.path)
            conn = self._watch_conn
        # Its own lock: reads of the one connection from several threads take turns.
        return DataVersionWatch(conn, self._watch_lock)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        if self.writer is None:
            raise ReadOnlyError(read_only_message(self.path))
        with self.writer.begin() as conn:
            if self.is_postgresql:
                # Writers take turns, as on SQLite (BEGIN IMMEDIATE). Under READ
                # COMMITTED two engines ending the last tasks of one job at once each
                # saw the other's still running and left the job Canceling for good;
                # locking the rows concerned instead deadlocked, since a transaction
                # reaches jobs and tasks in no one order. Held until commit.
                conn.exec_driver_sql(_WRITE_LOCK)
            yield conn
            if self.is_postgresql:
                # Watchers on every host learn of the change at commit (NOTIFY is
                # transactional and deduplicated); a transaction that wrote nothing has
                # no transaction id and wakes nobody.
                conn.exec_driver_sql(_NOTIFY_IF_WRITTEN)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.reader.begin() as conn:
            yield conn

    def dispose(self) -> None:
        """Close it; a shared Store closes when its last user has disposed of it."""
        if self.shared_key is not None:
            with _SHARED_LOCK:
                self._refs -= 1
                if self._refs > 0:
                    return
                if _SHARED.get(self.shared_key) is self:
                    del _SHARED[self.shared_key]
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
            self._check_version(conn)

    def _check_version(self, conn: Connection) -> None:
        found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        version = found if found is not None else "unknown"
        if version != str(SCHEMA_VERSION):
            raise DatabaseError(
                f"{self.path}: database schema version {version}, "
                f"this batchdeck needs version {SCHEMA_VERSION}"
            )


# The process's database gateway: one Store per database and access mode, so that an
# embedded engine, its console and their readers share one write engine, one reader,
# one async reader per event loop and one change watch, and check the schema once.
_SHARED: dict[tuple[str, bool], Store] = {}
_SHARED_LOCK = threading.Lock()
_NOTIFY_IF_WRITTEN = (
    "SELECT pg_notify('batchdeck', '') WHERE pg_current_xact_id_if_assigned() IS NOT NULL"
)
_WRITE_LOCK = "SELECT pg_advisory_xact_lock(1650553956)"  # "bdwr": one writer at a time
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


def raw_connection(path: str) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same pragmas (used to watch data_version);
    read-only when this user may not write the database."""
    if os.path.exists(path) and not writable(path):
        conn = sqlite3.connect(
            _ro_uri(path), uri=True, isolation_level=None, check_same_thread=False
        )
        _ro_pragmas(conn)
        return conn
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    _pragmas(conn)
    return conn


def reader_url(path: str) -> str:
    """The aiosqlite URL the console's reads use: read-only when this user may not write."""
    if os.path.exists(path) and not writable(path):
        return f"sqlite+aiosqlite:///{_ro_uri(path)}&uri=true"
    return f"sqlite+aiosqlite:///{path}"
