"""`bulk_import_csv` and `bulk_export_csv`: move rows between a CSV file and a SQLite
database in chunks, each chunk a safe point for cancel.

The target database is the user's, not batchdeck's own: plain stdlib sqlite3. Every
sqlite3 call runs on a thread of the run's own (a lock wait must never stall the event
loop the console and the engine's heartbeat share), in small sub-batches with an
``await`` between them, so an abort (asyncio cancellation) can land inside a chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from engine.actions.base import MAX_CHUNK_ROWS, Action, Param
from engine.actions.context import ActionError, TaskCanceled, TaskContext

SUB_BATCH = 50
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Counting rows reads the whole file: let the loop breathe every so many rows.
_COUNT_YIELD = 5000
# How long a statement waits for another connection's lock before it fails.
_BUSY_TIMEOUT = 10.0
# Taking the write lock waits in steps this long, so an abort need not outlast the lock.
_LOCK_STEP_MS = 200

R = TypeVar("R")


class _Db:
    """A run's sqlite3 connection and the one thread it lives on.

    A sqlite3 call may block for the whole busy timeout (another process holds the
    lock), so none runs on the event loop; and a connection must stay on the thread that
    opened it, hence a single-thread executor per run, shut down by ``close``.
    """

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="batchdeck-sqlite")
        self.conn: sqlite3.Connection | None = None

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        def opener() -> None:
            self.conn = connect()

        await self.call(opener)

    async def call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on the connection's thread; an abort interrupts its statement."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except asyncio.CancelledError:
            # A long query stops at once (a write inside a transaction is rolled back
            # by SQLite); a statement not yet started never runs.
            if self.conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.interrupt()
            raise

    async def settle(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (a rollback, a close) to its end even through an abort.

        It queues behind whatever the thread is still doing; an abort that arrives
        meanwhile is raised once it is done. Only a restart that gave up on the run
        (``ctx.abandoned``) leaves it to finish alone.
        """
        fut = asyncio.get_running_loop().run_in_executor(self._pool, fn)
        canceled = False
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                if self._ctx.abandoned:
                    raise
                canceled = True
            except Exception:  # noqa: BLE001 - best effort: the abort or error under way wins
                pass
        if canceled:
            raise asyncio.CancelledError

    async def rollback(self) -> None:
        def undo() -> None:
            if self.conn is not None and self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")

        await self.settle(undo)

    async def close(self) -> None:
        def shut() -> None:
            if self.conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.close()

        try:
            await self.settle(shut)
        finally:
            self._pool.shutdown(wait=False)

    async def take_lock(self, sql: str) -> None:
        """Run ``sql``, which takes the write lock, waiting for another writer in steps.

        One long busy wait inside SQLite cannot be interrupted; short ones with an
        ``await`` between them let an abort through within a step.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_TIMEOUT
        while True:
            try:
                await self.call(self._briefly, sql)
                return
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF
                if (
                    code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                    or loop.time() >= deadline
                ):
                    raise

    def _briefly(self, sql: str) -> None:
        assert self.conn is not None
        self.conn.execute(f"PRAGMA busy_timeout = {_LOCK_STEP_MS}")
        try:
            self.conn.execute(sql)
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT * 1000)}")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        """On the connection's thread only (through ``call``)."""
        assert self.conn is not None
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, rows: list[list[str | None]]) -> None:
        """On the connection's thread only (through ``call``)."""
        assert self.conn is not None
        self.conn.executemany(sql, rows)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _pace(rows: int, rows_per_second: float | None) -> None:
    await asyncio.sleep(rows / rows_per_second if rows_per_second else 0)


def _open_csv(path: str) -> Any:
    try:
        # utf-8-sig: spreadsheets often write a BOM that would glue onto the first column.
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise ActionError(f"{path}: no such file") from None
    except OSError as exc:
        raise ActionError(f"{path}: {exc.strerror or exc}") from None


def _csv_reader(fh: Any, delimiter: str) -> Any:
    # strict: a stray quote inside a field, or a quote never closed, is an error; without
    # it an unterminated quote swallows the rest of the file into one mangled row.
    return csv.reader(fh, delimiter=delimiter, strict=True)


def _records(reader: Any, path: str) -> Iterator[list[str]]:
    """The rows of a CSV reader (blank lines are not rows); a malformed one raises
    ActionError naming the line where that record starts."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise ActionError(
                    f"{path}: line {start}: a quoted field is never closed (unterminated quote)"
                ) from None
            raise ActionError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None
        if row:
            yield row


async def _count_rows(path: str, delimiter: str, key: str) -> int:
    """Data rows in the file, after checking its header (before touching the database)."""
    count = 0
    with _open_csv(path) as fh:
        rows = _records(_csv_reader(fh, delimiter), path)
        _check_header(path, next(rows, None), key)
        for _ in rows:
            count += 1
            if count % _COUNT_YIELD == 0:
                await asyncio.sleep(0)
    return count


def _check_header(path: str, header: list[str] | None, key: str) -> list[str]:
    if not header:
        raise ActionError(f"{path}: empty file, no header row")
    header = [name.strip() for name in header]
    if "" in header:
        raise ActionError(f"{path}: header column {header.index('') + 1} has no name")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ActionError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)
    if key not in header:
        raise ActionError(
            f"{path}: key column {key!r} is not in the header (columns: {', '.join(header)})"
        )
    return header


def _upsert_sql(table: str, header: list[str], key: str) -> str:
    cols = ", ".join(_quote(c) for c in header)
    marks = ", ".join("?" for _ in header)
    updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in header if c != key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return (
        f"INSERT INTO {_quote(table)} ({cols}) VALUES ({marks}) "
        f"ON CONFLICT ({_quote(key)}) {action}"
    )


async def run_import(
    ctx: TaskContext,
    file: str,
    database: str,
    table: str,
    key: str,
    chunk_rows: int,
    delimiter: str,
    rows_per_second: float | None,
) -> str:
    try:
        return await _import(
            ctx, file, database, table, key, chunk_rows, delimiter, rows_per_second
        )
    except csv.Error as exc:
        raise ActionError(f"{file}: not readable as CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ActionError(f"{file}: not UTF-8 text (byte {exc.start})") from None


async def _import(
    ctx: TaskContext,
    file: str,
    database: str,
    table: str,
    key: str,
    chunk_rows: int,
    delimiter: str,
    rows_per_second: float | None,
) -> str:
    total = await _count_rows(file, delimiter, key)
    ctx.progress(0, total, "rows")
    db = _Db(ctx)
    done = 0
    try:
        try:
            await db.open(
                lambda: sqlite3.connect(database, timeout=_BUSY_TIMEOUT, isolation_level=None)
            )
        except sqlite3.Error as exc:
            raise ActionError(f"{database}: cannot open: {exc}") from None
        with _open_csv(file) as fh:
            line_reader = _csv_reader(fh, delimiter)
            rows = _records(line_reader, file)
            header = _check_header(file, next(rows, None), key)
            width = len(header)
            cols = ", ".join(f"{_quote(c)} TEXT" for c in header)
            try:
                await db.take_lock(
                    f"CREATE TABLE IF NOT EXISTS {_quote(table)} "
                    f"({cols}, PRIMARY KEY ({_quote(key)}))"
                )
            except sqlite3.Error as exc:
                raise ActionError(f"{database}: table {table}: {exc}") from None
            sql = _upsert_sql(table, header, key)
            ctx.log(f"importing {total:,} rows from {os.path.basename(file)} into {table}")
            while done < total:
                ctx.checkpoint(f"imported {done:,} of {total:,} rows")
                written = await _import_chunk(
                    db, rows, line_reader, sql, width, file, database, chunk_rows, rows_per_second
                )
                if not written:
                    break  # the file shrank since it was counted
                done += written
                ctx.progress(done)
                ctx.log(f"imported {done:,} of {total:,} rows")
    finally:
        await db.close()
    return f"imported {done:,} rows into {table}"


async def _import_chunk(
    db: _Db,
    rows: Iterator[list[str]],
    line_reader: Any,
    sql: str,
    width: int,
    file: str,
    database: str,
    chunk_rows: int,
    rows_per_second: float | None,
) -> int:
    """Write one chunk in one transaction; returns the rows written (0 at end of file)."""
    written = 0
    try:
        try:
            await db.take_lock("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise ActionError(f"{database}: {exc}") from None
        while written < chunk_rows:
            batch: list[list[str | None]] = []
            for row in rows:
                if len(row) > width:
                    raise ActionError(
                        f"{file}: line {line_reader.line_num}: {len(row)} fields, "
                        f"the header has {width}"
                    )
                batch.append(row + [None] * (width - len(row)))
                if len(batch) >= min(SUB_BATCH, chunk_rows - written):
                    break
            if not batch:
                break
            try:
                await db.call(db.executemany, sql, batch)
            except sqlite3.Error as exc:
                raise ActionError(f"near line {line_reader.line_num} of {file}: {exc}") from None
            written += len(batch)
            await _pace(len(batch), rows_per_second)
        try:
            await db.call(db.execute, "COMMIT")
        except sqlite3.Error as exc:
            raise ActionError(f"{database}: {exc}") from None
    except BaseException:
        # An abort (CancelledError) or a bad row: this chunk's rows go, earlier chunks stay.
        # The rollback queues behind the statement the thread may still be running.
        await db.rollback()
        raise
    return written


async def run_export(
    ctx: TaskContext,
    database: str,
    query: str,
    file: str,
    chunk_rows: int,
    rows_per_second: float | None,
) -> str:
    if not os.path.exists(database):
        raise ActionError(f"{database}: no such file")
    query = query.strip().rstrip(";").strip()
    partial = file + ".partial"
    db = _Db(ctx)
    try:
        try:
            # Read-only: an export must never change the database it reads.
            await db.open(
                lambda: sqlite3.connect(
                    Path(database).as_uri() + "?mode=ro", uri=True, timeout=_BUSY_TIMEOUT
                )
            )
        except sqlite3.Error as exc:
            raise ActionError(f"{database}: cannot open: {exc}") from None
        try:
            total, cursor, columns = await db.call(_start_query, db, query)
        except sqlite3.Error as exc:
            raise ActionError(f"query failed: {exc}") from None
        ctx.progress(0, total, "rows")
        ctx.log(f"exporting {total:,} rows to {os.path.basename(file)}")
        try:
            fh = open(partial, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise ActionError(f"{partial}: {exc.strerror or exc}") from None
        done = 0
        with fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            in_chunk = 0
            while batch := await db.call(cursor.fetchmany, SUB_BATCH):
                writer.writerows(batch)
                done += len(batch)
                in_chunk += len(batch)
                await _pace(len(batch), rows_per_second)
                if in_chunk >= chunk_rows:
                    in_chunk = 0
                    fh.flush()
                    ctx.progress(done)
                    ctx.log(f"exported {done:,} of {total:,} rows")
                    if ctx.cancel_requested and done < total:
                        raise TaskCanceled(
                            f"exported {done:,} of {total:,} rows; partial file kept at {partial}"
                        )
        os.replace(partial, file)
    finally:
        await db.close()
    ctx.progress(done, max(total, done))
    return f"exported {done:,} rows to {file}"


def _start_query(db: _Db, query: str) -> tuple[int, sqlite3.Cursor, list[str]]:
    """On the connection's thread: the row count, then the query's cursor and columns."""
    total = db.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
    cursor = db.execute(query)
    return total, cursor, [d[0] for d in cursor.description]


def _check_import(params: dict[str, Any]) -> tuple[str, str] | None:
    if not _IDENTIFIER.match(params["table"]):
        return "table", f"not a plain identifier: {params['table']!r}"
    if not params["key"].strip():
        return "key", "must not be empty"
    if len(params["delimiter"]) != 1:
        return "delimiter", f"must be one character, got {params['delimiter']!r}"
    return None


def _check_export(params: dict[str, Any]) -> tuple[str, str] | None:
    first = params["query"].lstrip().split(None, 1)[:1]
    if not first or first[0].lower() not in ("select", "with", "values"):
        return "query", "must be a SELECT query"
    return None


_THROTTLE = Param(
    "rows_per_second", float, required=False, default=None, minimum=0.001, maximum=1e9
)

IMPORT_ACTION = Action(
    name="bulk_import_csv",
    run=run_import,
    params=(
        Param("file", str, is_path=True),
        Param("database", str, is_path=True),
        Param("table", str),
        Param("key", str),
        Param("chunk_rows", int, required=False, default=500, minimum=1, maximum=MAX_CHUNK_ROWS),
        Param("delimiter", str, required=False, default=","),
        _THROTTLE,
    ),
    long=True,
    doc="Upsert the rows of a CSV file into a SQLite table, one transaction per chunk.",
    check=_check_import,
)

EXPORT_ACTION = Action(
    name="bulk_export_csv",
    run=run_export,
    params=(
        Param("database", str, is_path=True),
        Param("query", str),
        Param("file", str, is_path=True),
        Param("chunk_rows", int, required=False, default=500, minimum=1, maximum=MAX_CHUNK_ROWS),
        _THROTTLE,
    ),
    long=True,
    doc="Write the rows of a query to a CSV file in chunks (via FILE.partial).",
    check=_check_export,
)
