"""Snapshots of every screen and modal, from the fixed scenario with a fixed clock.

Regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at
the SVGs in tests/__snapshots__/test_tui_snapshots/ before committing them.
"""

from __future__ import annotations

import pytest

from tests import scenario
from tests.screenshots import SHOTS, Shot, make_app
from tests.tui_support import utc  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def scenario_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return scenario.build(tmp_path_factory.mktemp("tui-snapshots") / "scenario.db")


@pytest.mark.parametrize("shot", SHOTS, ids=[s.name for s in SHOTS])
def test_snapshot(shot: Shot, scenario_db: str, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    if shot.no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(scenario_db)
    assert snap_compare(app, run_before=shot.steps, terminal_size=shot.size)
