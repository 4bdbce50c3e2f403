"""Helpers for the console tests: the database as rows, a console that records what it
said, UTC. (Polling: tests/waiting.py.)"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.notifications import SeverityLevel

from engine.core.safe_text import safe_block
from engine.runtime.supervisor import Supervisor
from tui.app import BatchdeckApp, embedded_label
from tui.host import EngineHost


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Rendered times are UTC, whatever the machine's zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def rows(db: str | Path, sql: str, *params: Any) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def one(db: str | Path, sql: str, *params: Any) -> Any:
    found = rows(db, sql, *params)
    return found[0][0] if found and len(found[0]) == 1 else (found[0] if found else None)


def state(db: str | Path) -> dict[str, list[tuple]]:
    """What an operator's request could change: statuses, who/when/why, events, servers."""
    return {
        "jobs": rows(
            db,
            "SELECT id, status, canceled_by, canceled_at, cancel_reason, "
            "aborted_by, aborted_at, ended_at FROM job ORDER BY id",
        ),
        "tasks": rows(db, "SELECT id, status, approval, attempt FROM task ORDER BY id"),
        "events": rows(
            db, "SELECT count(*) FROM event WHERE kind != 'server' OR reason NOT LIKE 'online%'"
        ),
        "servers": rows(db, "SELECT name, status, drain_deadline FROM server ORDER BY name"),
    }


class RecordingApp(BatchdeckApp):
    """The console, keeping every notification it shows for the test to read (toasts are
    hidden under ``run_test``)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.messages: list[tuple[str, str]] = []

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        self.messages.append((safe_block(message), severity))  # as the console shows it
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)


def embedded(db: str, servers: dict[str, int], **kw: Any) -> tuple[RecordingApp, EngineHost]:
    """A console embedding an engine on ``servers``, through the host tui.launch would make."""
    engine = kw.pop("engine", None) or Supervisor(db, servers, poll_interval=0.02)
    host = EngineHost(engine)
    kw.setdefault("actor", "alice")
    return RecordingApp(db, mode_label=embedded_label(servers), host=host, **kw), host


def count_calls(obj: Any, name: str) -> list[int]:
    """Count the calls of ``obj.name`` (an async method) from now on."""
    orig = getattr(obj, name)
    calls: list[int] = []

    async def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return await orig(*args, **kw)

    setattr(obj, name, counted)
    return calls


def said(app: Any, text: str) -> bool:
    return any(text in message for message, _ in app.messages)


def text_of(widget: Any) -> str:
    """The text a widget shows on screen (what the operator reads)."""
    from textual.geometry import Region

    size = widget.size
    return "\n".join(s.text for s in widget.render_lines(Region(0, 0, size.width, size.height)))


def painted(app: Any) -> str:
    """The whole screen as the terminal shows it, one line per row (modals over their
    screen included): what the operator sees, not what the database says."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def painted_job_row(app: Any, job_id: int) -> str:
    """The job list's painted row for ``job_id`` ("" when it is not on screen)."""
    from tui.widgets.job_table import JobTable

    table = app.screen.query_one(JobTable)
    lines = painted(app).splitlines()[table.region.y + 1 : table.region.bottom]
    for line in lines:
        words = line.replace("▶", " ").replace("✓", " ").split()
        if words and words[0] == str(job_id):
            return line
    return ""


def make_db(directory: Path, recipes: dict[str, str], name: str = "batchdeck.db") -> str:
    """A fresh database beside recipe files written from ``recipes`` (file name -> TOML)."""
    from engine.store.db import Store

    for file, text in recipes.items():
        (directory / file).write_text(text)
    path = directory / name
    Store(path).dispose()
    return str(path)


def add(db: str, recipe: str) -> int:
    """Submit the recipe file ``recipe`` (beside the database) as alice; its job id."""
    from engine.flows import base as flows
    from engine.recipes import load_recipe
    from engine.store.db import Store

    store = Store(db)
    try:
        return flows.submit(store.transaction, load_recipe(Path(db).parent / recipe), actor="alice")
    finally:
        store.dispose()


def job_status(db: str, job_id: int) -> str:
    return one(db, "SELECT status FROM job WHERE id=?", job_id)


ROUNDS = 3  # key -> app -> focused widget -> what its action posts


async def press(pilot: Any, *keys: str) -> None:
    """Press keys as a terminal sends them, each handled before the next.

    ``Pilot.press`` also waits, twice per key, for the whole process to go idle: with an
    engine or a read running beside the console that takes up to a second a key (143 ms
    on average over the console tests). Here each key is posted to the app's queue, and
    the wait is for what it caused: the app and every widget of the screen have handled
    their pending messages, over a few rounds (the key goes app -> focused widget -> the
    action's messages). Anything slower (a read, a worker) the test waits for with
    ``until``, as after any key."""
    import unicodedata

    from textual import events
    from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

    app = pilot.app
    for key in keys:
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        original = REPLACED_KEYS.get(key, key)
        try:
            char: str | None = unicodedata.lookup(_get_unicode_name_from_key(original))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        app.post_message(event)
        for _ in range(ROUNDS):
            await pilot._wait_for_screen()  # noqa: SLF001 - Pilot's own wait, minus the idle one


async def shown(pilot: Any, kind: type) -> Any:
    """Until a screen of ``kind`` is on top, mounted (its widgets composed) and painted;
    that screen. (``isinstance(app.screen, kind)`` alone holds from the push on, before
    the screen has composed anything.)"""
    from tests.waiting import until

    app = pilot.app
    screen = await until(
        lambda: isinstance(app.screen, kind) and app.screen.is_mounted and app.screen,
        f"{kind.__name__} shown",
        pilot=pilot,
    )
    await pilot.pause(0)  # its first frame
    return screen
