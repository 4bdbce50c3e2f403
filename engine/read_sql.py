"""The read and flow statements as SQL text, and a light driver that runs them on SQLite.

``engine.read_statements`` builds every read from the tables (SQLAlchemy), and
``engine.flow_statements`` every statement of the operators' write flows
(``engine.flows``); importing SQLAlchemy and SQLModel costs a command line ~0.6 s before
it reads a row. So the statements are rendered once per dialect into SQL text with named
parameters and kept in a cache file, and the standard library's ``sqlite3`` runs that
text (``SqliteReads``; ``LightSql`` for a flow). Nothing here is a second copy of a
statement: the text is always what the statements compile to.

The cache file is named for a fingerprint of every source file that shapes the SQL
(the statements, the tables and models, hence the schema version, the dialect
constructs, the views' fields) and of the installed SQLAlchemy, so an edited statement
can never run stale: a changed file gives another name, rendered afresh. It lives in
``$XDG_CACHE_HOME/batchdeck`` (or ``~/.cache/batchdeck``), is written atomically, and is
skipped silently where it cannot be written (the text is then rendered per process).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engine import doorbell
from engine.patterns import glob_to_regex

# The list's sort columns and the shapes of its text filter (see Reader.list_jobs).
SORTS = ("id", "name", "status", "started", "submitted_by")
TEXT_KINDS = ("none", "digits", "words")

_ENGINE_DIR = Path(__file__).resolve().parent
# Every file whose content changes the SQL text of a read.
SOURCES = (
    "read_statements.py",
    "read_sql.py",
    "query.py",
    "tables.py",
    "models.py",
    "dialect.py",
    "statuses.py",
    "prepared.py",
    "flow_statements.py",
    "writes.py",
    "bulk_flow.py",
    "log_statements.py",
    "patterns.py",
)
FORMAT = 5  # of the cache file (4: the digest of its statements; 5: as_regex)
# The keys of the flows' statements (``engine.flow_statements``) among the reads'.
FLOW = "flow:"


def variant_key(name: str, **variant: Any) -> str:
    """A statement's name with the options that select its variant:
    ``list_jobs|descending=1|sort=name|statuses=0|text=none``."""
    parts = [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(variant.items())]
    return "|".join([name, *parts])


@dataclass(frozen=True)
class SqlText:
    """One statement rendered for a dialect."""

    sql: str
    defaults: dict[str, Any]  # its constant parameters (a fixed list of statuses, ...)
    needed: tuple[str, ...]  # the parameters given at execution
    as_json: tuple[str, ...]  # of those, the lists bound as JSON text (``IdList``)
    as_float: tuple[str, ...] = ()  # of those, the ones of a Float column (1 -> 1.0)
    as_bool: tuple[str, ...] = ()  # of those, the ones of a Boolean column (True -> 1)
    as_regex: tuple[str, ...] = ()  # of those, shell patterns matched as a regex (PostgreSQL)

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        missing = [n for n in self.needed if n not in params]
        if missing:
            raise TypeError(f"missing parameters {missing} for {self.sql[:60]!r}")
        out = dict(self.defaults)
        for name in self.needed:
            value = params[name]
            if name in self.as_json:
                value = json.dumps(list(value))
            elif value is None:
                pass
            elif name in self.as_float:
                value = float(value)
            elif name in self.as_bool:
                value = int(bool(value))
            elif name in self.as_regex:
                value = glob_to_regex(value)
            out[name] = value
        return out


@dataclass(frozen=True)
class Rendered:
    dialect: str
    schema_version: int
    statements: dict[str, SqlText]

    def to_json(self) -> dict[str, Any]:
        statements = {
            k: {
                "sql": s.sql,
                "defaults": s.defaults,
                "needed": s.needed,
                "as_json": s.as_json,
                "as_float": s.as_float,
                "as_bool": s.as_bool,
                "as_regex": s.as_regex,
            }
            for k, s in self.statements.items()
        }
        return {
            "format": FORMAT,
            "dialect": self.dialect,
            "schema_version": self.schema_version,
            "statements": statements,
            "digest": _digest(statements),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rendered:
        """Raises ValueError for a file that is not exactly what ``to_json`` wrote (valid
        JSON of another shape, or statements that do not match their digest): such a
        cache is rebuilt, never trusted."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("another format")
        statements = d.get("statements")
        if not isinstance(statements, dict) or not statements:
            raise ValueError("no statements")
        if d.get("digest") != _digest(statements):
            raise ValueError("statements do not match their digest")
        return cls(
            d["dialect"],
            int(d["schema_version"]),
            {
                k: SqlText(
                    s["sql"],
                    s["defaults"],
                    tuple(s["needed"]),
                    tuple(s["as_json"]),
                    tuple(s["as_float"]),
                    tuple(s["as_bool"]),
                    tuple(s["as_regex"]),
                )
                for k, s in d["statements"].items()
            },
        )


def _digest(statements: Any) -> str:
    text = json.dumps(statements, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(dialect: str) -> str:
    h = hashlib.sha256(f"{FORMAT}:{dialect}:{sys.version_info[:2]}".encode())
    for name in SOURCES:
        h.update(name.encode())
        h.update((_ENGINE_DIR / name).read_bytes())
    h.update(_sqlalchemy_stamp().encode())
    return h.hexdigest()[:24]


def _sqlalchemy_stamp() -> str:
    """Which SQLAlchemy is installed (its compiler renders the text), without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("sqlalchemy")
    origin = spec.origin if spec is not None else None
    if origin is None:
        return "none"
    try:
        text = Path(origin).read_text(encoding="utf-8")
    except OSError:
        return origin
    version = next((ln for ln in text.splitlines() if ln.startswith("__version__")), "")
    return f"{origin}:{version}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "batchdeck"


def cache_file(dialect: str) -> Path:
    return cache_dir() / f"reads-{dialect}-{fingerprint(dialect)}.json"


def render(dialect: str = "sqlite") -> Rendered:
    """Compile every read and flow statement for ``dialect`` (imports SQLAlchemy and the
    tables)."""
    from sqlalchemy.dialects import postgresql, sqlite

    from engine import flow_statements, read_statements
    from engine.dialect import GlobPattern
    from engine.models import SCHEMA_VERSION
    from engine.prepared import CompiledText

    if dialect == "sqlite":
        d = sqlite.dialect(paramstyle="named")
    elif dialect == "postgresql":
        d = postgresql.psycopg.dialect()  # pyformat, as psycopg takes it
    else:
        raise ValueError(f"no rendered text for {dialect}")
    pg = dialect == "postgresql"
    out: dict[str, SqlText] = {}
    every = {
        **read_statements.statements(),
        **{FLOW + k: s for k, s in flow_statements.statements().items()},
    }
    for key, stmt in every.items():
        c = CompiledText(stmt, d)
        regex: tuple[str, ...] = ()
        if pg and c.processors:  # a shell pattern is matched as a regex there
            binds = stmt.compile(dialect=d).binds
            regex = tuple(n for n in c.processors if isinstance(binds[n].type, GlobPattern))
        for name in c.processors:
            if name not in (*c.lists, *c.floats, *c.bools, *regex):
                raise TypeError(f"{key}: parameter {name} needs a bind processor")
        # PostgreSQL takes a list as an array and a bool as a boolean, as they are.
        lists, bools = ((), ()) if pg else (c.lists, c.bools)
        out[key] = SqlText(c.sql, c.defaults, c.needed, lists, c.floats, bools, regex)
    return Rendered(dialect, SCHEMA_VERSION, out)


_LOADED: dict[str, Rendered] = {}
_LOAD_LOCK = threading.Lock()


def rendered(dialect: str = "sqlite") -> Rendered:
    """The rendered reads for ``dialect``: from this process, the cache file, or rendered
    now (and then written to the cache file when it can be)."""
    with _LOAD_LOCK:
        got = _LOADED.get(dialect)
        if got is None:
            got = _LOADED[dialect] = _load_or_render(dialect)
        return got


def _load_or_render(dialect: str) -> Rendered:
    path = cache_file(dialect)
    try:
        return Rendered.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none yet, unreadable, or not what we wrote: render it
    fresh = render(dialect)
    _write(path, json.dumps(fresh.to_json(), separators=(",", ":")))
    _prune(path)
    return fresh


# Text rendered by other versions of the sources goes once it is this old: another
# installed batchdeck may still use its own, and renders it again if it is gone.
STALE_S = 7 * 86400


def _prune(keep: Path) -> None:
    import time

    dialect = keep.name.split("-")[1]
    try:
        for other in keep.parent.glob(f"reads-{dialect}-*.json"):
            if other != keep and other.stat().st_mtime < time.time() - STALE_S:
                other.unlink()
    except OSError:
        return


def _write(path: Path, text: str) -> None:
    """Atomically, or not at all: a read never fails for want of a cache."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".reads-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return


class NeedsGateway(Exception):
    """The light path cannot read this database as it is (no file yet, no schema, another
    schema version, an SQLite error on opening): the gateway (``engine.db``) opens it,
    creating the schema or saying in one line what is wrong."""


class RenderedReads:
    """A connection (``conn``) running the rendered statements (``sql``): the light
    path's reads, on SQLite (``SqliteReads``) or PostgreSQL (``engine.pg_light``)."""

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
    (``engine.sqlite_file._pragmas``), whose ``transaction()`` runs a flow
    (``engine.flows``) on the rendered text; the caller has checked the file is
    writable and intact."""

    def __init__(self, path: str, *, write: bool = False) -> None:
        from engine.sqlite_file import (
            BUSY_TIMEOUT_MS,
            _companions_like_main,
            _pragmas,
            _ro_uri,
            writable,
        )

        self.path = path
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            raise NeedsGateway(path)
        read_only = not write and not writable(path)
        self.sql = rendered("sqlite")
        try:
            self.conn = sqlite3.connect(
                _ro_uri(path) if read_only else path,
                uri=read_only,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise NeedsGateway(path) from exc
        try:
            if write:
                _pragmas(self.conn)
                _companions_like_main(path)  # as Store does when it opens a file to write
            else:
                self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            self.conn.close()
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
        from engine.sqlite_file import wal_due

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
    """An ``engine.flows.Sql`` on a sqlite3 connection: the flows' statements as their
    rendered text, rows as named tuples (as ``engine.prepared`` gives them)."""

    def __init__(
        self, conn: Any, sql: Rendered, now: Callable[[float], float] | None = None
    ) -> None:
        self._conn = conn  # sqlite3's, or psycopg's (``engine.pg_light``)
        self._sql = sql
        self._now = now

    def _text(self, key: str) -> SqlText:
        return self._sql.statements[FLOW + key]

    def rows(self, key: str, params: Mapping[str, Any]) -> list[Any]:
        text = self._text(key)
        cur = self._conn.execute(text.sql, text.bind(params))
        row = _row_type(tuple(d[0] for d in cur.description))
        return [row._make(r) for r in cur.fetchall()]

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
        # SQLite: one host, one clock; PostgreSQL: the database's (``engine.pg_light``).
        return fallback if self._now is None else self._now(fallback)


@cache
def _row_type(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names, rename=True)  # type: ignore[misc]
