"""Task logs: every line kept per task and attempt, bounded by log_max_bytes, read and
followed through ``batchdeck logs`` on SQLite and PostgreSQL. Real ``serve`` processes,
real shells, real database files; waits are for conditions, never for a time."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.core.logs import LogBuffer, cut_text, log_messages
from engine.flows import logs as log_reads
from engine.store.db import Store
from engine.store.flow_statements import flow_sql
from engine.store.log_store import LogItem, write_logs
from engine.store.models import SCHEMA_VERSION
from tests.pg_support import new_pg_database, pg_deck
from tests.proc_support import BATCHDECK, Deck, deck_in
from tests.test_store import _as_version, _job

# -- the buffer in a server process ------------------------------------------------------


def _lines_of(buf: LogBuffer, *, final: bool = True) -> list[tuple[str, str]]:
    chunks, _cut = buf.take(final=final)
    return [(c.stream, line) for c in chunks for line in c.text.split("\n")]


def test_the_buffer_keeps_streams_apart_and_cuts_whole_lines():
    buf = LogBuffer()
    buf.feed("out", b"one\ntw")
    buf.feed("err", b"oops\n")
    buf.feed("out", b"o\nthree")
    buf.line("log", "said")
    # In the order written; whole lines only until the stream ends: "three" waits.
    assert _lines_of(buf, final=False) == [
        ("out", "one"),
        ("err", "oops"),
        ("out", "two"),
        ("log", "said"),
    ]
    assert _lines_of(buf) == [("out", "three")]


def test_a_task_thread_feeding_while_the_server_takes_never_repeats_a_chunk() -> None:
    """A sync task logs from its own thread while the server's loop takes chunks to send:
    every chunk is sent once, each seq once (a repeated seq made the supervisor's log
    write fail for good, and the run's outcome wait for it). Threads switch every
    microsecond here, so that the two meet inside the buffer as a loaded machine has
    them do."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            buf = LogBuffer()
            sent: list[int] = []
            done = threading.Event()

            def task(buf: LogBuffer = buf, done: threading.Event = done) -> None:
                buf.feed("log", b"x" * 20_000_000)
                done.set()

            thread = threading.Thread(target=task)
            thread.start()
            while not done.is_set():
                sent.extend(c.seq for c in buf.take()[0])
            thread.join()
            sent.extend(c.seq for c in buf.take(final=True)[0])
            assert len(sent) == len(set(sent)), "a chunk was sent twice"
            assert sent == sorted(sent)
    finally:
        sys.setswitchinterval(interval)


def test_a_line_longer_than_a_chunk_is_split_on_a_character_boundary():
    buf = LogBuffer()
    text = ("é" * 10_000).encode()  # two bytes each: a cut at any byte could split one
    buf.feed("out", text + b"\n")
    chunks, _ = buf.take(final=True)
    assert len(chunks) > 1
    assert all(len(c.text.encode()) <= buf.chunk_bytes for c in chunks)
    assert "".join(c.text for c in chunks) == "é" * 10_000


def test_past_its_limit_the_buffer_keeps_the_first_and_last_parts_and_counts_the_rest():
    buf = LogBuffer(4096)
    total = b"".join(f"line {i}\n".encode() for i in range(1, 5001))
    for start in range(0, len(total), 1000):
        buf.feed("out", total[start : start + 1000])
    chunks, cut = buf.take(final=True)
    assert cut is not None
    seq, first_kept, dropped_bytes, dropped_lines = cut
    head = [c for c in chunks if c.seq < seq]
    tail = [c for c in chunks if c.seq >= first_kept]
    assert head and tail and len(head) + len(tail) == len(chunks)
    kept = [line for c in chunks for line in c.text.split("\n")]
    assert kept[0] == "line 1" and kept[-1] == "line 5000"
    # Nothing lost unaccounted: kept + dropped is every line and every byte.
    assert len(kept) + dropped_lines == 5000
    assert sum(c.size for c in chunks) + dropped_bytes == len(total)
    assert sum(c.size for c in chunks) <= 4096


def test_a_write_longer_than_the_tail_is_counted_not_cut():
    buf = LogBuffer(4096)
    total = b"".join(f"{i}\n".encode() for i in range(1, 200_001))
    for start in range(0, len(total), 65536):
        buf.feed("out", total[start : start + 65536])
    chunks, cut = buf.take(final=True)
    assert cut is not None
    kept = [line for c in chunks for line in c.text.split("\n")]
    assert kept[0] == "1" and kept[-1] == "200000"
    assert len(kept) + cut[3] == 200_000
    assert sum(c.size for c in chunks) + cut[2] == len(total)
    # The first lines and a run of the last ones, in order.
    assert kept[:10] == [str(n) for n in range(1, 11)]
    assert kept[-10:] == [str(n) for n in range(199_991, 200_001)]


def test_each_log_message_holds_one_chunk_and_the_cut_rides_on_the_last():
    buf = LogBuffer(4096)
    for i in range(3000):
        buf.line("out", f"{i:08d}")
    msgs = log_messages(7, *buf.take(final=True))
    assert all(len(json.dumps(m)) < 8192 for m in msgs)
    assert [m for m in msgs if "cut" in m] == [msgs[-1]]


# -- fencing and the schema ---------------------------------------------------------------


def test_chunks_written_again_are_skipped_not_refused(tmp_path: Path) -> None:
    """A batch tried again after its commit (the acknowledgement lost) adds nothing and
    fails nothing: the run's outcome never waits on a log write that cannot succeed."""
    store = Store(tmp_path / "t.db")
    job_id = _job(store, n=1)
    try:
        with store.write() as conn:
            tid = conn.exec_driver_sql("SELECT id FROM task").scalar_one()
            conn.exec_driver_sql("UPDATE task SET claim_token='run' WHERE id=?", (tid,))
        items = [LogItem(tid, job_id, 1, "run", [n, "out", 1, f"line {n}"]) for n in (1, 2)]
        for _ in range(2):
            with store.write() as conn:
                write_logs(conn, items, at=1.0)
        with store.read() as conn:
            rows = conn.exec_driver_sql("SELECT seq, text FROM task_log ORDER BY seq").all()
        assert [tuple(r) for r in rows] == [(1, "line 1"), (2, "line 2")]
    finally:
        store.dispose()


def test_chunks_of_a_run_that_lost_its_claim_are_not_written(tmp_path):
    store = Store(tmp_path / "t.db")
    job_id = _job(store, n=1)
    with store.write() as conn:
        tid = conn.exec_driver_sql("SELECT id FROM task").scalar_one()
        conn.exec_driver_sql("UPDATE task SET claim_token='now' WHERE id=?", (tid,))
        items = [
            LogItem(tid, job_id, 1, "before", [1, "out", 1, "stale"]),
            LogItem(tid, job_id, 1, "now", [2, "out", 1, "fresh"]),
        ]
        assert write_logs(conn, items, at=1.0) == 1
    with store.read() as conn:
        sql = flow_sql(conn)
        refs = log_reads.run_index(sql, tid, 1)
        assert list(log_reads.texts(sql, [r.id for r in refs]).values()) == ["fresh"]
    store.dispose()


def test_a_version_5_database_gets_the_log_table_from_a_writer(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    job_id = _job(store, n=2)
    store.dispose()
    _as_version(path, "5", "DROP TABLE task_log")
    with sqlite3.connect(path) as raw:
        indexes = raw.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'task_log'")
        assert {"ix_task_log_run", "ix_task_log_job"} <= {name for (name,) in indexes}
        assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        assert raw.execute("SELECT count(*) FROM task WHERE job_id = ?", (job_id,)).fetchone() == (
            2,
        )
        assert raw.execute("SELECT count(*) FROM task_log").fetchone() == (0,)


# -- through the engine and the command line ---------------------------------------------


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[Deck]:
    with deck_in(tmp_path) as d:
        yield d


def _shell(deck: Deck, name: str, script: str) -> int:
    recipe = deck.recipe(
        name,
        f'name = "{name}"\n[[task]]\nname = "t"\naction = "shell"\n'
        f"command = {json.dumps(['sh', '-c', script])}\n",
    )
    return deck.submit(recipe)


def test_a_million_numbered_lines_are_all_readable_in_order(deck: Deck) -> None:
    deck.serve()
    job = _shell(deck, "million", "seq 1 1000000; echo done >&2")
    deck.wait_job(job, "ended")
    lines = deck.ok("logs", str(job), "t").out.split("\n")
    assert lines[-1] == ""  # the last line ends with a newline
    numbers = [line for line in lines if line.isdigit()]
    assert numbers == [str(i) for i in range(1, 1_000_001)]  # in order, nothing twice
    assert lines[-2] == "done"
    # Each line marked with its stream.
    tail = [
        json.loads(x)
        for x in deck.ok("logs", str(job), "t", "--tail", "2", "--json").out.split("\n")
        if x
    ]
    assert [(x["stream"], x["text"]) for x in tail] == [("out", "1000000"), ("err", "done")]
    assert deck.ok("logs", str(job), "--tail", "1").out == "t | done\n"


def test_with_a_small_limit_the_first_and_last_lines_are_kept_with_the_dropped_count(
    deck: Deck,
) -> None:
    deck.ok("settings", "log_max_bytes", "4096")
    deck.serve()
    job = _shell(deck, "runaway", "seq 1 100000")
    deck.wait_job(job, "ended")
    lines = deck.ok("logs", str(job), "t").out.rstrip("\n").split("\n")
    cut = [line for line in lines if line.startswith("[... ")]
    assert len(cut) == 1
    assert lines[0].startswith("started pid ")  # the shell action's own log line
    numbers = [int(line) for line in lines if line.isdigit()]
    assert numbers[0] == 1 and numbers[-1] == 100000
    dropped_lines = int(cut[0].split()[1].replace(",", ""))
    assert len(numbers) + dropped_lines == 100000
    # Both parts are runs of consecutive lines, the cut line between them.
    at = lines.index(cut[0])
    assert [int(x) for x in lines[1:at]] == list(range(1, at))  # after "started pid"
    assert [int(x) for x in lines[at + 1 :]] == list(range(100001 - (len(lines) - at - 1), 100001))
    assert cut[0] == cut_text(int(cut[0].split("(")[1].split()[0].replace(",", "")), dropped_lines)


def test_control_characters_are_escaped_and_python_log_lines_kept(deck: Deck) -> None:
    deck.serve()
    job = _shell(deck, "colour", r"printf '\033[31mred\033[0m\n'")
    deck.wait_job(job, "ended")
    out = deck.ok("logs", str(job)).out
    assert "\x1b" not in out
    assert "t | \\x1b[31mred\\x1b[0m" in out
    recipe = deck.recipe(
        "py",
        'name = "py"\n[[task]]\nname = "p"\naction = "python"\n'
        'function = "tests.blocking_fn:log_three"\n',
    )
    job = deck.submit(recipe)
    deck.wait_job(job, "ended")
    assert deck.ok("logs", str(job), "p").out == "one\ntwo\nthree\n"


def test_bad_usage_is_one_line(deck: Deck) -> None:
    deck.serve()
    job = _shell(deck, "one", "echo hi")
    deck.wait_job(job, "ended")
    assert "no task 'nope'" in deck.refused("logs", str(job), "nope").err
    assert "does not exist" in deck.refused("logs", "999").err
    assert "--tail" in deck.refused("logs", str(job), "--tail", "-1", code=2).err
    assert "--attempt" in deck.refused("logs", str(job), "t", "--attempt", "0", code=2).err


def _follow_live(deck: Any) -> None:
    """``logs -f`` in a process of its own prints a line the moment the task writes it
    (the task then waits for us), and exits when the task ends."""
    go = deck.dir / "go"
    job = _shell(deck, "live", f"echo first; while [ ! -f {go} ]; do sleep 0.05; done; echo second")
    follower = subprocess.Popen(
        [*BATCHDECK, "logs", str(job), "t", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=deck.env,
        cwd=deck.dir,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().startswith("started pid ")  # the action's own
        assert follower.stdout.readline() == "first\n"  # while the task still runs
        assert deck.task_status(job, "t") == "executing"
        go.touch()
        assert follower.stdout.readline() == "second\n"
        assert follower.wait(60) == 0
        assert follower.stdout.read() == ""
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()


def test_logs_follow_prints_lines_as_they_come_and_exits_when_the_task_ends(deck: Deck) -> None:
    deck.serve()
    _follow_live(deck)


def test_a_log_is_followed_live_from_another_process_on_postgresql(
    tmp_path: Path, pg_server: Any
) -> None:
    d = pg_deck(tmp_path, new_pg_database(pg_server))
    try:
        d.serve("--server", "host-b:2")
        _follow_live(d)
    finally:
        d.close()
