"""PostgreSQL for the tests: one server per session from the ``pgserver`` wheel
(PostgreSQL 16), a fresh database per test, and the ``backend`` a test runs on.

As root, pgserver runs the server as a system user ``pgserver`` it creates, and opens the
directories above its data directory to others: the data directory is made under /tmp
for that reason. Each test's database is a copy of a template that already holds the
schema (``CREATE DATABASE … TEMPLATE``), cheaper than creating the schema every time.

A module runs its tests on both databases by naming them: ``BACKENDS = ("sqlite",
"postgresql")``, a test by its mark ``@pytest.mark.both_databases``; every other test
runs on SQLite only, with unchanged ids. (The command-line suites are slow per test:
there the tests of control run on both, the tests of files and flags on SQLite.)
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TEMPLATE = "batchdeck_template"
_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    import pgserver

    from engine.store.db import Store

    data = tempfile.mkdtemp(prefix="batchdeck-pg-")
    server = pgserver.get_server(data, cleanup_mode="delete")  # data dir too
    try:
        server.psql(f"CREATE DATABASE {TEMPLATE};")
        Store(server.get_uri(TEMPLATE)).dispose()  # the schema, once
        yield server
    finally:
        server.cleanup()


def new_pg_database(server: Any, *, empty: bool = False) -> str:
    """A fresh database on the session's server, as a libpq URL: with the schema, or
    ``empty``."""
    name = f"t{next(_names)}"
    server.psql(
        f"CREATE DATABASE {name};" if empty else f"CREATE DATABASE {name} TEMPLATE {TEMPLATE};"
    )
    return server.get_uri(name)


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """A fresh, empty database on the session's PostgreSQL, as a libpq URL."""
    return new_pg_database(pg_server, empty=True)


BOTH = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backends = getattr(metafunc.module, "BACKENDS", None)
    if metafunc.definition.get_closest_marker("both_databases"):
        backends = BOTH
    if backends and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", list(backends), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The database a test runs on: a file in ``tmp_path``, or a fresh PostgreSQL
    database with the schema (a libpq URL)."""
    if backend == "postgresql":
        return new_pg_database(request.getfixturevalue("pg_server"))
    return str(tmp_path / "t.db")


@pytest.fixture
def deck_db(backend: str, request: pytest.FixtureRequest) -> str | None:
    """For ``deck_in``: None (its own SQLite file), or a fresh PostgreSQL database."""
    if backend == "postgresql":
        return new_pg_database(request.getfixturevalue("pg_server"))
    return None


def pg_deck(root: Path, url: str) -> Any:
    """A ``Deck`` (tests/proc_support.py) whose command line, ``serve`` processes and
    direct reads all use the PostgreSQL database ``url``."""
    from tests.proc_support import Deck

    class PgDeck(Deck):
        def __init__(self) -> None:
            super().__init__(root)
            self.db = url  # type: ignore[assignment]
            self.env["BATCHDECK_DB"] = url

        def _query(self, query: str, params: tuple, *, rows: Any = None) -> Any:
            import psycopg

            kw = {"row_factory": rows} if rows is not None else {}
            with psycopg.connect(url, autocommit=True, **kw) as conn:
                cur = conn.execute(query.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else None

        def sql(self, query: str, params: tuple = ()) -> list[tuple]:
            return [tuple(r) for r in self._query(query, params)]

        def write_sql(self, query: str, params: tuple = ()) -> None:
            self._query(query, params)

        def task(self, job: int, name: str) -> dict[str, Any]:
            from psycopg.rows import dict_row

            found = self._query(
                "SELECT * FROM task WHERE job_id=? AND name=?", (job, name), rows=dict_row
            )
            assert found, f"job {job} has no task {name!r}"
            return found[0]

    return PgDeck()
