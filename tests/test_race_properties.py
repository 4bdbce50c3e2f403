"""Cancel and abort racing with completion: random interleavings never leave an illegal state.

Each example is a real SQLite file. The operations are the ones the engine and the
operators perform (claim, a run's outcome reported for any task — even one that a
cancel has already settled —, cancel, abort, enhanced abort, hold, release,
recovery), applied in a random order; after every step the database must satisfy the
invariants below.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.refusal import Refusal
from engine.core.statuses import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    TASK_NOT_STARTED,
    TASK_RUNNING,
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    JobStatus,
    TaskStatus,
    job_status_after,
)
from engine.flows import abort as abort_flow
from engine.flows import base as flows
from engine.flows import requests as request_flows
from engine.recipes import Recipe, TaskSpec
from engine.runtime import tick as batch
from engine.store.db import Store
from engine.store.flow_statements import flow_sql

N_TASKS = 4
OWNER = "test:1:abc"

op = st.one_of(
    st.tuples(st.just("claim"), st.integers(1, 3)),
    st.tuples(
        st.just("outcome"),
        st.integers(0, N_TASKS - 1),
        st.sampled_from(["ended", "error", "canceled", "aborted", "interrupted"]),
    ),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("abort")),
    st.tuples(st.just("enhanced")),
    st.tuples(st.just("hold")),
    st.tuples(st.just("release")),
    st.tuples(st.just("recover")),
)


def _snapshot(store: Store) -> tuple[str, dict[int, str], list[tuple]]:
    with store.read() as conn:
        job = conn.exec_driver_sql("SELECT status FROM job").scalar_one()
        tasks = dict(conn.exec_driver_sql("SELECT id, status FROM task").fetchall())
        evs = conn.exec_driver_sql(
            "SELECT task_id, from_status, to_status FROM event WHERE to_status IS NOT NULL "
            "ORDER BY id"
        ).fetchall()
    return job, tasks, [tuple(e) for e in evs]


def _check(store: Store, before: tuple[str, dict[int, str], list[tuple]]) -> None:
    job, tasks, evs = _snapshot(store)
    JobStatus(job)
    for s in tasks.values():
        TaskStatus(s)
    # Every recorded move is in the transition table.
    for task_id, src, dst in evs:
        table = TASK_TRANSITIONS[TaskStatus(src)] if task_id else JOB_TRANSITIONS[JobStatus(src)]
        assert dst in table, (task_id, src, dst)
    # A terminal status never changes again.
    if before[0] in JOB_TERMINAL:
        assert job == before[0]
    for tid, s in before[1].items():
        if s in TASK_TERMINAL:
            assert tasks[tid] == s, (tid, s, tasks[tid])
    counts: dict[str, int] = {}
    for s in tasks.values():
        counts[s] = counts.get(s, 0) + 1
    if job in JOB_TERMINAL:
        assert all(s in TASK_TERMINAL for s in tasks.values()), (job, tasks)
    if job in ("canceling", "canceled"):
        assert not any(s in TASK_NOT_STARTED for s in tasks.values()), (job, tasks)
    if job in ("waiting", "withhold"):
        assert not any(s in TASK_RUNNING or s in TASK_TERMINAL for s in tasks.values()), tasks
    # No started job is left unfinished when its tasks allow finishing it.
    if job in ("executing", "canceling"):
        assert job_status_after(job, counts) is None, (job, tasks)


def _apply(store: Store, step: tuple, ids: list[int], job_id: int, at: float) -> None:
    kind = step[0]
    if kind == "claim":
        with store.write() as conn:
            batch.claim(conn, {"s1": step[1]}, at=at)
    elif kind == "outcome":
        with store.write() as conn:
            batch.apply_outcomes(conn, [batch.Outcome(ids[step[1]], step[2], "m")], at=at)
    elif kind == "recover":
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE server SET lease_owner=NULL")
            batch.recover(conn, "other:2:def", at=at)
            batch.claim_leases(conn, {"s1": 4}, OWNER, at=time.time())
    else:
        fn = {
            "cancel": lambda: flows.cancel(store.transaction, job_id, actor="op"),
            "abort": lambda: abort_flow.abort(store.transaction, job_id, actor="op"),
            "enhanced": lambda: abort_flow.abort(
                store.transaction, job_id, actor="op", enhanced=True
            ),
            "hold": lambda: request_flows.hold(store.transaction, job_id, actor="op"),
            "release": lambda: request_flows.release(store.transaction, job_id, actor="op"),
        }[kind]
        before = _snapshot(store)
        try:
            fn()
        except Refusal:
            assert _snapshot(store) == before, f"{kind} refused but wrote"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deps=st.lists(st.booleans(), min_size=N_TASKS - 1, max_size=N_TASKS - 1),
    steps=st.lists(op, min_size=1, max_size=25),
)
def test_random_interleavings_keep_the_database_legal(deps, steps):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "race.db")
        try:
            tasks = tuple(
                TaskSpec(
                    f"t{i}", "wait", (f"t{i - 1}",) if i and deps[i - 1] else (), {"seconds": 1}
                )
                for i in range(N_TASKS)
            )
            at = 1_000.0
            with store.write() as conn:
                job_id = flows.insert_job(
                    flow_sql(conn),
                    Recipe("race", None, False, tasks, max_attempts=2),
                    actor="t",
                    at=at,
                )
                ids = [
                    r[0]
                    for r in conn.exec_driver_sql("SELECT id FROM task ORDER BY seq").fetchall()
                ]
                batch.claim_leases(conn, {"s1": 4}, OWNER, at=time.time())
            for step in steps:
                at += 1
                before = _snapshot(store)
                _apply(store, step, ids, job_id, at)
                _check(store, before)
        finally:
            store.dispose()
