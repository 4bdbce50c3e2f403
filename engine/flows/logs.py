"""Reading task logs (``engine.store.log_store`` writes them) over an ``Sql``: the command
line's light path or a store's ``reading()``. The statements are
``engine.store.log_statements``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.sql import keys


@dataclass(frozen=True)
class ChunkRef:
    """A chunk without its text: what a viewer needs to place it."""

    id: int
    task_id: int
    attempt: int
    seq: int
    stream: str
    lines: int


def attempts(sql: Any, task_id: int) -> list[int]:
    """The attempts of a task that have a log, in order. ``sql``: an ``engine.flows.base``
    Sql (the light path's or ``flow_sql(conn)``), here and below."""
    return [r.attempt for r in sql.rows(keys.LOGS_ATTEMPTS, {"task_id": task_id})]


def run_index(sql: Any, task_id: int, attempt: int, *, after_seq: int = 0) -> list[ChunkRef]:
    """The chunks of one attempt, in order (``after_seq``: only those after it)."""
    params = {"task_id": task_id, "attempt": attempt, "after": after_seq}
    return [ChunkRef(*r) for r in sql.rows(keys.LOGS_RUN, params)]


def job_index(
    sql: Any, job_id: int, *, after_id: int = 0, attempt: int | None = None
) -> list[ChunkRef]:
    """The chunks of every task of a job, in the order they were written."""
    if attempt is None:
        rows = sql.rows(keys.LOGS_JOB, {"job_id": job_id, "after": after_id})
    else:
        params = {"job_id": job_id, "after": after_id, "attempt": attempt}
        rows = sql.rows(keys.LOGS_JOB_ATTEMPT, params)
    return [ChunkRef(*r) for r in rows]


def run_tail_index(sql: Any, task_id: int, attempt: int, lines: int) -> list[ChunkRef]:
    """The last chunks of one attempt holding at least ``lines`` lines, in order: read
    backwards, a few at a time, so a million-line log costs a few rows."""
    out: list[ChunkRef] = []
    got, before, page = 0, 2**62, 16
    while got < lines:
        params = {"task_id": task_id, "attempt": attempt, "before": before, "n": page}
        rows = [ChunkRef(*r) for r in sql.rows(keys.LOGS_RUN_BACK, params)]
        if not rows:
            break
        for r in rows:
            out.append(r)
            got += r.lines
            if got >= lines:
                break
        before = rows[-1].seq
        page = min(page * 4, 1024)
    out.reverse()
    return out


def texts(sql: Any, ids: Iterable[int]) -> dict[int, str]:
    """The text of these chunks, by id."""
    wanted = list(ids)
    out: dict[int, str] = {}
    for start in range(0, len(wanted), 500):
        rows = sql.rows(keys.LOGS_TEXTS, {"ids": wanted[start : start + 500]})
        out.update({r.id: r.text for r in rows})
    return out


def job_status(sql: Any, job_id: int) -> str | None:
    rows = sql.rows(keys.LOGS_JOB_STATUS, {"job_id": job_id})
    return rows[0].status if rows else None


def task_refs(sql: Any, job_id: int) -> dict[int, tuple[str, str, int]]:
    """The tasks of a job: id -> (name, status, current attempt)."""
    return {
        r.id: (r.name, r.status, r.attempt) for r in sql.rows(keys.LOGS_TASKS, {"job_id": job_id})
    }
