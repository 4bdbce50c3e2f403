"""Shared fixtures: an embedded engine on a fresh database file."""

from __future__ import annotations

import pytest

from engine.runtime import Engine


@pytest.fixture
def servers() -> dict[str, int]:
    """The engine fixture's servers; a test module overrides this fixture to change them."""
    return {"batch-01": 4}


@pytest.fixture
async def engine(tmp_path, servers):
    eng = Engine(str(tmp_path / "t.db"), servers, poll_interval=0.02)
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()
