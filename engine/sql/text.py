"""Every read and flow statement as SQL text for each database, checked into
``engine/sql/rendered/`` (one JSON file per dialect) and read from there.

The statements are built from the tables in ``engine.store`` (SQLAlchemy); the text is
what they compile to, written by ``python -m engine.store.render`` and compared with a
fresh rendering by the test suite, so the files never drift from the statements. Reading
the text needs neither SQLAlchemy nor SQLModel: the command line's light path
(``engine.sql.light``, ``engine.sql.pg_light``) runs it through the database's own driver.
"""

from __future__ import annotations

import json
import threading
from collections import namedtuple
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engine.core.patterns import glob_to_regex

RENDERED_DIR = Path(__file__).resolve().parent / "rendered"


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
            "dialect": self.dialect,
            "schema_version": self.schema_version,
            "statements": statements,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rendered:
        """What ``to_json`` wrote."""
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


_LOADED: dict[str, Rendered] = {}
_LOAD_LOCK = threading.Lock()


def rendered(dialect: str = "sqlite") -> Rendered:
    """The statements' text for ``dialect`` (``sqlite`` or ``postgresql``) as checked into
    ``engine/sql/rendered/``: read once per process."""
    with _LOAD_LOCK:
        got = _LOADED.get(dialect)
        if got is None:
            path = RENDERED_DIR / f"{dialect}.json"
            got = _LOADED[dialect] = Rendered.from_json(json.loads(path.read_text("utf-8")))
        return got


@cache
def row_type(names: tuple[str, ...]) -> Any:
    """The rows a statement gives on either path: a named tuple of its columns."""
    return namedtuple("Row", names, rename=True)  # type: ignore[misc]


def fetch_rows(cur: Any) -> list[Any]:
    """A DB-API cursor's rows as ``row_type`` tuples (none for a statement without)."""
    if cur.description is None:
        return []
    make = row_type(tuple(d[0] for d in cur.description))._make
    return [make(r) for r in cur.fetchall()]
