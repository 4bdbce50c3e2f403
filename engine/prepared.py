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
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import ClauseElement

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


class _Compiled:
    __slots__ = ("sql", "defaults", "processors", "row")

    def __init__(self, stmt: ClauseElement, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        if any(b.expanding for b in compiled.binds.values()):
            # Rendered per execution by SQLAlchemy, so never fixed text: use one_of or
            # in_list (engine.dialect) for a list in a prepared statement.
            raise ValueError(f"a list bound with .in_() cannot be prepared: {stmt}")
        self.sql: str = compiled.string
        # Values the statement carries itself (``literal(...)``, ``.in_([...])``).
        self.defaults: dict[str, Any] = {
            name: bp.effective_value
            for name, bp in ((compiled.bind_names[b], b) for b in compiled.binds.values())
            if not bp.required and bp.callable is None
        }
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for bp in compiled.binds.values():
            proc = bp.type._cached_bind_processor(dialect)
            if proc is not None:
                self.processors[compiled.bind_names[bp]] = proc
        self.row: Any = None

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(self.defaults)
        out.update(given)
        for name, proc in self.processors.items():
            if name in out:
                out[name] = proc(out[name])
        return out


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
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, conn: Connection) -> _Compiled:
        name = conn.dialect.name
        c = self._by_dialect.get(name)
        if c is None:
            c = _Compiled(self.stmt, _named_dialect(conn))
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
            if cur.description is None:
                return Result([], cur.rowcount)
            if c.row is None:
                c.row = namedtuple("Row", [d[0] for d in cur.description], rename=True)  # type: ignore[misc]
            make = c.row._make
            return Result([make(r) for r in cur.fetchall()], cur.rowcount)
        finally:
            cur.close()
