"""Built-in actions run standalone: real subprocesses, real SQLite files, real threads."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sqlite3
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.actions import ACTIONS, shell
from engine.actions.context import ActionError, TaskCanceled, TaskContext, run_in_daemon_thread
from engine.recipes import recipe_from_dict

# -- a context without an engine -----------------------------------------------------


class Hooks:
    """Just enough engine for one task: canned children, a settable approval."""

    def __init__(self, child_status: str = "ended") -> None:
        self.child_status = child_status
        self.children: list[tuple[str, str]] = []
        self.decision: asyncio.Future[tuple[str, str]] | None = None
        self.approval_abandoned = False
        self.on_dirty: Callable[[TaskContext], None] | None = None

    async def submit_child(self, ctx: TaskContext, recipe_path: str, mode: str) -> int:
        self.children.append((recipe_path, mode))
        return 100 + len(self.children)

    async def wait_job(self, job_id: int) -> str:
        await asyncio.sleep(0)
        return self.child_status

    async def wait_approval(self, ctx: TaskContext) -> tuple[str, str]:
        self.decision = asyncio.get_running_loop().create_future()
        try:
            return await self.decision
        except asyncio.CancelledError:
            self.approval_abandoned = True
            raise

    def note_dirty(self, ctx: TaskContext) -> None:
        if self.on_dirty is not None:
            self.on_dirty(ctx)


def make_ctx(hooks: Hooks | None = None, recipe_path: Path | None = None) -> TaskContext:
    return TaskContext(
        task_id=1,
        job_id=1,
        name="t",
        action="test",
        attempt=1,
        server="s1",
        recipe_path=str(recipe_path) if recipe_path else None,
        hooks=hooks or Hooks(),
        run_thread=run_in_daemon_thread,
    )


def params(action: str, base_dir: Path, **given: Any) -> dict[str, Any]:
    """Parameters as the engine gets them: validated, defaults filled, paths absolute."""
    recipe = recipe_from_dict(
        {"name": "t", "task": [{"name": "t", "action": action, **given}]}, "test", base_dir=base_dir
    )
    return recipe.tasks[0].params


async def run(action: str, ctx: TaskContext, base_dir: Path, **given: Any) -> str | None:
    return await ACTIONS[action].run(ctx, **params(action, base_dir, **given))


def start(action: str, ctx: TaskContext, base_dir: Path, **given: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(run(action, ctx, base_dir, **given))


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll until ``condition`` holds; the limit only stops a broken test from hanging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


# -- wait ------------------------------------------------------------------------------


async def test_wait_ends_with_progress_in_seconds(tmp_path: Path) -> None:
    ctx = make_ctx()
    assert await run("wait", ctx, tmp_path, seconds=0.1) == "waited 0.1 s"
    assert (ctx.progress_done, ctx.progress_total, ctx.progress_unit) == (0.1, 0.1, "s")


async def test_wait_stops_at_once_on_cancel(tmp_path: Path) -> None:
    ctx = make_ctx()
    task = start("wait", ctx, tmp_path, seconds=60)
    await until(lambda: ctx.progress_total == 60)  # it is waiting
    ctx.request_cancel()
    with pytest.raises(TaskCanceled, match=r"^waited [\d.]+ s of 60 s$"):
        await task
    assert ctx.progress_done < 60


async def test_wait_abort_is_plain_cancellation(tmp_path: Path) -> None:
    ctx = make_ctx()
    task = start("wait", ctx, tmp_path, seconds=60)
    await until(lambda: ctx.progress_total == 60)  # it is waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- shell -----------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie nobody has reaped yet counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_shell_captures_merged_output_and_ends(tmp_path: Path) -> None:
    ctx = make_ctx()
    result = await run(
        "shell", ctx, tmp_path, command=["sh", "-c", "echo one; echo two >&2; printf three"]
    )
    assert result == "three"
    assert ctx.output_tail == "one\ntwo\nthree"
    assert ctx.message == "three"


async def test_shell_keeps_only_the_tail(tmp_path: Path) -> None:
    ctx = make_ctx()
    await run(
        "shell",
        ctx,
        tmp_path,
        command=["sh", "-c", "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); done"],
    )
    assert ctx.output_tail is not None
    lines = ctx.output_tail.split("\n")
    assert lines == [f"line {i}" for i in range(80, 100)]
    long_ctx = make_ctx()
    await run(
        "shell", long_ctx, tmp_path, command=["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x"]
    )
    assert long_ctx.output_tail == "x" * 4000


async def test_shell_runs_in_the_recipe_directory_by_default(tmp_path: Path) -> None:
    ctx = make_ctx(recipe_path=tmp_path / "r.toml")
    here = await run("shell", ctx, tmp_path, command=["pwd"])
    assert here is not None and os.path.realpath(here) == os.path.realpath(tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    there = await run("shell", make_ctx(), tmp_path, command=["pwd"], cwd="sub")
    assert there is not None and os.path.realpath(there) == os.path.realpath(sub)


async def test_shell_non_zero_exit_is_an_error_with_the_last_line(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match=r"^exit status 3: boom$"):
        await run("shell", make_ctx(), tmp_path, command=["sh", "-c", "echo boom; exit 3"])


async def test_shell_missing_program_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="cannot run 'no-such-program-here'"):
        await run("shell", make_ctx(), tmp_path, command=["no-such-program-here"])


async def test_shell_terminate_on_cancel(tmp_path: Path) -> None:
    ctx = make_ctx()
    task = start("shell", ctx, tmp_path, command=["sh", "-c", "echo ready; sleep 30"])
    await until(lambda: ctx.message == "ready")
    ctx.request_cancel()
    with pytest.raises(TaskCanceled, match="^terminated by SIGTERM on cancel$"):
        await task


async def test_shell_that_exits_cleanly_on_sigterm_ends(tmp_path: Path) -> None:
    ctx = make_ctx()
    script = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    task = start("shell", ctx, tmp_path, command=["sh", "-c", script])
    await until(lambda: ctx.message == "ready")
    ctx.request_cancel()
    assert await task == "bye"


async def test_shell_finish_lets_the_command_run_to_its_end(tmp_path: Path) -> None:
    ctx = make_ctx()
    task = start(
        "shell",
        ctx,
        tmp_path,
        on_cancel="finish",
        command=["sh", "-c", "echo ready; sleep 0.2; echo finished"],
    )
    await until(lambda: ctx.message == "ready")
    ctx.request_cancel()
    assert await task == "finished"


async def test_shell_abort_kills_the_whole_process_group(tmp_path: Path) -> None:
    ctx = make_ctx()
    script = "sleep 300 & echo $! > child.pid; echo $$ > parent.pid; wait"
    task = start("shell", ctx, tmp_path, command=["sh", "-c", script], cwd=str(tmp_path))
    child_file, parent_file = tmp_path / "child.pid", tmp_path / "parent.pid"
    await until(
        lambda: (
            child_file.exists() and parent_file.exists() and parent_file.read_text().strip() != ""
        )
    )
    child, parent = int(child_file.read_text()), int(parent_file.read_text())
    assert alive(child) and alive(parent)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: not alive(child) and not alive(parent))


async def test_shell_reaping_after_sigkill_gives_up_and_leaves_the_pid_to_the_watcher(
    tmp_path: Path,
) -> None:
    # A process in uninterruptible sleep outlives SIGKILL; one never sent SIGKILL stands
    # in for it here.
    proc = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    waiter = asyncio.ensure_future(proc.wait())
    try:
        reaping = asyncio.ensure_future(shell._reap(proc, waiter, grace=0.3))
        await asyncio.sleep(0.05)
        reaping.cancel()  # a repeated abort does not cut the wait short, nor hang it
        await asyncio.sleep(0.05)
        reaping.cancel()
        assert await reaping is False
        assert proc.returncode is None and alive(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    # When it does exit, the loop's child watcher still collects it: no zombie left.
    assert await waiter == -signal.SIGKILL
    assert not alive(proc.pid)
    # And one that exits at once is reaped within the grace.
    proc = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    waiter = asyncio.ensure_future(proc.wait())
    os.killpg(proc.pid, signal.SIGKILL)
    assert await shell._reap(proc, waiter) is True
    assert proc.returncode == -signal.SIGKILL


# -- bulk_import_csv -------------------------------------------------------------------


def write_csv(path: Path, rows: int, suffix: str = "") -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "name", "score"])
        for i in range(rows):
            writer.writerow([i, f"lead {i}{suffix}", i % 7])


def count(db: Path, table: str = "leads") -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def import_args(**extra: Any) -> dict[str, Any]:
    return {"file": "leads.csv", "database": "target.db", "table": "leads", "key": "id", **extra}


async def test_bulk_import_upserts_every_row(tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", 1234)
    ctx = make_ctx()
    result = await run("bulk_import_csv", ctx, tmp_path, **import_args())
    assert result == "imported 1,234 rows into leads"
    assert (ctx.progress_done, ctx.progress_total, ctx.progress_unit) == (1234, 1234, "rows")
    assert count(tmp_path / "target.db") == 1234
    # A second run updates in place: upsert, not duplicate rows.
    write_csv(tmp_path / "leads.csv", 1234, suffix=" v2")
    await run("bulk_import_csv", make_ctx(), tmp_path, **import_args())
    assert count(tmp_path / "target.db") == 1234
    with sqlite3.connect(tmp_path / "target.db") as conn:
        assert conn.execute("SELECT name FROM leads WHERE id = '7'").fetchone() == ("lead 7 v2",)


async def test_bulk_import_cancel_stops_between_chunks_keeping_rows(tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", 1234)
    hooks = Hooks()
    # Cancel as soon as the first chunk is committed: the next safe point must stop.
    hooks.on_dirty = lambda ctx: ctx.progress_done >= 500 and ctx.request_cancel()
    ctx = make_ctx(hooks)
    with pytest.raises(TaskCanceled, match=r"^imported 500 of 1,234 rows$"):
        await run("bulk_import_csv", ctx, tmp_path, **import_args())
    assert count(tmp_path / "target.db") == 500


async def test_bulk_import_abort_mid_chunk_rolls_that_chunk_back(tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", 1000)
    hooks = Hooks()
    task: asyncio.Task[Any] | None = None

    def abort_after_first_chunk(ctx: TaskContext) -> None:
        # The abort lands at the next await: inside the second chunk, after its first
        # sub-batch has been written but before its commit.
        if ctx.progress_done >= 200 and task is not None:
            task.cancel()

    hooks.on_dirty = abort_after_first_chunk
    task = start("bulk_import_csv", make_ctx(hooks), tmp_path, **import_args(chunk_rows=200))
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = count(tmp_path / "target.db")
    assert rows == 200


async def test_bulk_import_abort_with_throttle_keeps_whole_chunks(tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", 2000)
    ctx = make_ctx()
    task = start(
        "bulk_import_csv", ctx, tmp_path, **import_args(chunk_rows=100, rows_per_second=2000)
    )
    await until(lambda: ctx.progress_done >= 100)  # the second chunk is under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = count(tmp_path / "target.db")
    assert rows % 100 == 0 and 100 <= rows < 2000


class Ticker:
    """A task that ticks every 10 ms while the event loop is free to run it."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def test_bulk_import_waits_for_a_locked_database_off_the_event_loop(tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", 300)
    holder = sqlite3.connect(tmp_path / "target.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer: nobody else reads or writes
    ticker = Ticker()
    try:
        ctx = make_ctx()
        task = start("bulk_import_csv", ctx, tmp_path, **import_args(chunk_rows=100))
        await until(lambda: ctx.progress_total is not None or task.done())  # rows counted
        before = ticker.ticks
        # The loop keeps running while the import waits for the lock: a blocked loop
        # would never tick.
        await until(lambda: ticker.ticks - before >= 5)
        assert not task.done()
        holder.execute("COMMIT")
        assert await task == "imported 300 rows into leads"
    finally:
        holder.close()
        await ticker.stop()
    assert count(tmp_path / "target.db") == 300


async def test_bulk_import_abort_while_waiting_for_a_lock(tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", 300)
    holder = sqlite3.connect(tmp_path / "target.db", isolation_level=None)
    holder.execute("CREATE TABLE leads (id TEXT, name TEXT, score TEXT, PRIMARY KEY (id))")
    holder.execute("BEGIN EXCLUSIVE")
    ticker = Ticker()
    try:
        ctx = make_ctx()
        task = start("bulk_import_csv", ctx, tmp_path, **import_args(chunk_rows=100))
        await until(lambda: ctx.progress_total is not None or task.done())
        before = ticker.ticks
        await until(lambda: ticker.ticks - before >= 5)  # it waits in steps for the lock
        assert not task.done()
        # Aborted while waiting for the other writer's lock: stopped, nothing written.
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        holder.close()
        await ticker.stop()
    assert count(tmp_path / "target.db") == 0


async def test_bulk_import_missing_file_and_missing_key_column(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="leads.csv: no such file"):
        await run("bulk_import_csv", make_ctx(), tmp_path, **import_args())
    write_csv(tmp_path / "leads.csv", 3)
    with pytest.raises(ActionError) as info:
        await run("bulk_import_csv", make_ctx(), tmp_path, **import_args(key="lead_id"))
    assert str(tmp_path / "leads.csv") in str(info.value)
    assert "'lead_id'" in str(info.value)


async def test_bulk_import_bad_csv_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("id,name\n1,a,extra\n")
    with pytest.raises(ActionError, match="line 2: 3 fields, the header has 2"):
        await run("bulk_import_csv", make_ctx(), tmp_path, **import_args())
    (tmp_path / "leads.csv").write_bytes(b"id,name\n1,\xff\n")
    with pytest.raises(ActionError, match="not UTF-8"):
        await run("bulk_import_csv", make_ctx(), tmp_path, **import_args())


async def test_bulk_import_semicolon_delimiter(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("id;name\n1;a\n2;b\n\n")
    result = await run("bulk_import_csv", make_ctx(), tmp_path, **import_args(delimiter=";"))
    assert result == "imported 2 rows into leads"


# -- bulk_export_csv -------------------------------------------------------------------


def make_db(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE leads (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO leads VALUES (?, ?)", [(i, f"n{i}") for i in range(rows)])
    conn.close()


async def test_bulk_export_writes_the_file(tmp_path: Path) -> None:
    make_db(tmp_path / "src.db", 1234)
    ctx = make_ctx()
    result = await run(
        "bulk_export_csv",
        ctx,
        tmp_path,
        database="src.db",
        query="SELECT id, name FROM leads ORDER BY id;",
        file="out.csv",
    )
    assert result == f"exported 1,234 rows to {tmp_path / 'out.csv'}"
    with (tmp_path / "out.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "name"]
    assert len(rows) == 1235 and rows[-1] == ["1233", "n1233"]
    assert not (tmp_path / "out.csv.partial").exists()
    assert (ctx.progress_done, ctx.progress_total) == (1234, 1234)


async def test_bulk_export_cancel_keeps_the_partial_file(tmp_path: Path) -> None:
    make_db(tmp_path / "src.db", 1234)
    hooks = Hooks()
    hooks.on_dirty = lambda ctx: ctx.progress_done >= 500 and ctx.request_cancel()
    partial = tmp_path / "out.csv.partial"
    with pytest.raises(TaskCanceled) as info:
        await run(
            "bulk_export_csv",
            make_ctx(hooks),
            tmp_path,
            database="src.db",
            query="SELECT * FROM leads",
            file="out.csv",
        )
    assert str(info.value) == f"exported 500 of 1,234 rows; partial file kept at {partial}"
    assert not (tmp_path / "out.csv").exists()
    assert len(partial.read_text().splitlines()) == 501


async def test_bulk_export_bad_query_is_an_error(tmp_path: Path) -> None:
    make_db(tmp_path / "src.db", 1)
    with pytest.raises(ActionError, match="query failed: no such table: nope"):
        await run(
            "bulk_export_csv",
            make_ctx(),
            tmp_path,
            database="src.db",
            query="SELECT * FROM nope",
            file="out.csv",
        )


# -- call_job --------------------------------------------------------------------------


async def test_call_job_async_and_sync(tmp_path: Path) -> None:
    (tmp_path / "child.toml").write_text('name = "c"\n[[task]]\nname = "a"\naction = "fail"\n')
    hooks = Hooks()
    assert (
        await run("call_job", make_ctx(hooks), tmp_path, recipe="child.toml", mode="async")
        == "started job 101 (async)"
    )
    ctx = make_ctx(hooks)
    assert await run("call_job", ctx, tmp_path, recipe="child.toml") == "job 102 Ended"
    assert hooks.children == [
        (str(tmp_path / "child.toml"), "async"),
        (str(tmp_path / "child.toml"), "sync"),
    ]
    assert ctx.child_job_id == 102
    # A later attempt of the same task waits for the child the first one started.
    assert await run("call_job", ctx, tmp_path, recipe="child.toml") == "job 102 Ended"
    assert len(hooks.children) == 2
    with pytest.raises(ActionError, match="^child job 101 error$"):
        await run("call_job", make_ctx(Hooks(child_status="error")), tmp_path, recipe="child.toml")


# -- approval --------------------------------------------------------------------------


async def test_approval_approve_reject_and_cancel(tmp_path: Path) -> None:
    hooks = Hooks()
    ctx = make_ctx(hooks)
    task = start("approval", ctx, tmp_path, prompt="load into production?")
    await until(lambda: hooks.decision is not None)
    assert ctx.message == "waiting for approval: load into production?"
    assert hooks.decision is not None
    hooks.decision.set_result(("approved", "alice"))
    assert await task == "approved by alice"

    hooks = Hooks()
    task = start("approval", make_ctx(hooks), tmp_path)
    await until(lambda: hooks.decision is not None)
    assert hooks.decision is not None
    hooks.decision.set_result(("rejected", "bob"))
    with pytest.raises(ActionError, match="^rejected by bob$"):
        await task

    hooks = Hooks()
    ctx = make_ctx(hooks)
    task = start("approval", ctx, tmp_path)
    await until(lambda: hooks.decision is not None)
    ctx.request_cancel()
    with pytest.raises(TaskCanceled, match="^canceled while waiting for approval$"):
        await task
    assert hooks.approval_abandoned


# -- python ----------------------------------------------------------------------------

MODULE = """
import asyncio
import time


async def go_async(ctx, n, label):
    for i in range(n):
        ctx.checkpoint(f"did {i} of {n}")
        ctx.progress(i + 1, n, "items")
        await asyncio.sleep(0.01)
    return f"{label}: {n} items"


def go_sync(ctx, n, label="sync"):
    for i in range(n):
        ctx.checkpoint(f"did {i} of {n}")
        ctx.progress(i + 1, n, "items")
        time.sleep(0.01)
    return f"{label}: {n} items"
"""


@pytest.fixture
def module_name(tmp_path: Path) -> Iterator[str]:
    """A module beside the recipe file, with a fresh name so no test sees another's."""
    name = f"bd_helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    yield name
    sys.modules.pop(name, None)


async def test_python_async_function_with_kwargs(tmp_path: Path, module_name: str) -> None:
    ctx = make_ctx(recipe_path=tmp_path / "r.toml")
    path_before = list(sys.path)
    result = await run(
        "python", ctx, tmp_path, function=f"{module_name}:go_async", n=3, label="done"
    )
    assert result == "done: 3 items"
    assert (ctx.progress_done, ctx.progress_total, ctx.progress_unit) == (3, 3, "items")
    assert sys.path == path_before


async def test_python_sync_function_runs_in_a_thread(tmp_path: Path, module_name: str) -> None:
    ctx = make_ctx(recipe_path=tmp_path / "r.toml")
    assert (
        await run("python", ctx, tmp_path, function=f"{module_name}:go_sync", n=2)
        == "sync: 2 items"
    )


@pytest.mark.parametrize("function", ["go_async", "go_sync"])
async def test_python_cancel_through_checkpoint(
    tmp_path: Path, module_name: str, function: str
) -> None:
    ctx = make_ctx(recipe_path=tmp_path / "r.toml")
    task = start(
        "python", ctx, tmp_path, function=f"{module_name}:{function}", n=100_000, label="x"
    )
    await until(lambda: ctx.progress_done >= 2)
    ctx.request_cancel()
    with pytest.raises(TaskCanceled, match=r"^did \d+ of 100000$"):
        await task


async def test_python_unknown_module_or_function(tmp_path: Path, module_name: str) -> None:
    ctx = make_ctx(recipe_path=tmp_path / "r.toml")
    with pytest.raises(ActionError, match="cannot import module 'bd_no_such_module'"):
        await run("python", ctx, tmp_path, function="bd_no_such_module:f")
    with pytest.raises(ActionError, match="has no 'nope'"):
        await run("python", ctx, tmp_path, function=f"{module_name}:nope")


async def test_python_modules_of_the_same_name_beside_two_recipes_stay_apart(
    tmp_path: Path,
) -> None:
    for name in ("north", "south"):
        folder = tmp_path / name
        (folder / "pkg").mkdir(parents=True)
        (folder / "helpers.py").write_text(
            "import common\n\ndef where(ctx):\n    return common.NAME + ' helpers'\n"
        )
        (folder / "common.py").write_text(f"NAME = {name!r}\n")
        (folder / "pkg" / "__init__.py").write_text("")
        (folder / "pkg" / "jobs.py").write_text(
            "from . import names\n\nasync def where(ctx):\n    return names.NAME\n"
        )
        (folder / "pkg" / "names.py").write_text(f"NAME = {name + ' pkg'!r}\n")
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    results = []
    for _ in range(2):  # the second time from the cache
        for name in ("north", "south"):
            ctx = make_ctx(recipe_path=tmp_path / name / "r.toml")
            results.append(await run("python", ctx, tmp_path / name, function="helpers:where"))
            results.append(await run("python", ctx, tmp_path / name, function="pkg.jobs:where"))
    assert results == ["north helpers", "north pkg", "south helpers", "south pkg"] * 2
    assert sys.path == path_before
    assert "helpers" not in sys.modules and "pkg" not in sys.modules
    for added in set(sys.modules) - modules_before:
        if added != "common":  # a neighbour imported by name, as any import would
            assert added.startswith("_batchdeck_recipe_"), added


async def test_python_installed_module_still_imports_by_name(tmp_path: Path) -> None:
    ctx = make_ctx(recipe_path=tmp_path / "r.toml")
    with pytest.raises(ActionError, match="has no 'nope'"):
        await run("python", ctx, tmp_path, function="tests.blocking_fn:nope")
    assert "tests.blocking_fn" in sys.modules


# -- fail and blocking_wait ------------------------------------------------------------


async def test_fail(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="^failed on purpose$"):
        await run("fail", make_ctx(), tmp_path)
    with pytest.raises(ActionError, match="^bad data$"):
        await run("fail", make_ctx(), tmp_path, message="bad data", delay=0.01)


async def test_blocking_wait_ends(tmp_path: Path) -> None:
    assert await run("blocking_wait", make_ctx(), tmp_path, seconds=0.05) == "blocked 0.05 s"


async def test_blocking_wait_abort_waits_for_the_block_to_return(tmp_path: Path) -> None:
    ctx = make_ctx()
    task = start("blocking_wait", ctx, tmp_path, seconds=0.5)
    await until(lambda: ctx.in_unmanaged_wait)
    task.cancel()
    await until(lambda: ctx.aborting)
    # Still inside the unmanaged wait: shown as Aborting, not finished.
    assert not task.done() and ctx.in_unmanaged_wait
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not ctx.in_unmanaged_wait


def test_every_action_documents_itself() -> None:
    for action in ACTIONS.values():
        assert action.doc
    assert {name for name, a in ACTIONS.items() if a.long} >= {
        "wait",
        "bulk_import_csv",
        "bulk_export_csv",
        "approval",
        "python",
    }
    assert not ACTIONS["call_job"].long and not ACTIONS["blocking_wait"].long
