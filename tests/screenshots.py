"""``python -m tests.screenshots [OUTDIR]`` (from the repository's root): an SVG of every
screen and modal, written to ``screenshots/`` by default.

The data is ``tests.scenario`` (built without an engine, at fixed times) and the console
runs with a fixed clock and no live refresh, so the pictures are the same on every
run. The snapshot tests (tests/test_tui_snapshots.py) use the same ``SHOTS``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from textual.pilot import Pilot
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable

from tests import scenario
from tests.tui_support import RecordingApp
from tests.waiting import until
from tui.app import BatchdeckApp

MODE = "attached to 1 engine: batchhost"  # what the header reads of tests.scenario

Steps = Callable[[Pilot], Awaitable[None]]


def use_utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def make_app(db_path: str) -> RecordingApp:
    return RecordingApp(
        db_path, mode_label=MODE, clock=lambda: scenario.NOW, actor="alice", live=False
    )


def _busy(app: BatchdeckApp) -> bool:
    return any(not w.is_finished for w in app.workers if w.group != "flows")


def _tables_measured(screen: Screen[object]) -> bool:
    """DataTable measures its columns on idle, after rows arrive: until then a picture
    can catch the old widths."""
    return not any(
        t._require_update_dimensions or t._updated_cells or t._new_rows  # noqa: SLF001
        for t in screen.query(DataTable)
    )


async def settle(pilot: Pilot) -> None:
    """Until the top data screen has loaded and no reload or fetch is running."""
    app = pilot.app
    assert isinstance(app, BatchdeckApp)

    def ready() -> bool:
        base = next((s for s in reversed(app.screen_stack) if hasattr(s, "loaded")), None)
        return (
            base is not None
            and bool(base.loaded)
            and not _busy(app)
            and _tables_measured(app.screen)
        )

    await until(ready, "the screen to load", pilot=pilot)
    await pilot.pause()
    await until(lambda: _tables_measured(app.screen), "the tables to be measured", pilot=pilot)


async def select(pilot: Pilot, job_id: int) -> None:
    """Select a job in the list by id (as if the cursor had been moved to it)."""
    from tui.screens.jobs import JobListScreen

    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, JobListScreen)
    screen.table.select_id(job_id)
    await screen.reload_now()
    await settle(pilot)


async def modal_up(pilot: Pilot) -> None:
    await until(
        lambda: isinstance(pilot.app.screen, ModalScreen) and pilot.app.screen.is_mounted,
        "a modal, composed",
        pilot=pilot,
    )
    await pilot.pause()


def open_job(job_id: int) -> Steps:
    async def steps(pilot: Pilot) -> None:
        await select(pilot, job_id)
        await pilot.press("enter")
        await settle(pilot)

    return steps


def on_job(job_id: int, key: str, *, in_detail: bool = False) -> Steps:
    async def steps(pilot: Pilot) -> None:
        await select(pilot, job_id)
        if in_detail:
            await pilot.press("enter")
            await settle(pilot)
        await pilot.press(key)
        await modal_up(pilot)

    return steps


async def list_only(pilot: Pilot) -> None:
    await settle(pilot)


async def running_filter(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("f")
    await settle(pilot)


async def text_filter(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("slash", *"child", "enter")
    await settle(pilot)


async def servers(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("s")
    await settle(pilot)


async def help_screen(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("question_mark")
    await modal_up(pilot)


async def refused(pilot: Pilot) -> None:
    await select(pilot, 6)  # the system job
    await pilot.press("c")
    await until(lambda: bool(pilot.app.messages), "a notification", pilot=pilot)  # type: ignore[attr-defined]
    await pilot.pause()


def marked(*job_ids: int, key: str | None = None) -> Steps:
    """Mark these jobs (space on each), then press ``key`` (a bulk confirmation)."""

    async def steps(pilot: Pilot) -> None:
        for job_id in job_ids:
            await select(pilot, job_id)
            await pilot.press("space")
        await settle(pilot)
        if key is not None:
            await pilot.press(key)
            await modal_up(pilot)

    return steps


async def typed_count(pilot: Pilot) -> None:
    await marked(2, 10, 13, key="A")(pilot)


def logs_of(job_id: int, *keys: str) -> Steps:
    """The log screen of a job's selected task (the detail's cursor), then ``keys``."""

    async def steps(pilot: Pilot) -> None:
        await open_job(job_id)(pilot)
        await pilot.press("l")
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
        await settle(pilot)

    return steps


@dataclass(frozen=True)
class Shot:
    name: str
    steps: Steps
    size: tuple[int, int] = (100, 30)
    no_color: bool = False


SHOTS: tuple[Shot, ...] = (
    Shot("job-list-80x24", list_only, (80, 24)),
    Shot("job-list-120x40", list_only, (120, 40)),
    Shot("job-list-running-filter", running_filter),
    Shot("job-list-text-filter", text_filter),
    Shot("job-list-no-color", list_only, (100, 30), no_color=True),
    Shot("job-detail-executing", open_job(2)),
    Shot("job-detail-canceled", open_job(3)),
    Shot("job-detail-aborted", open_job(4)),
    Shot("job-detail-children", open_job(9)),
    Shot("job-detail-approval", open_job(5)),
    Shot("job-detail-80x24", open_job(13), (80, 24)),
    # A job's On cancel and Message columns at 80 columns (the others give way).
    Shot("job-detail-executing-80x24", open_job(2), (80, 24)),
    Shot("modal-cancel", on_job(2, "c")),
    Shot("modal-abort", on_job(13, "a")),
    Shot("modal-abort-cancel-first", on_job(2, "a", in_detail=True)),
    Shot("modal-enhanced-abort", on_job(2, "A")),
    Shot("modal-cancel-tree", on_job(9, "C")),
    Shot("modal-abort-80x24", on_job(2, "A"), (80, 24)),
    Shot("modal-reject", on_job(5, "n", in_detail=True)),
    Shot("job-detail-stuck", open_job(13)),
    Shot("job-list-marks", marked(2, 6, 13)),
    Shot("modal-bulk-cancel", marked(2, 6, 13, key="c")),
    Shot("modal-bulk-typed", typed_count),
    Shot("modal-rerun", on_job(3, "r")),
    Shot("servers", servers),
    Shot("help", help_screen),
    Shot("refused-system-job", refused),
    Shot("logs-following-120x40", logs_of(13), (120, 40)),
    Shot("logs-following-80x24", logs_of(13), (80, 24)),
    Shot("logs-search-120x40", logs_of(13, "slash", *"file-02", "enter"), (120, 40)),
    Shot("logs-search-80x24", logs_of(13, "slash", *"file-02", "enter", "n"), (80, 24)),
    Shot("logs-wrapped-120x40", logs_of(13, "w"), (120, 40)),
    Shot("logs-wrapped-80x24", logs_of(13, "w"), (80, 24)),
    Shot("logs-dropped-middle-120x40", logs_of(1), (120, 40)),
    Shot("logs-dropped-middle-80x24", logs_of(1), (80, 24)),
)


async def _take(shot: Shot, db_path: str, outdir: Path) -> Path:
    if shot.no_color:
        os.environ["NO_COLOR"] = "1"
    try:
        app = make_app(db_path)
    finally:
        os.environ.pop("NO_COLOR", None)
    async with app.run_test(size=shot.size, notifications=True) as pilot:
        await shot.steps(pilot)
        await pilot.pause()
        name = f"{shot.name}.svg"
        app.save_screenshot(filename=name, path=str(outdir))
    return outdir / name


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0] if args else "screenshots")
    outdir.mkdir(parents=True, exist_ok=True)
    use_utc()
    with tempfile.TemporaryDirectory() as tmp:
        db = scenario.build(Path(tmp) / "scenario.db")
        for shot in SHOTS:
            path = asyncio.run(_take(shot, db, outdir))
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
