"""A full disk (issue 21), made portably: SQLite's ``PRAGMA max_page_count`` on every
connection the engine writes with, the file's free pages and last pages used up first.
The engine runs in this process (its servers are real processes), so the pragma can be
put on its own connections; nothing is mocked.

The contract: one log line says the database is full and where; writing pauses, the
server rows tell the truth (a server whose process died does not say Online), nothing
is lost and nothing runs twice; when space returns the engine resumes on its own and
``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from engine.runtime.supervisor import Supervisor
from engine.store.db import Store
from tests.engine_support import submit_tasks, task_row, until
from tests.fault_support import sqlite_row, store_with_lease, wait_for_go
from tests.proc_support import pid_alive


def fill(path: Path, job: int) -> int:
    """Use up the file's free pages and the room left in the event table's last pages
    (where the next events go), under a cap of the file's size now; returns that cap."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")
        while True:
            try:
                conn.execute(
                    "INSERT INTO event(at, job_id, kind, actor, reason) "
                    "VALUES (?, ?, 'note', 'test', 'filler')",
                    (time.time(), job),
                )
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc), exc
                return pages
    finally:
        conn.close()


def server_row(path: Path) -> tuple[str, int | None, str | None]:
    return sqlite_row(path, "SELECT status, pid, note FROM server WHERE name='batch-01'")


async def test_a_full_disk_pauses_writing_says_so_once_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    runs, go = tmp_path / "runs", tmp_path / "go"
    store = store_with_lease(path, "1")
    tasks = [
        {
            "name": n,
            "action": "shell",
            "command": wait_for_go(n, runs, go),
        }
        for n in ("one", "two")
    ]
    job = submit_tasks(store, tmp_path, "full", tasks)
    lines: list[str] = []
    cap: dict[str, Any] = {"pages": None}

    def limit(dbapi_conn: Any, _record: Any) -> None:
        if cap["pages"] is not None:
            dbapi_conn.execute(f"PRAGMA max_page_count={cap['pages']}")

    async with Supervisor(str(path), {"batch-01": 2}, log=lines.append) as eng:
        for n in ("one", "two"):
            await until(lambda n=n: task_row(store, job, n)["status"] == "executing", n)
        await until(lambda: runs.exists() and len(runs.read_text().split()) == 2, "both started")
        event.listen(eng.store.writer, "connect", limit)
        cap["pages"] = fill(path, job)
        eng.store.writer.dispose()  # every connection from here on has the cap
        # The server process dies while the disk is full: its restart must wait for
        # space, and its row must not say Online meanwhile.
        pid = server_row(path)[1]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        full = await until(lambda: [x for x in lines if "the database is full" in x], "the line")
        assert str(path) in full[0] and "writing paused" in full[0]
        await until(lambda: server_row(path)[0] != "online", "the row to stop saying Online")
        assert not pid_alive(pid)
        note = await until(lambda: server_row(path)[2], "the row's note")
        assert note.startswith("cannot reach database since "), note
        # Space returns.
        cap["pages"] = None
        eng.store.writer.dispose()
        with sqlite3.connect(path) as c:
            c.execute("PRAGMA max_page_count=1073741823")
        await until(
            lambda: server_row(path)[0] == "online" and server_row(path)[1] not in (None, pid),
            "the server back Online with a new process",
        )
        for n in ("one", "two"):
            await until(lambda n=n: task_row(store, job, n)["attempt"] == 2, f"{n} again")
        go.touch()
        await until(
            lambda: all(task_row(store, job, n)["status"] == "ended" for n in ("one", "two")),
            "both ended",
        )
        await until(lambda: any("writable again" in x for x in lines), "the all-clear")
        await until(lambda: server_row(path)[2] is None, "the outage's note to go with it")
    assert len([x for x in lines if "the database is full" in x]) == 1, lines
    ran = runs.read_text().split()
    assert sorted(x for x in ran if x.startswith("end-")) == ["end-one", "end-two"], ran
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_an_engine_that_cannot_write_for_too_long_gives_up_and_says_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    runs, go = tmp_path / "runs", tmp_path / "go"
    store = Store(path)
    command = wait_for_go("one", runs, go)
    job = submit_tasks(
        store, tmp_path, "full", [{"name": "one", "action": "shell", "command": command}]
    )
    lines: list[str] = []
    cap: dict[str, Any] = {"pages": None}

    def limit(dbapi_conn: Any, _record: Any) -> None:
        if cap["pages"] is not None:
            dbapi_conn.execute(f"PRAGMA max_page_count={cap['pages']}")

    eng = Supervisor(str(path), {"batch-01": 1}, log=lines.append)
    eng.outage_limit = 1.0  # ten minutes for a service; a second here
    async with eng:
        await until(lambda: task_row(store, job, "one")["status"] == "executing", "one started")
        event.listen(eng.store.writer, "connect", limit)
        cap["pages"] = fill(path, job)
        eng.store.writer.dispose()
        pid = server_row(path)[1]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await until(lambda: eng.nothing_to_serve.is_set(), "the engine to give up")
        assert eng.given_up and "could not write to the database" in eng.given_up
        assert any(x.startswith("giving up: ") for x in lines), lines
        assert not eng.procs  # nothing started that it could not account for
        cap["pages"] = None
        eng.store.writer.dispose()
    assert not pid_alive(pid)


async def test_the_console_header_says_the_database_is_full_until_it_is_not(
    tmp_path: Path,
) -> None:
    from tests.tui_support import embedded

    path = tmp_path / "t.db"
    runs, go = tmp_path / "runs", tmp_path / "go"
    store = store_with_lease(path, "1")
    command = wait_for_go("one", runs, go)
    job = submit_tasks(
        store, tmp_path, "full", [{"name": "one", "action": "shell", "command": command}]
    )
    app, host = embedded(str(path), {"batch-01": 1})
    cap: dict[str, Any] = {"pages": None}

    def limit(dbapi_conn: Any, _record: Any) -> None:
        if cap["pages"] is not None:
            dbapi_conn.execute(f"PRAGMA max_page_count={cap['pages']}")

    async with app.run_test(size=(120, 30)) as pilot:
        await until(lambda: task_row(store, job, "one")["status"] == "executing", pilot=pilot)
        eng = host.engine
        event.listen(eng.store.writer, "connect", limit)
        cap["pages"] = fill(path, job)
        eng.store.writer.dispose()
        go.touch()  # its end must be written: the disk is full
        await until(lambda: "the database is full" in app.sub_title, "the header", pilot=pilot)
        cap["pages"] = None
        eng.store.writer.dispose()
        await until(lambda: task_row(store, job, "one")["status"] == "ended", pilot=pilot)
        await until(lambda: "full" not in app.sub_title, "the header to clear", pilot=pilot)
