"""A SQLite database file as this user sees it: may they read it, write it, is it
damaged, and the one line that says so. The standard library only (no SQLAlchemy), so
the command line's reads can check a file before they read it; ``engine.store.db`` offers
the same names.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import time
from pathlib import Path

from engine.core.dburl import parse_db

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
    from engine.core.identity import os_user

    tail = f": cannot {verb}" if verb else ""
    return f"{path}: read-only for you (user {os_user()}){tail}"


def unreadable_message(path: str | os.PathLike[str]) -> str | None:
    """ "PATH: not readable for you (user bob)" when this user may not read the file."""
    from engine.core.identity import os_user

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


def _ro_pragmas(dbapi_conn: sqlite3.Connection) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


# SQLite's default automatic checkpoint: 1,000 pages of 4 KiB.
WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024


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
    # Checkpoints run after a commit, not inside it (Store._checkpoint_if_due).
    cur.execute("PRAGMA wal_autocheckpoint=0")
    # A WAL started over is cut back to this size, so its size tells when it is due.
    cur.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def wal_due(path: str) -> bool:
    """Whether the WAL has grown past WAL_CHECKPOINT_BYTES (see Store._checkpoint_if_due)."""
    try:
        # Past the limit only once new frames fill it: SQLite truncates the file to the
        # limit when it starts the WAL over (journal_size_limit).
        return os.path.getsize(path + "-wal") > WAL_CHECKPOINT_BYTES
    except OSError:
        return False


def connect(path: str, *, write: bool, read_only: bool | None = None) -> sqlite3.Connection:
    """A sqlite3 connection as every batchdeck connection opens one: autocommit (each
    transaction begun explicitly), usable from any one thread at a time, waiting out a
    busy database up to ``BUSY_TIMEOUT_MS``. ``write``: with the pragmas every writer
    sets (WAL, synchronous=NORMAL, checkpoints after commit, foreign keys). ``read_only``
    opens the file read-only; by default, when this user may not write it. Raises
    ``sqlite3.Error`` as SQLite does."""
    if read_only is None:
        read_only = not write and os.path.exists(path) and not writable(path)
    conn = sqlite3.connect(
        _ro_uri(path) if read_only else path,
        uri=read_only,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        if write:
            _pragmas(conn)
        else:
            _ro_pragmas(conn)
    except BaseException:
        conn.close()
        raise
    return conn
