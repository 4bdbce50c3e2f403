"""History that does not grow for ever: finished jobs older than a date deleted, with
their tasks, dependencies, events, stored recipes and logs.

In batches, each its own short write transaction: the batch size adapts so that one
transaction holds the write lock for about ``TARGET_HOLD_S`` (never much above ~100
ms), and a cancel, a tick or a console's write waits for one batch at most. Kept: a job
that a job staying behind still points to as its parent (the foreign key), and a job
that a live job points to as ``rerun_of``. One audit event counts what was deleted.

SQLite does not give the space back to the file system (``VACUUM`` does, see the
README); the freed pages are reused by new rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, select

from engine.core.statuses import JOB_TERMINAL
from engine.store.dialect import one_of
from engine.store.tables import event, job, job_recipe, task, task_log, taskdep
from engine.store.writes import add_event

TARGET_HOLD_S = 0.05
# Between two batches the write lock is left free this long. SQLite has no queue of
# writers: one waiting for the lock sleeps and looks again (up to 100 ms between looks
# once it has waited a while), so a prune taking the lock again at once could starve a
# cancel from another process for as long as it runs.
PAUSE_S = 0.1
FIRST_BATCH = 100
MAX_BATCH = 5000
DAY_S = 86400.0
EVERY_S = 3600.0  # the engine's prune, with keep_days set

_FINISHED = [str(s) for s in JOB_TERMINAL]


@dataclass
class PruneResult:
    cutoff: float
    jobs: int = 0
    tasks: int = 0
    events: int = 0
    logs: int = 0
    recipes: int = 0
    kept: int = 0  # finished before the cutoff, but pointed to by a job staying
    batches: int = 0
    longest_hold_s: float = 0.0
    seconds: float = 0.0
    holds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"pruned {self.jobs:,} jobs finished before {_day(self.cutoff)} "
            f"({self.tasks:,} tasks, {self.events:,} events, {self.logs:,} log chunks, "
            f"{self.recipes:,} stored recipes); kept {self.kept:,} that other jobs point to"
        )


def _day(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _old(cutoff: float) -> Any:
    return and_(
        one_of(job.c.status, _FINISHED),
        func.coalesce(job.c.ended_at, job.c.submitted_at) < cutoff,
    )


def candidates(conn: Connection, cutoff: float, below: int | None, limit: int) -> list[int]:
    """The next finished jobs older than ``cutoff``, newest id first (a child before
    its parent), below id ``below``."""
    q = select(job.c.id).where(_old(cutoff))
    if below is not None:
        q = q.where(job.c.id < below)
    return list(conn.execute(q.order_by(job.c.id.desc()).limit(limit)).scalars())


def count(conn: Connection, cutoff: float) -> int:
    return int(conn.execute(select(func.count()).select_from(job).where(_old(cutoff))).scalar())


def delete_batch(conn: Connection, ids: list[int], cutoff: float, result: PruneResult) -> None:
    """Delete these jobs (checked again in this transaction: still finished and old,
    pointed to by no job staying behind) and everything of theirs."""
    if not ids:
        return
    child = job.alias("child")
    rerun = job.alias("rerun")
    stay = conn.execute(
        select(job.c.id).where(
            job.c.id.in_(ids),
            ~_old(cutoff)
            | exists().where(child.c.parent_id == job.c.id, child.c.id.not_in(ids))
            | exists().where(rerun.c.rerun_of == job.c.id, ~one_of(rerun.c.status, _FINISHED)),
        )
    ).scalars()
    kept = set(stay)
    gone = [i for i in ids if i not in kept]
    result.kept += len(kept)
    if not gone:
        return
    # The jobs pointed to by a kept job must stay too (a kept child keeps its parent).
    while True:
        more = set(
            conn.execute(
                select(job.c.parent_id).where(job.c.id.in_(kept), job.c.parent_id.in_(gone))
            ).scalars()
        )
        if not more:
            break
        kept |= more
        result.kept += len(more)
        gone = [i for i in gone if i not in more]
    if not gone:
        return
    tasks = select(task.c.id).where(task.c.job_id.in_(gone)).scalar_subquery()
    result.logs += conn.execute(delete(task_log).where(task_log.c.job_id.in_(gone))).rowcount
    conn.execute(delete(taskdep).where(taskdep.c.task_id.in_(tasks)))
    result.events += conn.execute(delete(event).where(event.c.job_id.in_(gone))).rowcount
    result.recipes += conn.execute(delete(job_recipe).where(job_recipe.c.job_id.in_(gone))).rowcount
    result.tasks += conn.execute(delete(task).where(task.c.job_id.in_(gone))).rowcount
    result.jobs += conn.execute(delete(job).where(job.c.id.in_(sorted(gone)))).rowcount


Write = Callable[[Callable[[Connection], Any]], Any]


def steps(cutoff: float, *, dry_run: bool = False) -> Any:
    """The prune as a generator of transactions: each item yielded is ``(kind, fn)``
    with ``kind`` "read" or "write" and ``fn(conn)`` to run in one; the caller runs it
    (synchronously, or in an engine's writer thread) and sends the result back; or
    ``("pause", seconds)``: wait that long with the lock free. Ends returning the
    ``PruneResult``."""
    result = PruneResult(cutoff)
    started = time.monotonic()
    if dry_run:
        result.jobs = yield "read", lambda conn: count(conn, cutoff)
        result.seconds = time.monotonic() - started
        return result
    below: int | None = None
    size = FIRST_BATCH
    while True:
        ids = yield "read", lambda conn, b=below, n=size: candidates(conn, cutoff, b, n)
        if not ids:
            break
        began: list[float] = []

        def batch(conn: Connection, ids: list[int] = ids, began: list[float] = began) -> None:
            began.append(time.monotonic())  # the lock is ours from here (BEGIN IMMEDIATE)
            delete_batch(conn, ids, cutoff, result)

        yield "write", batch
        held = time.monotonic() - began[0]  # to the commit, included
        yield "pause", PAUSE_S
        result.holds.append(held)
        result.longest_hold_s = max(result.longest_hold_s, held)
        result.batches += 1
        below = min(ids)
        # Aim the next batch at the target hold (halved at once when over it).
        scale = TARGET_HOLD_S / max(held, 1e-4)
        size = max(10, min(MAX_BATCH, int(size * min(1.5, max(0.5, scale)))))
    result.seconds = time.monotonic() - started
    return result


def run_sync(store: Any, cutoff: float, *, actor: str, dry_run: bool = False) -> PruneResult:
    """The prune on a ``Store``, each batch its own transaction, then its audit event."""
    gen = steps(cutoff, dry_run=dry_run)
    reply: Any = None
    try:
        while True:
            kind, fn = gen.send(reply)
            reply = None
            if kind == "pause":
                time.sleep(fn)
            elif kind == "read":
                with store.read() as conn:
                    reply = fn(conn)
            else:
                with store.write() as conn:
                    reply = fn(conn)
    except StopIteration as done:
        result: PruneResult = done.value
    if not dry_run:
        with store.write() as conn:
            audit(conn, result, actor=actor)
    return result


def audit(conn: Connection, result: PruneResult, *, actor: str) -> None:
    add_event(conn, at=time.time(), actor=actor, kind="request", reason=result.summary())


def cutoff_of(*, before: str | None = None, older_than: str | None = None, now: float) -> float:
    """``--before 2026-01-31`` (local midnight, or a date and time) or ``--older-than
    30d`` (also ``12h``, ``90m``, a bare number of days) as UNIX seconds; ValueError
    with one line naming what is wrong."""
    import datetime as dt

    if before is not None:
        for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
            try:
                return dt.datetime.strptime(before, fmt).timestamp()
            except ValueError:
                continue
        raise ValueError(f"--before {before[:40]!r}: expected a date, YYYY-MM-DD[THH:MM[:SS]]")
    assert older_than is not None
    text = older_than.strip().lower()
    units = {"d": DAY_S, "h": 3600.0, "m": 60.0, "w": 7 * DAY_S}
    unit = units.get(text[-1:], None)
    digits = text[:-1] if unit is not None else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 6:
        raise ValueError(
            f"--older-than {older_than[:40]!r}: expected a number and a unit, e.g. 30d, 12h, 2w"
        )
    return now - int(digits) * (unit or DAY_S)


async def run_async(read: Any, write: Any, cutoff: float, *, actor: str) -> PruneResult:
    """``run_sync`` through an engine's writer thread: ``read(fn)``/``write(fn)`` await
    ``fn(conn)`` in a transaction; the engine's ticks run between the batches. Audited
    only when something was deleted (an hourly prune of nothing is not news)."""
    gen = steps(cutoff)
    reply: Any = None
    try:
        while True:
            kind, fn = gen.send(reply)
            if kind == "pause":
                import asyncio

                reply = await asyncio.sleep(fn)
            else:
                reply = await (read if kind == "read" else write)(fn)
    except StopIteration as done:
        result: PruneResult = done.value
    if result.jobs:
        await write(lambda conn: audit(conn, result, actor=actor))
    return result


async def hourly(
    read: Any, write: Any, *, clock: Callable[[], float], note: Callable[..., None]
) -> None:
    """The engine's prune: with the setting ``keep_days``, once at start and every
    ``EVERY_S`` after (the setting read each time)."""
    import asyncio

    from engine.store.engine_settings import keep_days

    while True:
        try:
            days = await read(keep_days)
            if days is not None:
                cutoff = clock() - days * DAY_S
                result = await run_async(read, write, cutoff, actor="engine")
                if result.jobs:
                    note(result.summary(), error=False)
        except Exception as exc:  # noqa: BLE001 - a locked database: next hour
            note(f"prune: {type(exc).__name__}: {exc}")
        await asyncio.sleep(EVERY_S)
