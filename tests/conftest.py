"""Shared fixtures: an embedded engine on a fresh database (a file, or PostgreSQL: see
``tests/pg_support.py``)."""

from __future__ import annotations

import pytest

from engine.runtime.supervisor import Supervisor
from tests.pg_support import backend, db, deck_db, pg_server, pg_url, pytest_generate_tests

__all__ = ["backend", "db", "deck_db", "pg_server", "pg_url", "pytest_generate_tests"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_databases: run on SQLite and on PostgreSQL")


@pytest.fixture
def servers() -> dict[str, int]:
    """The engine fixture's servers; a test module overrides this fixture to change them."""
    return {"batch-01": 4}


@pytest.fixture
async def engine(db, servers):
    eng = Supervisor(db, servers, poll_interval=0.02)
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()
