"""The asyncio engine: runs tasks on named servers and reacts to what the database says.

Every running task is owned by the engine (one asyncio task each, kept in
``_runners``); stopping the engine cancels and awaits them. All database work
happens in one writer thread (``_db``) in batches (``engine.batch.tick``); the loop
wakes when a task finishes, when progress is pending, or when another connection
commits (``PRAGMA data_version``), so a cancel written by another process is acted
on within one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine import batch, settings
from engine.actions import get_action
from engine.context import ActionError, TaskCanceled, TaskContext, run_in_daemon_thread
from engine.db import Store
from engine.identity import current_actor
from engine.statuses import JOB_TERMINAL
from engine.watch import DataVersionWatch

R = TypeVar("R")

DEFAULT_SERVERS = {"batch-01": 4}
PROGRESS_FLUSH_S = 0.1
DRAIN_CHECK_S = 0.2
MAX_CALL_DEPTH = 20
RESTART_GRACE_S = 2.0


@dataclass
class Runner:
    ctx: TaskContext
    server: str
    task: asyncio.Task[Any] | None = None
    cancel_sent: bool = False
    abort_sent: bool = False
    detached: bool = False  # abandoned by a restart or shutdown: its result is not written


@dataclass
class EngineStats:
    ticks: int = 0
    started: int = 0
    finished: int = 0
    restarts: int = 0
    errors: list[str] = field(default_factory=list)


def parse_servers(specs: list[str] | None) -> dict[str, int]:
    """``["batch-01:4", "batch-02"]`` -> {name: slots}; raises ValueError with the bad spec."""
    if not specs:
        return dict(DEFAULT_SERVERS)
    out: dict[str, int] = {}
    for spec in specs:
        name, _, slots = spec.partition(":")
        try:
            n = int(slots) if slots else 4
        except ValueError:
            raise ValueError(f"--server {spec!r}: slots must be a whole number") from None
        if not name or n < 1:
            raise ValueError(f"--server {spec!r}: expected NAME or NAME:SLOTS with SLOTS >= 1")
        out[name] = n
    return out


class Engine:
    def __init__(
        self,
        db_path: str,
        servers: dict[str, int] | None = None,
        *,
        poll_interval: float = 0.05,
        heartbeat_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db_path = db_path
        self.servers = dict(servers or DEFAULT_SERVERS)
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.actor = current_actor()
        self.stats = EngineStats()
        self.store: Store | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="batchdeck-writer")
        self._runners: dict[int, Runner] = {}
        self._outcomes: list[batch.Outcome] = []
        self._dirty: dict[int, TaskContext] = {}
        self._last_flush = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._server_state: dict[str, tuple[str, float | None, int | None]] = {}
        self._restarting: set[str] = set()
        self._job_waiters: dict[int, list[asyncio.Future[str]]] = {}
        self._approval_waiters: dict[int, asyncio.Future[tuple[str, str]]] = {}
        self._idle = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    # -- lifecycle ------------------------------------------------------------------
    async def _db(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(*args, **kw))

    def _read(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        assert self.store is not None
        with self.store.read() as conn:
            return fn(conn, *args, **kw)

    def _write(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        assert self.store is not None
        with self.store.write() as conn:
            return fn(conn, *args, **kw)

    async def start(self) -> None:
        """Open the database, take the server leases, recover, and start running."""
        try:
            self.store = await self._db(Store, self.db_path)
            at = self.clock()
            await self._db(self._write, batch.claim_leases, self.servers, self.owner, at=at)
            await self._db(self._write, batch.recover, self.owner, at=at)
            lease = await self._db(self._read, settings.lease_seconds)
            # Three beats per lease: one late beat never makes a live engine look dead.
            self.heartbeat_interval = min(self.heartbeat_interval, lease / 3)
        except BaseException:
            # Refused (another engine holds a server) or a bad database: leave nothing open.
            if self.store is not None:
                await self._db(self.store.dispose)
            self._writer.shutdown(wait=False)
            raise
        self._watch = DataVersionWatch(self.db_path)
        self._wake.set()  # work queued before we started: look at once
        self._main = asyncio.create_task(self._run(), name="batchdeck-engine")

    async def stop(self) -> None:
        """Stop taking work, interrupt running tasks (they go back to Ready), release leases."""
        if self._main is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._main
        # A clean stop is not the task's failure: it runs again, whatever its attempts.
        outcomes, progress = await self._interrupt(
            list(self._runners.values()), "interrupted: engine stopped"
        )
        at = self.clock()

        def final(conn: Any) -> None:
            batch.write_progress(conn, progress)
            batch.apply_outcomes(conn, outcomes + self._take_outcomes(), at=at)
            batch.release_leases(conn, list(self.servers), self.owner, at=at)

        await self._db(self._write, final)
        self._runners.clear()
        self._watch.close()
        await self._db(self.store.dispose)
        self._writer.shutdown(wait=True)
        self._main = None

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the loop) after each batch the engine writes."""
        self._listeners.append(callback)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until nothing runs and nothing is claimable (for tests and the benchmark)."""
        self._idle.clear()
        self._wake.set()
        await asyncio.wait_for(self._idle.wait(), timeout)

    # -- main loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        hb = asyncio.create_task(self._heartbeat(), name="batchdeck-heartbeat")
        try:
            while not self._stopping:
                await self._wait_for_work()
                if self._stopping:
                    break
                try:
                    await self._tick()
                except Exception as exc:  # noqa: BLE001 - keep serving; recorded for the operator
                    self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(self.poll_interval)
        finally:
            hb.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hb

    async def _wait_for_work(self) -> None:
        while not self._stopping:
            if self._wake.is_set() or self._watch.changed():
                self._wake.clear()
                return
            if self._dirty and self.clock() - self._last_flush >= PROGRESS_FLUSH_S:
                return
            draining = any(s == "draining" for s, _, _ in self._server_state.values())
            if draining and self.clock() - self._last_flush >= DRAIN_CHECK_S:
                return  # drain deadlines and "nothing left" are checked on a tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                lost = await self._db(
                    self._write, batch.heartbeat, list(self.servers), self.owner, at=self.clock()
                )
            except Exception as exc:  # noqa: BLE001 - a locked database: try next beat
                self.stats.errors.append(f"heartbeat: {exc}")
                continue
            for name in lost:
                self._lose(name)

    def _lose(self, name: str) -> None:
        """Another engine took this server (we stalled past the lease): stop serving it.

        Its recovery has already put our running tasks back to Ready, so running them on
        here too would run them twice: they are dropped without writing anything.
        """
        self.stats.errors.append(f"lease on {name} taken by another engine; stopped serving it")
        self.servers.pop(name, None)
        for r in [r for r in self._runners.values() if r.server == name]:
            self._detach(r)

    def _free_slots(self) -> dict[str, int]:
        used: dict[str, int] = dict.fromkeys(self.servers, 0)
        for r in self._runners.values():
            used[r.server] = used.get(r.server, 0) + 1
        free = {}
        for name, slots in self.servers.items():
            status = self._server_state.get(name, ("online",))[0]
            if status == "online" and name not in self._restarting:
                free[name] = slots - used.get(name, 0)
        return free

    def _take_outcomes(self) -> list[batch.Outcome]:
        out, self._outcomes = self._outcomes, []
        return out

    @staticmethod
    def _progress_of(ctx: TaskContext, child_job_id: int | None = None) -> batch.Progress:
        return batch.Progress(
            ctx.task_id,
            ctx.progress_done,
            ctx.progress_total,
            ctx.progress_unit,
            ctx.message,
            ctx.output_tail,
            child_job_id or ctx.child_job_id,
        )

    async def _tick(self) -> None:
        at = self.clock()
        dirty, self._dirty = self._dirty, {}
        inp = batch.TickIn(
            at=at,
            outcomes=self._take_outcomes(),
            progress=[self._progress_of(c) for c in dirty.values()],
            free=self._free_slots() if not self._stopping else {},
            running=[tid for tid, r in self._runners.items() if not r.detached],
            servers=list(self.servers),
            watched_jobs=list(self._job_waiters),
        )
        self._last_flush = at
        try:
            out = await self._db(self._write, batch.tick, inp)
        except Exception:
            # Nothing of the batch was written: keep it for the next try.
            self._outcomes[:0] = inp.outcomes
            for ctx in dirty.values():
                self._dirty.setdefault(ctx.task_id, ctx)
            raise
        self.stats.ticks += 1
        for c in out.claimed:
            self._start(c)
        self._react(out)
        for cb in self._listeners:
            cb()
        if not self._runners and not out.claimed and not self._outcomes and not self._dirty:
            self._idle.set()

    def _react(self, out: batch.TickOut) -> None:
        for tid, (status, approval, by) in out.task_state.items():
            r = self._runners.get(tid)
            if r is None or r.detached:
                continue
            if status == "canceling" and not r.cancel_sent:
                r.cancel_sent = True
                r.ctx.request_cancel()
            elif status == "aborting" and not r.abort_sent:
                r.abort_sent = True
                r.ctx.request_cancel()
                if r.task is not None:
                    r.task.cancel()
            elif status not in ("executing", "canceling", "aborting"):
                # Someone else settled it (recovery by another engine): stop our copy.
                self._detach(r)
            if approval and tid in self._approval_waiters:
                fut = self._approval_waiters.pop(tid)
                if not fut.done():
                    fut.set_result((approval, by or "?"))
        for jid, status in out.job_status.items():
            if status in JOB_TERMINAL:
                for fut in self._job_waiters.pop(jid, []):
                    if not fut.done():
                        fut.set_result(status)
        self._server_state.update(out.servers)
        now = self.clock()
        for name, (status, deadline, _job) in out.servers.items():
            if status != "draining" or name in self._restarting:
                continue
            on_it = [r for r in self._runners.values() if r.server == name and not r.detached]
            only_aborting = all(
                out.task_state.get(r.ctx.task_id, ("",))[0] == "aborting" for r in on_it
            )
            if only_aborting or (deadline is not None and now >= deadline):
                why = "nothing left but the aborted tasks" if only_aborting else "drain period over"
                self._restarting.add(name)
                asyncio.create_task(self._restart(name, why), name=f"restart-{name}")

    # -- running tasks --------------------------------------------------------------------
    def _start(self, c: batch.Claimed) -> None:
        ctx = TaskContext(
            task_id=c.task_id,
            job_id=c.job_id,
            name=c.name,
            action=c.action,
            attempt=c.attempt,
            server=c.server,
            recipe_path=c.recipe_path,
            hooks=self,
            run_thread=run_in_daemon_thread,
        )
        ctx.child_job_id = c.child_job_id
        runner = Runner(ctx=ctx, server=c.server)
        self._runners[c.task_id] = runner
        runner.task = asyncio.create_task(self._execute(runner, c), name=f"task-{c.task_id}")
        self.stats.started += 1

    async def _execute(self, runner: Runner, c: batch.Claimed) -> None:
        ctx = runner.ctx
        outcome, message = "ended", None
        try:
            action = get_action(c.action)
            if action is None:
                raise ActionError(f"unknown action {c.action!r}")
            result = await action.run(ctx, **c.params)
            message = result if isinstance(result, str) else ctx.message
        except TaskCanceled as exc:
            outcome, message = "canceled", str(exc)
        except asyncio.CancelledError:
            outcome = "aborted" if runner.abort_sent else "interrupted"
            message = ctx.message
        except Exception as exc:  # noqa: BLE001 - any failure of an action is the task's Error
            outcome, message = "error", str(exc) or type(exc).__name__
        finally:
            self._forget(runner)
        if runner.detached:
            return
        self._outcomes.append(
            batch.Outcome(
                ctx.task_id,
                outcome,
                message,
                reason=f"aborted by request; {message}"
                if outcome == "aborted" and message
                else None,
            )
        )
        self.note_dirty(ctx)  # the final progress rides with the outcome in the same batch
        self.stats.finished += 1
        self._wake.set()

    def _forget(self, r: Runner) -> None:
        # A detached run can end after its task was requeued and claimed again: only
        # the entry of this very run is removed, never its successor's.
        if self._runners.get(r.ctx.task_id) is r:
            del self._runners[r.ctx.task_id]

    def _detach(self, r: Runner) -> None:
        r.detached = True
        r.ctx.abandoned = True
        if r.task is not None and not r.task.done():
            r.task.cancel()

    async def _interrupt(
        self, runners: list[Runner], reason: str
    ) -> tuple[list[batch.Outcome], list[batch.Progress]]:
        """Stop these runs (grace for their clean-up), and what to write for them: each
        goes back to Ready whatever its attempts (Aborting ones end Aborted)."""
        for r in runners:
            self._detach(r)
        tasks = [r.task for r in runners if r.task is not None and not r.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=RESTART_GRACE_S)
        outcomes = [
            batch.Outcome(r.ctx.task_id, "interrupted", reason=reason, requeue_always=True)
            for r in runners
        ]
        return outcomes, [self._progress_of(r.ctx) for r in runners]

    async def _restart(self, name: str, why: str) -> None:
        """Force-stop everything on the server, requeue other jobs' tasks, come back Online."""
        try:
            await self._db(self._write, batch.restart_begin, name, at=self.clock(), why=why)
            victims = [r for r in self._runners.values() if r.server == name and not r.detached]
            outcomes, progress = await self._interrupt(victims, "interrupted by server restart")

            def end(conn: Any) -> None:
                batch.write_progress(conn, progress)
                batch.restart_end(conn, name, outcomes, at=self.clock())

            await self._db(self._write, end)
            for r in victims:
                self._forget(r)
            self.stats.restarts += 1
        finally:
            self._restarting.discard(name)
            self._server_state[name] = ("online", None, None)
            self._wake.set()

    # -- hooks for actions (engine.context.EngineHooks) -------------------------------------
    def note_dirty(self, ctx: TaskContext) -> None:
        self._dirty[ctx.task_id] = ctx

    async def submit_child(self, ctx: TaskContext, recipe_path: str, mode: str) -> int:
        from engine.recipes import RecipeError, load_recipe
        from engine.submit import insert_job

        try:
            recipe = await asyncio.to_thread(load_recipe, recipe_path)
        except RecipeError as exc:
            raise ActionError(str(exc)) from None

        def insert(conn: Any) -> int:
            depth = conn.exec_driver_sql(
                "WITH RECURSIVE up(id, parent) AS (SELECT id, parent_id FROM job WHERE id=? "
                "UNION ALL SELECT j.id, j.parent_id FROM job j JOIN up ON j.id = up.parent) "
                "SELECT count(*) FROM up",
                (ctx.job_id,),
            ).scalar_one()
            if depth >= MAX_CALL_DEPTH:
                # A recipe that ends up calling itself would otherwise fill the database.
                raise ActionError(
                    f"call depth {depth} reached (at most {MAX_CALL_DEPTH} "
                    "nested jobs): does the recipe call itself?"
                )
            return insert_job(
                conn,
                recipe,
                actor=self.actor,
                at=self.clock(),
                parent_id=ctx.job_id,
                parent_task_id=ctx.task_id,
                call_mode=mode,
            )

        job_id = await self._db(self._write, insert)
        # Recorded at once, so that a retry of this task finds the child (not in a batch).
        await self._db(self._write, batch.write_progress, [self._progress_of(ctx, job_id)])
        return job_id

    async def wait_job(self, job_id: int) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._job_waiters.setdefault(job_id, []).append(fut)
        self._wake.set()
        try:
            return await fut
        finally:
            waiters = self._job_waiters.get(job_id, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._job_waiters.pop(job_id, None)

    async def wait_approval(self, ctx: TaskContext) -> tuple[str, str]:
        fut: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._approval_waiters[ctx.task_id] = fut
        self._wake.set()
        try:
            return await fut
        finally:
            self._approval_waiters.pop(ctx.task_id, None)
