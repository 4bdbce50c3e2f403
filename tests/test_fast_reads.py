"""The command line's light reads: the SQL text checked into the tree, and what it reads,
held to the statements themselves.

``engine.sql.light`` runs the checked-in text (``engine.sql.text``) of
``engine.store.read_statements`` through the standard library's sqlite3. These tests
prove the files are exactly what the statements compile to now (so an edited statement
cannot run stale text: this test fails until ``python -m engine.store.render`` is run),
and that the light path returns the same views as the SQLAlchemy path on one database.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import fields, replace
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from engine.core.views import JobDetail, JobPage, JobView
from engine.reader.reader import Reader
from engine.sql import text as text_module
from engine.sql.keys import SORTS, TEXT_KINDS, variant_key
from engine.sql.text import Rendered
from engine.store.render import file_text, render
from tests import scenario
from tests.probe_support import probe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenario_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every status, stuck jobs, children, servers draining: the console's scenario."""
    return scenario.build(tmp_path_factory.mktemp("reads") / "scenario.db")


# -- the checked-in text is what the statements compile to -------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_checked_in_text_is_what_the_statements_compile_to_now(dialect: str) -> None:
    checked_in = (ROOT / "engine" / "sql" / "rendered" / f"{dialect}.json").read_text()
    fresh = render(dialect)
    loaded = Rendered.from_json(json.loads(checked_in))
    assert loaded.schema_version == fresh.schema_version
    assert set(loaded.statements) == set(fresh.statements)
    for key, text in fresh.statements.items():
        assert loaded.statements[key] == text, f"{key}: run python -m engine.store.render"
    assert checked_in == file_text(dialect)  # byte for byte, as the command writes it
    assert text_module.rendered(dialect) == fresh


def test_the_render_command_checks_and_writes_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--check`` says which file is stale and exits 1; without it the file is written."""
    from engine.store import render as render_module

    for dialect in ("sqlite", "postgresql"):
        shutil.copy(ROOT / "engine" / "sql" / "rendered" / f"{dialect}.json", tmp_path)
    monkeypatch.setattr(render_module, "RENDERED_DIR", tmp_path)
    assert render_module.main(["--check"]) == 0
    stale = tmp_path / "sqlite.json"
    stale.write_text(stale.read_text().replace("SELECT", "SELECT  ", 1))
    assert render_module.main(["--check"]) == 1
    assert "sqlite.json: run python -m engine.store.render" in capsys.readouterr().err
    assert render_module.main([]) == 0
    assert stale.read_text() == file_text("sqlite")


def test_every_variant_of_the_list_is_rendered() -> None:
    keys = set(render("sqlite").statements)
    for name in ("list_jobs", "job_position"):
        for text, statuses, sort, descending in product(
            TEXT_KINDS, (False, True), SORTS, (False, True)
        ):
            key = variant_key(name, text=text, statuses=statuses, sort=sort, descending=descending)
            assert key in keys
    # Values are parameters, never text: the list's filter is bound, not spliced in.
    words = render("sqlite").statements[
        variant_key("list_jobs", text="words", statuses=True, sort="name", descending=False)
    ]
    assert set(words.needed) == {"pattern", "prefix", "statuses", "limit", "offset"}
    assert words.as_json == ("statuses",)  # a list bound as one JSON text on SQLite
    assert "json_each(:statuses)" in words.sql


async def _everything(reader: Reader) -> dict[str, Any]:
    """Every read the console and the command line make, at the scenario's clock."""
    now = scenario.NOW
    out: dict[str, Any] = {
        "servers": await reader.servers(now),
        "health": await reader.engine_health(now=now),
        "health_of": await reader.engine_health(owner=scenario.OWNER, now=now),
        "counts": await reader.status_counts(),
        "stuck": await reader.stuck_jobs(now),
        "stopping": await reader.stopping_tasks(None, now),
        "live": await reader.live_engines(now),
    }
    for job_id in range(1, 16):  # 15 does not exist
        out[f"detail {job_id}"] = await reader.job_detail(job_id)
        out[f"stuck {job_id}"] = await reader.stuck_job(job_id, now)
    for text, statuses, sort, descending in product(
        (None, "1", "ex", "wait", "CAN"),
        (None, ["executing", "canceling"]),
        SORTS,
        (False, True),
    ):
        f = {"text": text, "statuses": statuses}
        key = f"{text} {statuses} {sort} {descending}"
        out[f"page {key}"] = await reader.list_jobs(1, 5, **f, sort=sort, descending=descending)
        out[f"position {key}"] = await reader.job_position(9, **f, sort=sort, descending=descending)
        out[f"ids {key}"] = await reader.job_ids(**f)
    return {k: _without_live_times(v) for k, v in out.items()}


def _without_live_times(value: Any) -> Any:
    """A job's ``stuck_for`` as read by ``job_detail`` and ``list_jobs`` counts to the
    time of the read: kept as stuck or not."""
    if isinstance(value, JobView):
        return replace(value, stuck_for=value.stuck_for is not None)
    if isinstance(value, list):
        return [_without_live_times(v) for v in value]
    if isinstance(value, JobDetail | JobPage):
        return replace(
            value,
            **{
                f.name: _without_live_times(getattr(value, f.name))
                for f in fields(value)
                if f.name in ("job", "children", "rows")
            },
        )
    return value


async def test_the_light_path_returns_what_the_statements_return(scenario_db: str) -> None:
    readers = {
        "statements": Reader(scenario_db, gateway=True, terminal_text=True),
        "light, own thread": Reader(scenario_db, terminal_text=True),
        "light, inline": Reader(scenario_db, inline=True, terminal_text=True),
    }
    try:
        seen = {name: await _everything(r) for name, r in readers.items()}
    finally:
        for r in readers.values():
            await r.close()
    assert readers["light, inline"]._light is None  # closed
    want = seen.pop("statements")
    assert any(v for k, v in want.items() if k.startswith("page")), "the scenario reads nothing"
    for name, got in seen.items():
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == want[key], f"{name}: {key}"


async def test_the_light_path_reads_without_the_gateway(scenario_db: str) -> None:
    reader = Reader(scenario_db, inline=True)
    try:
        page = await reader.list_jobs(0, 3)
        assert [j.id for j in page.rows] == [14, 13, 12] and page.total == 14
        assert reader._store is None and reader._light is not None
    finally:
        await reader.close()


async def test_a_new_file_goes_through_the_gateway_which_creates_it(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    reader = Reader(str(db), inline=True)
    try:
        assert (await reader.list_jobs()).rows == []
        assert reader._store is not None  # the gateway created the schema
    finally:
        await reader.close()
    again = Reader(str(db), inline=True)
    try:
        assert await again.job(1) is None
        assert again._store is None  # now the light path reads it
    finally:
        await again.close()


async def test_another_schema_version_is_left_to_the_gateway_to_refuse(
    tmp_path: Path,
) -> None:
    from engine.store.db import DatabaseError

    db = scenario.build(tmp_path / "old.db")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()
    reader = Reader(db, inline=True)
    try:
        with pytest.raises(DatabaseError, match="schema version 1, this batchdeck needs"):
            await reader.job(1)
    finally:
        await reader.close()


def _copy(db: str, where: Path) -> str:
    """The database, with what its write-ahead log holds."""
    to = str(where / "copy.db")
    with sqlite3.connect(db) as src, sqlite3.connect(to) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return to


# -- the command line imports only what a read needs --------------------------------------


def _probe(db: str, *argv: str) -> tuple[str, str]:
    got = probe(db, *argv)
    return got.out, got.heavy


def test_list_show_servers_and_cancel_import_no_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path)
    out, heavy = _probe(db, "list", "--limit", "3")
    assert heavy == "HEAVY - 0" and "quarterly-ledger-export" in out
    out, heavy = _probe(db, "show", "1", "--json")
    assert heavy == "HEAVY - 0" and json.loads(out)["name"] == "nightly-import"
    out, heavy = _probe(db, "servers", "--json")
    assert heavy == "HEAVY - 0" and [r["name"] for r in json.loads(out)] == list(scenario.SERVERS)
    out, heavy = _probe(db, "cancel", "1")
    assert heavy == "HEAVY - 1"  # refused: already Ended, decided by the light read
    # A cancel that goes ahead writes on the light path too (tests/test_light_cancel.py).
    out, heavy = _probe(db, "cancel", "14")
    assert heavy == "HEAVY - 0" and "Canceled" in out


def test_a_refused_cancel_says_what_the_write_path_says(scenario_db: str, tmp_path: Path) -> None:
    """The light refusal and the console's cancel preview word every refusal by status
    alike."""
    from engine.cli.main import cancel_refusal_of
    from engine.flows import base as flows
    from engine.store.db import Store

    db = _copy(scenario_db, tmp_path)
    store = Store(db)

    async def views() -> dict[int, Any]:
        reader = Reader(db, inline=True)
        try:
            return {j: await reader.job(j) for j in range(1, 16)}
        finally:
            await reader.close()

    from engine.cli.main import _complete

    jobs = _complete(views())
    try:
        seen = set()
        for job_id, view in jobs.items():
            light = cancel_refusal_of(job_id, view)
            with store.reading() as sql:
                heavy = flows.cancel_preview(sql, job_id, actor="alice").refusal
            assert light == heavy, job_id
            seen.add(str(light).split()[-1] if light else None)
    finally:
        store.dispose()
    # Ended, Canceled, Error, Canceling, a system job, no such job, and jobs it may cancel.
    assert {"Ended", "Canceled", "Error", "do", "canceled", "exist", None} <= seen
