"""Task logs in the database: the supervisor's writes (fenced, in batches) and the reads
of ``batchdeck logs`` and the console's log screen, on SQLite and PostgreSQL alike.

A log is a sequence of chunks (``engine.store.models.TaskLog``), written by the supervisor
from the ``log`` messages of its server processes (``engine.core.logs``). A chunk is written
only while the run that wrote it still holds its task's claim: the token is checked in
the transaction that inserts it, as for every other write about a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select

from engine.core.logs import cut_text
from engine.flows.logs import ChunkRef
from engine.store.dialect import insert_new
from engine.store.tables import task, task_log


@dataclass
class LogItem:
    """One ``log`` message of a run: a chunk, or the cut (or both)."""

    task_id: int
    job_id: int
    attempt: int
    token: str
    chunk: list[Any] | None = None  # [seq, stream, lines, text]
    cut: list[int] | None = None  # [seq, first kept seq, bytes dropped, lines dropped]

    @property
    def size(self) -> int:
        return len(self.chunk[3]) if self.chunk else 64


class LogQueue:
    """What the servers said for the logs and is not written yet, in arrival order."""

    def __init__(self) -> None:
        self.items: list[LogItem] = []
        self.bytes = 0
        self._per_task: dict[int, int] = {}

    def _count(self, items: Iterable[LogItem], sign: int) -> None:
        for i in items:
            n = self._per_task.get(i.task_id, 0) + sign
            if n:
                self._per_task[i.task_id] = n
            else:
                self._per_task.pop(i.task_id, None)
            self.bytes += sign * i.size

    def add(self, item: LogItem) -> None:
        self.items.append(item)
        self._count([item], 1)

    def waiting_for(self, task_id: int) -> bool:
        """Whether lines of this task's run are still to be written."""
        return task_id in self._per_task

    def take(self, max_bytes: int) -> list[LogItem]:
        """The oldest items, about ``max_bytes`` of them (at least one)."""
        n, size = 0, 0
        for n, item in enumerate(self.items, 1):  # noqa: B007 - n is the count taken
            size += item.size
            if size >= max_bytes:
                break
        out, self.items = self.items[:n], self.items[n:]
        self._count(out, -1)
        return out

    def put_back(self, items: list[LogItem]) -> None:
        """Items whose write failed, first again."""
        self.items[:0] = items
        self._count(items, 1)


def write_logs(conn: Connection, items: list[LogItem], *, at: float) -> int:
    """Insert the chunks of runs that still hold their claim, and apply their cuts (the
    chunks that fell out of a ring deleted, the cut line rewritten). Returns the chunks
    written. PostgreSQL: the task rows are locked (FOR SHARE) so no recovery can take a
    claim over between the check and the insert."""
    if not items:
        return 0
    pairs = {(i.task_id, i.token) for i in items}
    held = {
        (r.id, r.claim_token)
        for r in conn.execute(
            select(task.c.id, task.c.claim_token)
            .where(task.c.id.in_({tid for tid, _ in pairs}))
            .with_for_update(read=True)
        )
    }
    rows: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        nonlocal rows, written
        if rows:
            conn.execute(insert_new(conn, task_log), rows)
            written += len(rows)
            rows = []

    for i in items:
        if (i.task_id, i.token) not in held:
            continue
        if i.chunk is not None:
            seq, stream, lines, text = i.chunk
            rows.append(
                {
                    "job_id": i.job_id,
                    "task_id": i.task_id,
                    "attempt": i.attempt,
                    "seq": seq,
                    "stream": stream,
                    "lines": lines,
                    "at": at,
                    "text": text,
                }
            )
        if i.cut is not None:
            flush()  # the chunks before the cut are in before it deletes any
            seq, first_kept, dropped_bytes, dropped_lines = i.cut
            run = and_(task_log.c.task_id == i.task_id, task_log.c.attempt == i.attempt)
            conn.execute(
                delete(task_log).where(run, task_log.c.seq >= seq, task_log.c.seq < first_kept)
            )
            rows.append(
                {
                    "job_id": i.job_id,
                    "task_id": i.task_id,
                    "attempt": i.attempt,
                    "seq": seq,
                    "stream": "cut",
                    "lines": 1,
                    "at": at,
                    "text": cut_text(dropped_bytes, dropped_lines),
                }
            )
            flush()
    flush()
    return written


def find(
    conn: Connection, refs: list[ChunkRef], start: int, needle: str, *, backwards: bool = False
) -> int | None:
    """The position in ``refs`` of the first chunk from ``start`` (going forward, or
    backward) whose text holds ``needle`` (any case), searched in the database."""
    if not refs or not needle:
        return None
    pos = {r.id: n for n, r in enumerate(refs)}
    ids = [r.id for r in (refs[: start + 1] if backwards else refs[start:])]
    best: int | None = None
    for begin in range(0, len(ids), 500):
        part = ids[begin : begin + 500]
        q = select(task_log.c.id).where(
            task_log.c.id.in_(part),
            func.lower(task_log.c.text).contains(needle.lower(), autoescape=True),
        )
        for found in conn.execute(q).scalars():
            n = pos[found]
            if best is None or (n > best if backwards else n < best):
                best = n
    return best
