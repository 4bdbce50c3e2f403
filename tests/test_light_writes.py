"""The command line's light writes: ``engine.flows.base`` (cancel, submit) on the statements'
rendered text through ``sqlite3``, held to the same flows on SQLAlchemy
(``control.cancel``, ``submit.submit``).

Both paths run one flow; these tests prove that on copies of one database they leave
byte-identical rows behind, refuse alike, and that ``batchdeck cancel`` and ``batchdeck
submit`` take the light path without importing the database layer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.core.refusal import Refusal
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import bulk as bulk_flow
from engine.flows import requests as request_flows
from engine.flows import settings as setting_flows
from engine.recipes import Recipe, TaskSpec
from engine.sql.light import NeedsGateway, SqliteReads
from engine.store.db import Store
from tests import scenario
from tests.engine_support import reading
from tests.probe_support import probe

AT = scenario.NOW + 5.0


@pytest.fixture(scope="module")
def scenario_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return scenario.build(tmp_path_factory.mktemp("light") / "scenario.db")


def _copy(db: str, to: Path) -> str:
    with sqlite3.connect(db) as src, sqlite3.connect(to) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return str(to)


def _rows(path: str) -> list[str]:
    with sqlite3.connect(path) as raw:
        return list(raw.iterdump())


def _said(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Refusal as exc:
        return f"refused: {exc}"


def _alike(
    db: str,
    tmp_path: Path,
    name: str,
    heavy: Callable[[Store], str],
    light: Callable[[Any], str],
) -> str:
    """One request through its flow on SQLAlchemy (``Store.transaction``) and on the light
    path, each on a copy of ``db``: the same answer, byte-identical rows after."""
    heavy_db = _copy(db, tmp_path / f"heavy-{name}.db")
    light_db = _copy(db, tmp_path / f"light-{name}.db")
    store = Store(heavy_db)
    try:
        said = _said(lambda: heavy(store))
    finally:
        store.dispose()
    reads = SqliteReads(light_db, write=True)
    try:
        assert _said(lambda: light(reads.transaction)) == said, name
    finally:
        reads.close()
    assert _rows(light_db) == _rows(heavy_db), name
    return said


def _read_both(db: str, heavy: Callable[[Store], Any], light: Callable[[Any], Any]) -> tuple:
    """What a read answers through SQLAlchemy (``Store``) and on the light path,
    a refusal as its text."""
    store = Store(db, readonly=True)
    try:
        by_control = _said(lambda: heavy(store))
    finally:
        store.dispose()
    reads = SqliteReads(db)
    try:
        with reads.reading() as sql:
            by_flow = _said(lambda: light(sql))
    finally:
        reads.close()
    return by_control, by_flow


def _both(db: str, tmp_path: Path, job_id: int, actor: str, words: str | None = None) -> str:
    return _alike(
        db,
        tmp_path,
        f"cancel-{job_id}",
        lambda store: flows.cancel(store.transaction, job_id, actor=actor, words=words, at=AT),
        lambda tx: flows.cancel(tx, job_id, actor=actor, words=words, at=AT),
    )


def test_every_job_of_the_scenario_is_canceled_or_refused_alike(
    scenario_db: str, tmp_path: Path
) -> None:
    said = {j: _both(scenario_db, tmp_path, j, "alice", "wrong input") for j in range(1, 16)}
    assert said[14] == "Job 14 Canceled"  # Waiting: nothing started, straight to Canceled
    assert said[2] == "Job 2 Canceling"  # a task runs: it winds down first
    assert said[1].startswith("refused:") and "Ended" in said[1]
    assert said[15] == "refused: Job 15 does not exist"
    assert said[6].startswith("refused:")  # a system job


def test_a_tree_of_jobs_is_canceled_or_refused_alike(scenario_db: str, tmp_path: Path) -> None:
    """Job 9 calls 10 (Executing) and 11 (Ended): a cancel with its children."""

    def tree(job_id: int, actor: str, db: str = scenario_db) -> str:
        return _alike(
            db,
            tmp_path,
            f"tree-{job_id}-{actor}",
            lambda store: flows.cancel_tree(
                store.transaction, job_id, actor=actor, words="stop it all", at=AT
            ),
            lambda tx: flows.cancel_tree(tx, job_id, actor=actor, words="stop it all", at=AT),
        )

    said = tree(9, "alice")
    assert said.startswith("Canceled 2 jobs of the tree of job 9; skipped job 11"), said
    assert tree(1, "alice").startswith("refused: No job in the tree of job 1")
    assert tree(15, "alice") == "refused: Job 15 does not exist"
    managed = _copy(scenario_db, tmp_path / "tree-managers.db")
    store = Store(managed)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "carol")
    store.dispose()
    assert tree(9, "mallory", managed).startswith("refused: No job in the tree of job 9")


def test_an_executing_job_with_nothing_running_is_finished_alike(
    scenario_db: str, tmp_path: Path
) -> None:
    """Nothing runs: the cancel finishes the job in the same transaction (the flow's
    finalize), on both paths."""
    db = _copy(scenario_db, tmp_path / "idle.db")
    with sqlite3.connect(db) as raw:  # job 14 as if its tasks went back to Ready
        raw.execute("UPDATE job SET status = 'executing', started_at = ? WHERE id = 14", (AT,))
    raw.close()
    assert _both(db, tmp_path, 14, "alice") == "Job 14 Canceled"


def test_a_refusal_by_the_managers_rule_is_audited_alike(scenario_db: str, tmp_path: Path) -> None:
    db = _copy(scenario_db, tmp_path / "managers.db")
    store = Store(db)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "carol")
    store.dispose()
    said = _both(db, tmp_path, 14, "mallory")
    assert said.startswith("refused: Cancel needs the job's submitter"), said
    with sqlite3.connect(tmp_path / "light-cancel-14.db") as raw:
        kinds = raw.execute("SELECT kind, actor FROM event ORDER BY id DESC LIMIT 1").fetchall()
    raw.close()
    assert kinds == [("refused", "mallory")]


def test_a_database_the_light_path_cannot_take_as_it_is_goes_to_the_gateway(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(NeedsGateway):
        SqliteReads(str(empty), write=True)
    other = tmp_path / "other.db"
    Store(str(other)).dispose()
    with sqlite3.connect(other) as raw:
        raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(NeedsGateway):
        SqliteReads(str(other), write=True)


def test_reruns_are_submitted_and_refused_alike(scenario_db: str, tmp_path: Path) -> None:
    from engine.flows.rerun import rerun

    said = {
        j: _alike(
            scenario_db,
            tmp_path,
            f"rerun-{j}",
            lambda store, j=j: str(rerun(store.transaction, j, actor="bob", at=AT)),
            lambda tx, j=j: str(rerun(tx, j, actor="bob", at=AT)),
        )
        for j in (8, 3, 4, 1, 2, 15)
    }
    assert said[8].isdigit() and said[3].isdigit()  # Error, Canceled: a new job each
    assert said[1].startswith("refused:") and "nothing to rerun" in said[1]
    assert said[2].startswith("refused:") and said[15].startswith("refused:")


def test_a_submit_inserts_alike(scenario_db: str, tmp_path: Path) -> None:
    """Tasks with dependencies, a system job, a message in the parameters: the job, its
    recipe, tasks, dependencies and event are the same rows on both paths."""
    tasks = (
        TaskSpec("extract", "wait", (), {"seconds": 1.5}),
        TaskSpec("load", "wait", ("extract",), {"seconds": 2}),
        TaskSpec("report", "shell", ("extract", "load"), {"command": "echo 'ünïcode'"}),
        *(TaskSpec(f"t{i}", "wait", (), {"seconds": i}) for i in range(300)),
    )
    recipe = Recipe("etl", "/srv/recipes/etl.toml", False, tasks, max_attempts=5)
    for system in (None, True):
        heavy = _copy(scenario_db, tmp_path / f"heavy-submit-{system}.db")
        light = _copy(scenario_db, tmp_path / f"light-submit-{system}.db")
        store = Store(heavy)
        try:
            heavy_id = flows.submit(store.transaction, recipe, actor="alice", system=system, at=AT)
        finally:
            store.dispose()
        db = SqliteReads(light, write=True)
        try:
            light_id = flows.submit(db.transaction, recipe, actor="alice", system=system, at=AT)
        finally:
            db.close()
        assert light_id == heavy_id
        assert _rows(light) == _rows(heavy)
        with sqlite3.connect(light) as raw:
            assert raw.execute(
                "SELECT system, status FROM job WHERE id = ?", (light_id,)
            ).fetchone() == (1 if system else 0, "waiting")
            assert raw.execute(
                "SELECT count(*) FROM taskdep JOIN task ON task.id = taskdep.task_id "
                "WHERE task.job_id = ?",
                (light_id,),
            ).fetchone() == (3,)
        raw.close()


def _abort_both(db: str, tmp_path: Path, job_id: int, enhanced: bool, actor: str) -> str:
    return _alike(
        db,
        tmp_path,
        f"abort-{job_id}-{enhanced}",
        lambda store: abort_flow.abort(
            store.transaction, job_id, actor=actor, enhanced=enhanced, at=AT
        ),
        lambda tx: abort_flow.abort(
            tx, job_id, actor=actor, enhanced=enhanced, confirmed=None, at=AT
        ),
    )


def test_every_abort_of_the_scenario_is_planned_and_done_alike(
    scenario_db: str, tmp_path: Path
) -> None:
    said = {}
    for job_id in range(1, 16):
        for enhanced in (False, True):
            heavy_plan, light_plan = _read_both(
                scenario_db,
                lambda store, j=job_id, e=enhanced: reading(
                    store, abort_flow.preview, j, enhanced=e, actor="alice"
                ),
                lambda sql, j=job_id, e=enhanced: abort_flow.preview(
                    sql, j, enhanced=e, actor="alice"
                ),
            )
            assert light_plan == heavy_plan, (job_id, enhanced)
            said[job_id, enhanced] = _abort_both(scenario_db, tmp_path, job_id, enhanced, "alice")
    assert said[2, False].startswith("Canceled and aborting job 2")
    assert said[12, True].startswith("Aborting job 12") and "restarting" in said[12, True]
    assert said[1, False].startswith("refused:") and said[15, True].startswith("refused:")


def test_an_abort_refused_by_the_managers_rule_is_audited_alike(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path / "abort-managers.db")
    store = Store(db)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "carol")
    store.dispose()
    said = _abort_both(db, tmp_path, 2, True, "mallory")
    assert said.startswith("refused: Enhanced abort needs a batch job manager"), said


def test_holds_releases_and_approvals_are_done_and_refused_alike(
    scenario_db: str, tmp_path: Path
) -> None:
    said = {}
    for name in ("hold", "release"):
        for job_id in (7, 14, 1, 15):
            said[name, job_id] = _alike(
                scenario_db,
                tmp_path,
                f"{name}-{job_id}",
                lambda store, n=name, j=job_id: getattr(request_flows, n)(
                    store.transaction, j, actor="bob", at=AT
                ),
                lambda tx, n=name, j=job_id: getattr(request_flows, n)(tx, j, actor="bob", at=AT),
            )
    assert said["hold", 14] == "Job 14 Withhold" and said["release", 7].startswith("Job 7 rel")
    assert said["hold", 7].startswith("refused:") and said["release", 14].startswith("refused:")
    for approve in (True, False):
        for job_id, task in ((5, "approve"), (5, "nope"), (2, "load"), (1, "1"), (15, "x")):
            said[approve, job_id, task] = _alike(
                scenario_db,
                tmp_path,
                f"approval-{approve}-{job_id}-{task}",
                lambda store, a=approve, j=job_id, k=task: request_flows.decide_approval(
                    store.transaction, j, k, approve=a, actor="bob", at=AT
                ),
                lambda tx, a=approve, j=job_id, k=task: request_flows.decide_approval(
                    tx, j, k, approve=a, actor="bob", at=AT
                ),
            )
    assert said[True, 5, "approve"].endswith("approved")
    assert said[False, 5, "approve"].endswith("rejected")
    assert said[True, 5, "nope"] == "refused: Job 5 has no task 'nope'"
    assert said[True, 2, "load"].startswith("refused:")


def test_batchdeck_cancel_writes_without_the_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path / "cli.db")
    heavy = _copy(scenario_db, tmp_path / "cli-heavy.db")

    def cancel(*argv: str) -> tuple[str, str, str]:
        got = probe(db, "cancel", *argv)
        return got.out, got.err, got.heavy

    cancel("1")  # refused (Ended); the first command renders the text into the cache
    out, err, last = cancel("2", "--reason", "bad batch")
    assert out == "Job 2 Canceling\n" and last == "HEAVY - 0", err
    out, err, last = cancel("2")  # now Canceling: refused by the light read
    assert "already Canceling" in err and last == "HEAVY - 1", err
    # What it wrote is what control.cancel writes, the time and actor aside.
    with sqlite3.connect(db) as raw:
        light = raw.execute(
            "SELECT task_id, from_status, to_status, reason FROM event "
            "WHERE job_id = 2 AND id > (SELECT max(id) FROM event) - 10 ORDER BY id"
        ).fetchall()
        tasks = raw.execute("SELECT id, status FROM task WHERE job_id = 2 ORDER BY id").fetchall()
    raw.close()
    store = Store(heavy)
    from engine.core.identity import current_actor

    flows.cancel(store.transaction, 2, actor=current_actor(), words="bad batch")
    store.dispose()
    with sqlite3.connect(heavy) as raw:
        assert (
            raw.execute(
                "SELECT task_id, from_status, to_status, reason FROM event "
                "WHERE job_id = 2 AND id > (SELECT max(id) FROM event) - 10 ORDER BY id"
            ).fetchall()
            == light
        )
        assert (
            raw.execute("SELECT id, status FROM task WHERE job_id = 2 ORDER BY id").fetchall()
            == tasks
        )
    raw.close()
    assert any(status == "canceling" for _, status in tasks), tasks


def test_batchdeck_submit_writes_without_the_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path / "submit.db")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'name = "two"\n[[task]]\nname = "a"\naction = "wait"\nseconds = 1\n'
        '[[task]]\nname = "b"\naction = "wait"\nseconds = 1\nafter = ["a"]\n'
    )

    got = probe(db, "submit", str(recipe))
    assert got.heavy == "HEAVY - 0", got.err
    job_id = int(got.out)
    with sqlite3.connect(db) as raw:
        tasks = raw.execute(
            "SELECT name, status FROM task WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
    raw.close()
    assert tasks == [("a", "ready"), ("b", "waiting")]
    # A database that does not exist yet is the gateway's: it creates the schema.
    fresh = tmp_path / "new.db"
    got = probe(fresh, "submit", str(recipe))
    assert got.out == "1\n" and "sqlalchemy" in got.heavy, got.err


def test_batchdeck_abort_previews_and_writes_without_the_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path / "abort.db")

    got = probe(db, "abort", "2")
    assert "Tasks to force-stop" in got.out and "add --yes" in got.err, got.err
    assert got.heavy == "HEAVY - 1", got.err
    got = probe(db, "abort", "2", "--yes")
    assert got.out.startswith("Canceled and aborting job 2"), got.err
    assert got.heavy == "HEAVY - 0", got.err
    with sqlite3.connect(db) as raw:
        statuses = {s for (s,) in raw.execute("SELECT status FROM task WHERE job_id = 2")}
    raw.close()
    assert "aborting" in statuses, statuses


def test_a_cancel_dry_run_answers_alike_and_without_the_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    """``cancel JOB --dry-run`` (and ``--with-children``) on the light path says what the
    same flow says on SQLAlchemy, for every job of the scenario and one that does not
    exist, and changes nothing."""

    def dry_run(sql: Any, job_id: int, tree: bool) -> list[tuple[int, Refusal | None]]:
        try:
            jobs = flows.cancel_dry_run(sql, job_id, actor="alice", tree=tree)
        except Refusal as exc:  # no such job
            return [(job_id, exc)]
        return [(j.id, why) for j, why in jobs]

    db = _copy(scenario_db, tmp_path / "dry.db")
    before = _rows(db)
    store = Store(db)
    reads = SqliteReads(db)
    try:
        for job_id in range(1, 16):
            for tree in (False, True):
                with store.reading() as sql:
                    heavy = dry_run(sql, job_id, tree)
                with reads.reading() as sql:
                    light = dry_run(sql, job_id, tree)
                assert light == heavy, (job_id, tree)
                if not tree:  # what the console's cancel preview says
                    preview = reading(store, flows.cancel_preview, job_id, actor="alice")
                    assert heavy[0][1] == preview.refusal
        with reads.reading() as sql:
            tree9 = dry_run(sql, 9, True)
    finally:
        reads.close()
        store.dispose()
    assert [job_id for job_id, _ in tree9] == [9, 10, 11]
    assert tree9[0][1] is None and "Ended" in str(tree9[2][1])
    got = probe(db, "cancel", "9", "--with-children", "--dry-run")
    assert got.out == (
        "Job 9: would be canceled\nJob 10: would be canceled\n"
        f"Job 11: refused: {tree9[2][1]}\nDry run: nothing changed.\n"
    ), got.err
    assert got.heavy == "HEAVY - 0", got.err
    # A job that does not exist is a refusal on one line, with or without its children.
    for argv in (("15", "--dry-run"), ("15", "--with-children", "--dry-run")):
        got = probe(db, "cancel", *argv)
        assert got.out == "Job 15: refused: Job 15 does not exist\nDry run: nothing changed.\n"
        assert got.heavy == "HEAVY - 0" and "Traceback" not in got.err, got.err
    assert _rows(db) == before


def _bulk_plans(db: str, kind: str, actor: str, filters: dict[str, Any]) -> tuple[Any, Any]:
    """The plan of a bulk action through SQLAlchemy and on the light path."""
    from engine.flows import bulk as bulk_flow

    return _read_both(
        db,
        lambda store: reading(store, bulk_flow.plan, kind, actor=actor, **filters),
        lambda sql: bulk_flow.plan(sql, kind, actor=actor, **filters),
    )


def test_bulk_cancels_and_aborts_are_planned_and_done_alike(
    scenario_db: str, tmp_path: Path
) -> None:
    """``cancel/abort --all`` and the console's marked rows: every filter, plans equal,
    then each plan carried out on copies of the database, answers and rows alike."""
    from engine.flows import bulk as bulk_flow

    managed = _copy(scenario_db, tmp_path / "bulk-managers.db")
    store = Store(managed)
    with store.transaction() as sql:
        setting_flows.store(sql, "managers", "carol")
    store.dispose()
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        (scenario_db, "cancel", "alice", {}),
        (scenario_db, "cancel", "alice", {"statuses": ["executing", "waiting"]}),
        (scenario_db, "cancel", "alice", {"name": "b*"}),
        (scenario_db, "cancel", "alice", {"user": "alice"}),
        (scenario_db, "cancel", "alice", {"job_ids": [1, 2, 14, 99]}),
        (scenario_db, "cancel", "alice", {"job_ids": [2, 3], "statuses": ["executing"]}),
        (scenario_db, "cancel", "alice", {"job_ids": [2, 3], "name": "[a-c]*"}),
        (scenario_db, "abort", "alice", {}),
        (scenario_db, "enhanced_abort", "alice", {"job_ids": [2, 12], "statuses": ["executing"]}),
        (managed, "cancel", "mallory", {}),  # refused by the managers rule: audited
        (managed, "abort", "mallory", {}),
    ]
    acted = []
    for i, (db, kind, actor, filters) in enumerate(cases):
        heavy, light = _bulk_plans(db, kind, actor, filters)
        assert light == heavy, (kind, actor, filters)
        if isinstance(heavy, str):
            assert "needs a batch job manager" in heavy, heavy
            continue
        acted.append(len(heavy.act))

        def by_control(store: Store, plan: Any = heavy, who: str = actor) -> str:
            return repr(bulk_flow.apply(store.transaction, plan, actor=who, reason="stop", at=AT))

        def by_flow(tx: Any, plan: Any = light, who: str = actor) -> str:
            return repr(bulk_flow.apply(tx, plan, actor=who, reason="stop", at=AT))

        _alike(db, tmp_path, f"bulk-{i}", by_control, by_flow)
    assert all(acted[:-1]) and acted[-1] == 0, acted  # every plan acts on some job, but
    # mallory's cancel, which the rule refuses for every job


def test_batchdeck_cancel_all_plans_and_cancels_without_the_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path / "bulk-cli.db")
    heavy_db = _copy(scenario_db, tmp_path / "bulk-cli-heavy.db")
    before = _rows(db)
    got = probe(db, "cancel", "--all", "--status", "executing", "--dry-run")
    store = Store(heavy_db, readonly=True)
    try:
        from engine.core.identity import current_actor
        from engine.reader.text import bulk_plan_text

        plan = reading(
            store, bulk_flow.plan, "cancel", actor=current_actor(), statuses=["executing"]
        )
    finally:
        store.dispose()
    assert got.out == bulk_plan_text(plan) + "\nDry run: nothing changed.\n", got.err
    assert got.heavy == "HEAVY - 0" and _rows(db) == before, got.err
    got = probe(db, "cancel", "--all", "--status", "executing", "--yes")
    store = Store(heavy_db)
    try:
        done = bulk_flow.apply(store.transaction, plan, actor=current_actor())
    finally:
        store.dispose()
    assert got.out.splitlines() == [r.text if r.done else f"refused: {r.text}" for r in done]
    assert got.heavy == f"HEAVY - {1 if plan.refused else 0}", got.err
    assert any(r.done for r in done) and "Canceling" in got.out, got.out
    got = probe(db, "abort", "--all", "--status", "canceling", "--dry-run")
    assert got.heavy == "HEAVY - 0" and "Abort: " in got.out, got.err


def test_settings_are_read_changed_and_refused_alike(scenario_db: str, tmp_path: Path) -> None:
    """``batchdeck settings``: the flows on both paths give the same values, store the
    same rows, refuse and audit alike, and reject a bad value before writing."""
    from engine.core.refusal import Refusal
    from engine.core.setting_values import SettingError
    from engine.flows import settings as setting_flows

    heavy, light = _read_both(
        scenario_db,
        lambda store: _all_settings(store),
        lambda sql: setting_flows.all_settings(sql),
    )
    assert heavy == light and light["stuck_seconds"] == str(scenario.STUCK_SECONDS)

    def change(key: str, value: str, actor: str, db: str = scenario_db) -> str:
        return _alike(
            db,
            tmp_path,
            f"setting-{key}-{actor}",
            lambda store: _put(store, key, value, actor),
            lambda tx: setting_flows.put(tx, key, value, actor=actor, at=AT),
        )

    assert change("lease_seconds", "7", "alice") == "7"
    assert change("managers", " carol ,@ops,carol, alice", "alice") == "carol, @ops, alice"
    managed = _copy(scenario_db, tmp_path / "settings-managed.db")
    reads = SqliteReads(managed, write=True)
    try:
        setting_flows.put(reads.transaction, "managers", "carol", actor="alice", at=AT, force=True)
        with pytest.raises(SettingError, match="expected on or off"):
            setting_flows.put(reads.transaction, "enhanced_abort", "maybe", actor="carol", at=AT)
    finally:
        reads.close()
    said = change("drain_seconds", "60", "mallory", managed)
    assert said.startswith("refused: Changing settings needs a batch job manager (carol)")
    store = Store(managed)
    try:
        with pytest.raises(Refusal):
            setting_flows.put(store.transaction, "drain_seconds", "60", actor="mallory")
    finally:
        store.dispose()


def _all_settings(store: Store) -> dict[str, str]:
    return reading(store, setting_flows.all_settings)


def _put(store: Store, key: str, value: str, actor: str) -> str:
    setting_flows.put(store.transaction, key, value, actor=actor, at=AT)
    return reading(store, setting_flows.get, key)


def test_batchdeck_settings_reads_and_writes_without_the_database_layer(
    scenario_db: str, tmp_path: Path
) -> None:
    db = _copy(scenario_db, tmp_path / "settings-cli.db")
    got = probe(db, "settings")
    assert got.heavy == "HEAVY - 0" and "lease_seconds = " in got.out, got.err
    got = probe(db, "settings", "drain_seconds", "120")
    assert (got.out, got.heavy) == ("drain_seconds = 120\n", "HEAVY - 0"), got.err
    got = probe(db, "settings", "drain_seconds")
    assert (got.out, got.heavy) == ("120\n", "HEAVY - 0"), got.err
    got = probe(db, "settings", "drain_seconds", "1e308")
    assert got.heavy == "HEAVY - 2" and "at most 86400" in got.err, got.err
