"""Statements of the engine's hot path, compiled once per dialect and run on the driver.

Executing a SQLAlchemy Core statement costs ~100-150 µs of Python before the driver
sees it (cache key, parameter processing, result set-up) against ~25 µs for the
driver itself; a tick runs about ten statements for a handful of tasks, so that
overhead, not SQLite, bounded the engine. A ``Prepared`` is built from the tables like
any other statement; the first use on a dialect compiles it to SQL text with named
parameters, and every later use hands that text and the processed parameters to the
driver cursor of the same transaction.

Rows come back as the driver gives them (a SQLite integer for a boolean column): the
hot-path statements read ids, names, statuses, numbers and text only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Connection, Float
from sqlalchemy.sql import ClauseElement

from engine.sql.text import row_type

_NAMED_DIALECTS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _named_dialect(conn: Connection) -> Any:
    """The connection's dialect, or for SQLite's qmark one a twin that writes ``:name``
    (the stdlib driver takes both; names let one parameter appear twice)."""
    dialect = conn.dialect
    if dialect.paramstyle in ("named", "pyformat"):
        return dialect
    with _LOCK:
        named = _NAMED_DIALECTS.get(dialect.name)
        if named is None:
            named = type(dialect)(paramstyle="named")
            _NAMED_DIALECTS[dialect.name] = named
        return named


class CompiledText:
    """A statement compiled to SQL text with named parameters, as a driver takes it.

    Constant lists in the statement (``.in_([...])`` of fixed statuses) are expanded
    here, once, into parameters of their own whose values are kept in ``defaults``;
    ``needed`` are the parameters the caller gives at each execution, and
    ``processors`` the conversions some of them need first (a list bound as JSON text
    for SQLite, see ``engine.store.dialect.IdList``). Also what ``engine.sql.light`` renders
    and caches for the command line's reads."""

    __slots__ = (
        "sql",
        "defaults",
        "needed",
        "lists",
        "floats",
        "bools",
        "as_is",
        "processors",
        "row",
    )

    def __init__(self, stmt: ClauseElement, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        binds = compiled.binds
        self.needed: tuple[str, ...] = tuple(sorted(n for n, b in binds.items() if b.required))
        # Stand-ins for the caller's values: only the expansion of constant lists needs
        # values now, and a list parameter takes a list.
        # The parameters bound as one list (``IdList``: JSON text on SQLite).
        self.lists: tuple[str, ...] = tuple(n for n in self.needed if _is_list(binds[n]))
        # The parameters of a Float type (its processor makes an int a float).
        self.floats: tuple[str, ...] = tuple(
            n for n in self.needed if isinstance(binds[n].type, Float)
        )
        # And of a Boolean type (a bool or None, stored as 1/0 on SQLite).
        self.bools: tuple[str, ...] = tuple(
            n for n in self.needed if isinstance(binds[n].type, Boolean)
        )
        # And those whose type leaves the value as it is on this dialect (``as_is_on``).
        self.as_is: tuple[str, ...] = tuple(
            n for n in self.needed if dialect.name in getattr(binds[n].type, "as_is_on", ())
        )
        stand_in = {n: ([] if binds[n].expanding or n in self.lists else 0) for n in self.needed}
        state = compiled.construct_expanded_state(stand_in)
        self.sql: str = state.statement
        # Expanded constants come with their processors; every other parameter's is its
        # type's for this dialect (a TypeDecorator's process_bind_param included).
        processors: dict[str, Callable[[Any], Any]] = dict(state.processors or {})
        for name, bp in binds.items():
            proc = bp.type._cached_bind_processor(dialect)
            if proc is not None and not bp.expanding:
                processors[name] = proc
        # The statement's own values converted once; the caller's at each execution.
        self.defaults: dict[str, Any] = {
            k: (processors[k](v) if k in processors else v)
            for k, v in state.parameters.items()
            if k not in self.needed
        }
        self.processors = {
            k: v for k, v in processors.items() if k in self.needed and k not in self.as_is
        }
        self.row: Any = None

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        # Once per row of an executemany (20,000 for a wide job's submit): kept lean.
        out = dict(self.defaults)
        try:
            for name in self.needed:
                out[name] = given[name]
        except KeyError:
            missing = [n for n in self.needed if n not in given]
            raise TypeError(f"missing parameters {missing} for {self.sql[:60]!r}") from None
        for name, proc in self.processors.items():
            out[name] = proc(out[name])
        return out


def _is_list(bind: Any) -> bool:
    from engine.store.dialect import IdList

    return isinstance(bind.type, IdList)


class Result:
    """What a Prepared execution returns: its rows (named tuples) and its row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalars(self) -> list[Any]:
        return [r[0] for r in self._rows]


class Prepared:
    """One statement, compiled on first use per dialect and run on the driver cursor."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._by_dialect: dict[str, CompiledText] = {}

    def _compiled(self, conn: Connection) -> CompiledText:
        name = conn.dialect.name
        c = self._by_dialect.get(name)
        if c is None:
            c = CompiledText(self.stmt, _named_dialect(conn))
            self._by_dialect[name] = c
        return c

    def __call__(
        self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] = ()
    ) -> Result:
        c = self._compiled(conn)
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if isinstance(params, Mapping) or not params:
                cur.execute(c.sql, c.params(params or {}))
            else:
                cur.executemany(c.sql, [c.params(p) for p in params])
            return _result(c, cur)
        finally:
            cur.close()


def _result(c: CompiledText, cur: Any) -> Result:
    if cur.description is None:
        return Result([], cur.rowcount)
    if c.row is None:
        c.row = row_type(tuple(d[0] for d in cur.description))
    make = c.row._make
    return Result([make(r) for r in cur.fetchall()], cur.rowcount)


def together(conn: Connection, *calls: tuple[Prepared, Mapping[str, Any]]) -> list[Result]:
    """Statements none of which needs another's result, in this order: on PostgreSQL
    sent at once (psycopg's pipeline mode), one round trip for all of them instead of
    one each; elsewhere one after another."""
    if conn.dialect.name != "postgresql" or len(calls) < 2:
        return [p(conn, params) for p, params in calls]
    raw: Any = conn.connection.driver_connection
    sent = []
    try:
        with raw.pipeline():
            for p, params in calls:
                c = p._compiled(conn)
                cur = raw.cursor()
                sent.append((c, cur))
                cur.execute(c.sql, c.params(params))
        return [_result(c, cur) for c, cur in sent]
    finally:
        for _c, cur in sent:
            cur.close()


class PreparedSql:
    """An ``engine.flows.base.Sql`` on a SQLAlchemy connection: each key's ``Prepared``
    statement run in the connection's transaction."""

    __slots__ = ("_conn", "_statements")

    def __init__(self, conn: Connection, statements: Mapping[str, Prepared]) -> None:
        self._conn = conn
        self._statements = statements

    def rows(self, key: str, params: Mapping[str, Any]) -> list[Any]:
        return self._statements[key](self._conn, params).all()

    @property
    def moves_in_one(self) -> bool:
        return self._conn.dialect.name == "postgresql"

    def run(self, key: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        return self._statements[key](self._conn, params).rowcount

    def db_now(self, fallback: float) -> float:
        from engine.store.dialect import db_now

        return db_now(self._conn, fallback)
