"""The command line's light reads: the SQL text cached from the statements, and what it
reads, held to the statements themselves.

``engine.sql.light`` runs the rendered text of ``engine.store.read_statements`` through the
standard library's sqlite3. These tests prove the cached text is exactly what the
statements compile to now, that an edited source file can never run stale text, and
that the light path returns the same views as the SQLAlchemy path on one database.
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

from engine.reader.reader import JobDetail, JobPage, JobView, Reader
from engine.sql import light as read_sql
from engine.sql.light import SORTS, TEXT_KINDS, Rendered, render
from tests import scenario
from tests.probe_support import probe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of the test's own, and no text loaded by this process yet."""
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(read_sql, "_LOADED", {})
    return home


@pytest.fixture(scope="module")
def scenario_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every status, stuck jobs, children, servers draining: the console's scenario."""
    return scenario.build(tmp_path_factory.mktemp("reads") / "scenario.db")


# -- the cached text is what the statements compile to -----------------------------------


def test_the_cached_text_is_what_the_statements_compile_to_now(cache_home: Path) -> None:
    first = read_sql.rendered("sqlite")  # renders, and writes the cache file
    path = read_sql.cache_file("sqlite")
    assert path.parent == cache_home / "batchdeck" and path.exists()
    read_sql._LOADED.clear()
    cached = Rendered.from_json(json.loads(path.read_text()))
    fresh = render("sqlite")
    assert cached.schema_version == fresh.schema_version
    assert set(cached.statements) == set(fresh.statements)
    for key, text in fresh.statements.items():
        assert cached.statements[key] == text, key
    assert read_sql.rendered("sqlite") == first  # read back from the file
    # No temporary file left behind by the atomic write.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_every_variant_of_the_list_is_rendered() -> None:
    keys = set(render("sqlite").statements)
    for name in ("list_jobs", "job_position"):
        for text, statuses, sort, descending in product(
            TEXT_KINDS, (False, True), SORTS, (False, True)
        ):
            key = read_sql.variant_key(
                name, text=text, statuses=statuses, sort=sort, descending=descending
            )
            assert key in keys
    # Values are parameters, never text: the list's filter is bound, not spliced in.
    words = render("sqlite").statements[
        read_sql.variant_key(
            "list_jobs", text="words", statuses=True, sort="name", descending=False
        )
    ]
    assert set(words.needed) == {"pattern", "prefix", "statuses", "limit", "offset"}
    assert words.as_json == ("statuses",)  # a list bound as one JSON text on SQLite
    assert "json_each(:statuses)" in words.sql


def test_an_edited_source_file_gets_another_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    for name in read_sql.SOURCES:
        (engine_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "engine" / name, engine_dir / name)
    monkeypatch.setattr(read_sql, "_ENGINE_DIR", engine_dir)
    before = read_sql.fingerprint("sqlite")
    assert read_sql.fingerprint("sqlite") == before  # stable while nothing changes
    for name in read_sql.SOURCES:
        path = engine_dir / name
        original = path.read_text()
        path.write_text(original + "\n# edited\n")
        assert read_sql.fingerprint("sqlite") != before, name
        path.write_text(original)
    assert read_sql.fingerprint("postgresql") != before


def test_a_cache_that_cannot_be_written_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario_db: str
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(read_sql, "_LOADED", {})
    reads = read_sql.SqliteReads(scenario_db)
    try:
        assert reads.rows("job", {"job_id": 1})[0]["name"] == "nightly-import"
    finally:
        reads.close()


def test_a_damaged_cache_file_is_rendered_afresh(cache_home: Path) -> None:
    path = read_sql.cache_file("sqlite")
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "statements": ')
    assert read_sql.rendered("sqlite") == render("sqlite")
    assert Rendered.from_json(json.loads(path.read_text())) == render("sqlite")


# -- the light path reads what the statements read ---------------------------------------


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


async def test_the_light_path_returns_what_the_statements_return(
    scenario_db: str, cache_home: Path
) -> None:
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


def _probe(db: str, cache: Path, *argv: str) -> tuple[str, str]:
    got = probe(db, cache, *argv)
    return got.out, got.heavy


def test_list_show_servers_and_cancel_import_no_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    db = _copy(scenario_db, tmp_path)
    _probe(db, cache, "list")  # the first run renders the text into the cache
    out, heavy = _probe(db, cache, "list", "--limit", "3")
    assert heavy == "HEAVY - 0" and "quarterly-ledger-export" in out
    out, heavy = _probe(db, cache, "show", "1", "--json")
    assert heavy == "HEAVY - 0" and json.loads(out)["name"] == "nightly-import"
    out, heavy = _probe(db, cache, "servers", "--json")
    assert heavy == "HEAVY - 0" and [r["name"] for r in json.loads(out)] == list(scenario.SERVERS)
    out, heavy = _probe(db, cache, "cancel", "1")
    assert heavy == "HEAVY - 1"  # refused: already Ended, decided by the light read
    # A cancel that goes ahead writes on the light path too (tests/test_light_cancel.py).
    out, heavy = _probe(db, cache, "cancel", "14")
    assert heavy == "HEAVY - 0" and "Canceled" in out


def test_a_refused_cancel_says_what_the_write_path_says(scenario_db: str, tmp_path: Path) -> None:
    """The light refusal and ``engine.store.control`` word every refusal by status alike."""
    from engine.cli.cancel import cancel_refusal_of
    from engine.store import control
    from engine.store.db import Store

    db = _copy(scenario_db, tmp_path)
    store = Store(db)

    async def views() -> dict[int, Any]:
        reader = Reader(db, inline=True)
        try:
            return {j: await reader.job(j) for j in range(1, 16)}
        finally:
            await reader.close()

    from engine.reader.inline import complete

    jobs = complete(views())
    try:
        seen = set()
        for job_id, view in jobs.items():
            light = cancel_refusal_of(job_id, view)
            assert light == control.cancel_refusal(store, job_id, actor="alice"), job_id
            seen.add(light.split()[-1] if light else None)
    finally:
        store.dispose()
    # Ended, Canceled, Error, Canceling, a system job, no such job, and jobs it may cancel.
    assert {"Ended", "Canceled", "Error", "do", "canceled", "exist", None} <= seen


def test_text_of_other_sources_is_pruned_once_stale(cache_home: Path) -> None:
    import os
    import time

    where = cache_home / "batchdeck"
    where.mkdir(parents=True)
    old, recent = where / "reads-sqlite-old.json", where / "reads-sqlite-recent.json"
    for p in (old, recent):
        p.write_text("{}")
    stale = time.time() - read_sql.STALE_S - 60
    os.utime(old, (stale, stale))
    read_sql.rendered("sqlite")
    names = sorted(p.name for p in where.iterdir())
    assert names == sorted([read_sql.cache_file("sqlite").name, recent.name])
