"""Everything that differs between the databases batchdeck runs on, in one place.

Statements elsewhere are built once from the tables and stay dialect-neutral; the few
constructs SQLite and PostgreSQL spell differently are compiled here per dialect:

- a list of ids (or names) as ONE bound parameter: SQLite reads a JSON array with
  ``json_each``; PostgreSQL takes an array and ``= ANY``. One parameter, not one per
  id, keeps a statement's text (and its compiled form) the same for 1 or 10,000 ids;
- the upsert of a row by its key (``INSERT … ON CONFLICT … DO UPDATE``), whose
  SQLAlchemy construct is dialect-specific;
- how a write transaction starts (SQLite: ``BEGIN IMMEDIATE``, taking the write lock
  up front so a transaction never fails half way on a lock upgrade);
- the planner's statistics of the task table, which only PostgreSQL keeps
  (``TaskStatistics``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Integer,
    String,
    Table,
    bindparam,
    false,
    literal_column,
    or_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from engine.core.patterns import glob_to_regex

# SQLite only takes its write lock at the first write unless asked up front.
WRITE_BEGIN = {"sqlite": "BEGIN IMMEDIATE"}


class IdList(TypeDecorator[list]):
    """A Python list bound as one parameter: JSON text for SQLite; for PostgreSQL an
    array of the column's own type, so ``= ANY`` can use the column's index."""

    impl = String
    cache_ok = True

    def __init__(self, numeric: bool = True) -> None:
        super().__init__()
        self.numeric = numeric

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            # Imported here: a command line on SQLite never pays for PostgreSQL's dialect.
            from sqlalchemy.dialects.postgresql import ARRAY

            item = BigInteger() if self.numeric else String()
            return dialect.type_descriptor(ARRAY(item))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        items = list(value)
        if dialect.name == "postgresql":
            return items
        return json.dumps(items)


class _ColumnTest(ColumnElement[bool]):
    """A predicate on ``column`` and one bound ``param``, compiled per dialect."""

    inherit_cache = True
    type = Boolean()
    # A predicate of its own, not a boolean value SQLite would compare with 1.
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("param", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], param: ColumnElement[Any]) -> None:
        self.column = column
        self.param = param


class InList(_ColumnTest):
    """``column IN <the list bound as one parameter>``; see ``in_list``."""

    inherit_cache = True


@compiles(InList, "sqlite")
def _in_list_sqlite(element: InList, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.column, **kw)
    return f"{col} IN (SELECT value FROM json_each({compiler.process(element.param, **kw)}))"


@compiles(InList, "postgresql")
def _in_list_postgresql(element: InList, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.column, **kw)
    return f"{col} = ANY({compiler.process(element.param, **kw)})"


class _Match(_ColumnTest):
    """``column <operator> pattern``, the operator spelled per dialect (``OPERATORS``)."""

    OPERATORS: dict[str, str] = {}
    inherit_cache = True


class Glob(_Match):
    """``column`` matches a shell pattern (``*``, ``?``, ``[...]``), case-sensitively."""

    inherit_cache = True
    OPERATORS = {"sqlite": "GLOB", "postgresql": "~"}


class LikeCI(_Match):
    """``column LIKE pattern`` ignoring the case of ASCII letters, as SQLite's LIKE does."""

    inherit_cache = True
    OPERATORS = {"sqlite": "LIKE", "postgresql": "ILIKE"}


@compiles(_Match)
def _match(element: _Match, compiler: Any, **kw: Any) -> str:
    op = element.OPERATORS.get(compiler.dialect.name, "LIKE")
    col = compiler.process(element.column, **kw)
    return f"{col} {op} {compiler.process(element.param, **kw)}"


class distinct_list(GenericFunction[str]):
    """The distinct non-null values of a text column, comma-separated (an aggregate)."""

    type = String()
    inherit_cache = True


@compiles(distinct_list, "sqlite")
def _distinct_list_sqlite(element: distinct_list, compiler: Any, **kw: Any) -> str:
    return f"group_concat(DISTINCT {compiler.process(element.clauses, **kw)})"


@compiles(distinct_list, "postgresql")
def _distinct_list_postgresql(element: distinct_list, compiler: Any, **kw: Any) -> str:
    return f"string_agg(DISTINCT {compiler.process(element.clauses, **kw)}, ',')"


class GlobPattern(TypeDecorator[str]):
    """A shell pattern as SQLite's GLOB reads it, or as a POSIX regex for PostgreSQL."""

    impl = String
    cache_ok = True
    # SQLite's GLOB takes the pattern as given: its rendered text binds it unconverted
    # (``engine.store.prepared.CompiledText.as_is``).
    as_is_on = frozenset({"sqlite"})

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if dialect.name != "postgresql" or value is None:
            return value
        return glob_to_regex(value)


def glob(column: ColumnElement[Any], pattern: str, *, name: str | None = None) -> Glob:
    """``column`` matches the shell ``pattern``; with ``name``, the pattern is the bound
    parameter of that name, given at execution (for statements prebuilt once)."""
    if name is not None:
        return Glob(column, bindparam(name, type_=GlobPattern()))
    return Glob(column, bindparam(None, pattern, type_=GlobPattern()))


def one_of(column: ColumnElement[Any], values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values written into the statement: for the
    statuses the transition table names, fixed per statement, so a prepared statement
    (``engine.store.prepared``) stays one text with no list to expand at each execution."""
    items = sorted(set(values))
    if not items:
        return false()
    return column.in_([_written_in(v) for v in items])


def equals_any(column: ColumnElement[Any], statuses: tuple[str, ...]) -> ColumnElement[bool]:
    """``column = 'a' OR column = 'b'``, the values written in and in the order given:
    the predicate of a partial index (``engine.store.models.status_is_any``) term for term,
    which is what lets SQLite use that index."""
    return or_(*(column == _written_in(s) for s in statuses))


def _written_in(value: str) -> ColumnElement[Any]:
    """A string constant as an SQL literal in the statement's text, not a parameter."""
    return literal_column("'" + value.replace("'", "''") + "'")


def in_list(column: ColumnElement[Any], values: Iterable[Any] | str) -> InList:
    """``column IN values``, the values bound as one parameter. ``values`` a str: the name
    of a bound parameter given at execution (for statements prebuilt once)."""
    kind = IdList(numeric=isinstance(column.type, Integer))
    if isinstance(values, str):
        return InList(column, bindparam(values, type_=kind))
    return InList(column, bindparam(None, list(values), type_=kind))


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's own INSERT, the one that takes ``ON CONFLICT``."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql as mod
    else:
        from sqlalchemy.dialects import sqlite as mod
    return mod.insert(table)


def upsert(
    conn: Connection, table: Table, values: Mapping[str, Any], key: str, update: Mapping[str, Any]
) -> Any:
    """``INSERT values ON CONFLICT (key) DO UPDATE SET update``; in ``update``, the
    proposed row is ``stmt.excluded`` (pass a callable taking it for such values)."""
    stmt = _insert(conn, table).values(**values)
    sets = {k: (v(stmt.excluded) if callable(v) else v) for k, v in update.items()}
    return conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=sets))


def insert_new(conn: Connection, table: Table) -> Any:
    """``INSERT`` that skips a row whose unique key is already there (``ON CONFLICT DO
    NOTHING``): a write tried again after its commit was not acknowledged adds nothing."""
    return _insert(conn, table).on_conflict_do_nothing()


# Hosts' clocks differ: leases written by several hosts are compared on the database's
# clock. clock_timestamp(), not now(): now() is the transaction's start, which a long
# transaction would hold back.
_PG_NOW = "SELECT extract(epoch from clock_timestamp())::float8"


def db_now(conn: Connection, fallback: float) -> float:
    """The time leases are written and compared in: the database's clock on PostgreSQL,
    ``fallback`` (the engine's clock, injectable in tests) on SQLite, one host only."""
    if conn.dialect.name == "postgresql":
        return float(conn.exec_driver_sql(_PG_NOW).scalar_one())
    return fallback


class TaskStatistics(Executable, ClauseElement):
    """PostgreSQL's statistics of the task table: ``estimate`` reads how many rows the
    planner believes it holds (-1: never analyzed; NULL on SQLite, which keeps none),
    else the statistics are taken again (``ANALYZE``; a no-op on SQLite). A new job of
    thousands of Ready tasks in a table the planner has no statistics of, or far fewer
    rows, is claimed by a plan that reads and sorts all of them on every claim until
    autovacuum's ANALYZE comes (``engine.batch``)."""

    inherit_cache = True

    def __init__(self, *, estimate: bool) -> None:
        self.estimate = estimate

    _traverse_internals = [("estimate", InternalTraversal.dp_boolean)]


@compiles(TaskStatistics, "postgresql")
def _task_statistics_postgresql(element: TaskStatistics, compiler: Any, **kw: Any) -> str:
    if element.estimate:
        return "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'task'::regclass"
    return "ANALYZE task (status, job_id)"


@compiles(TaskStatistics, "sqlite")
def _task_statistics_sqlite(element: TaskStatistics, compiler: Any, **kw: Any) -> str:
    return "SELECT NULL AS n"
