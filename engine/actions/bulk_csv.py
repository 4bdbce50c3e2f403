"""`bulk_import_csv` and `bulk_export_csv`: move rows between a CSV file and a SQLite
database in chunks, each chunk a safe point for cancel.

The target database is the user's, not batchdeck's own: plain stdlib sqlite3. Work runs
on the event loop in small sub-batches with an ``await`` between them, so the loop stays
responsive and an abort (asyncio cancellation) can land inside a chunk.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.actions.base import Action, Param
from engine.context import ActionError, TaskCanceled, TaskContext

SUB_BATCH = 50
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Counting rows reads the whole file: let the loop breathe every so many rows.
_COUNT_YIELD = 5000


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


def _records(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    return (row for row in reader if row)  # blank lines are not rows


async def _count_rows(path: str, delimiter: str, key: str) -> int:
    """Data rows in the file, after checking its header (before touching the database)."""
    count = 0
    with _open_csv(path) as fh:
        rows = _records(csv.reader(fh, delimiter=delimiter))
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
        raise ActionError(f"{path}: key column {key!r} is not in the header "
                          f"(columns: {', '.join(header)})")
    return header


def _upsert_sql(table: str, header: list[str], key: str) -> str:
    cols = ", ".join(_quote(c) for c in header)
    marks = ", ".join("?" for _ in header)
    updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in header if c != key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return (f"INSERT INTO {_quote(table)} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT ({_quote(key)}) {action}")


async def run_import(ctx: TaskContext, file: str, database: str, table: str, key: str,
                     chunk_rows: int, delimiter: str, rows_per_second: float | None) -> str:
    try:
        return await _import(ctx, file, database, table, key, chunk_rows, delimiter,
                             rows_per_second)
    except csv.Error as exc:
        raise ActionError(f"{file}: not readable as CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ActionError(f"{file}: not UTF-8 text (byte {exc.start})") from None


async def _import(ctx: TaskContext, file: str, database: str, table: str, key: str,
                  chunk_rows: int, delimiter: str, rows_per_second: float | None) -> str:
    total = await _count_rows(file, delimiter, key)
    ctx.progress(0, total, "rows")
    try:
        conn = sqlite3.connect(database, timeout=10, isolation_level=None)
    except sqlite3.Error as exc:
        raise ActionError(f"{database}: cannot open: {exc}") from None
    done = 0
    try:
        with _open_csv(file) as fh:
            line_reader = csv.reader(fh, delimiter=delimiter)
            rows = _records(line_reader)
            header = _check_header(file, next(rows, None), key)
            width = len(header)
            cols = ", ".join(f"{_quote(c)} TEXT" for c in header)
            try:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {_quote(table)} "
                             f"({cols}, PRIMARY KEY ({_quote(key)}))")
                sql = _upsert_sql(table, header, key)
            except sqlite3.Error as exc:
                raise ActionError(f"{database}: table {table}: {exc}") from None
            ctx.log(f"importing {total:,} rows from {os.path.basename(file)} into {table}")
            while done < total:
                ctx.checkpoint(f"imported {done:,} of {total:,} rows")
                written = await _import_chunk(conn, rows, line_reader, sql, width, file,
                                              chunk_rows, rows_per_second)
                if not written:
                    break  # the file shrank since it was counted
                done += written
                ctx.progress(done)
                ctx.log(f"imported {done:,} of {total:,} rows")
    finally:
        conn.close()
    return f"imported {done:,} rows into {table}"


async def _import_chunk(conn: sqlite3.Connection, rows: Iterator[list[str]],
                        line_reader: Any, sql: str, width: int, file: str,
                        chunk_rows: int, rows_per_second: float | None) -> int:
    """Write one chunk in one transaction; returns the rows written (0 at end of file)."""
    written = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        while written < chunk_rows:
            batch: list[list[str | None]] = []
            for row in rows:
                if len(row) > width:
                    raise ActionError(f"{file}: line {line_reader.line_num}: {len(row)} fields, "
                                      f"the header has {width}")
                batch.append(row + [None] * (width - len(row)))
                if len(batch) >= min(SUB_BATCH, chunk_rows - written):
                    break
            if not batch:
                break
            try:
                conn.executemany(sql, batch)
            except sqlite3.Error as exc:
                raise ActionError(f"near line {line_reader.line_num} of {file}: {exc}") from None
            written += len(batch)
            await _pace(len(batch), rows_per_second)
        conn.execute("COMMIT")
    except BaseException:
        # An abort (CancelledError) or a bad row: this chunk's rows go, earlier chunks stay.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return written


async def run_export(ctx: TaskContext, database: str, query: str, file: str,
                     chunk_rows: int, rows_per_second: float | None) -> str:
    if not os.path.exists(database):
        raise ActionError(f"{database}: no such file")
    query = query.strip().rstrip(";").strip()
    partial = file + ".partial"
    try:
        # Read-only: an export must never change the database it reads.
        conn = sqlite3.connect(Path(database).as_uri() + "?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ActionError(f"{database}: cannot open: {exc}") from None
    try:
        try:
            total = conn.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
            cursor = conn.execute(query)
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
            writer.writerow([d[0] for d in cursor.description])
            in_chunk = 0
            while batch := cursor.fetchmany(SUB_BATCH):
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
                        raise TaskCanceled(f"exported {done:,} of {total:,} rows; "
                                           f"partial file kept at {partial}")
        os.replace(partial, file)
    finally:
        conn.close()
    ctx.progress(done, max(total, done))
    return f"exported {done:,} rows to {file}"


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


_THROTTLE = Param("rows_per_second", float, required=False, default=None, minimum=0.001)

IMPORT_ACTION = Action(
    name="bulk_import_csv",
    run=run_import,
    params=(
        Param("file", str, is_path=True),
        Param("database", str, is_path=True),
        Param("table", str),
        Param("key", str),
        Param("chunk_rows", int, required=False, default=500, minimum=1),
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
        Param("chunk_rows", int, required=False, default=500, minimum=1),
        _THROTTLE,
    ),
    long=True,
    doc="Write the rows of a query to a CSV file in chunks (via FILE.partial).",
    check=_check_export,
)
