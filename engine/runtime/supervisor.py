"""The engine's supervisor: claims work, runs it on server processes, writes what happens.

Each named server is an OS process (``engine.runtime.server_proc``) started and watched by
``engine.runtime.server_handle.ServerProcess``: task code runs only there. The supervisor keeps,
per running task, a ``Runner`` (the claim and its token); it talks to the servers in
messages and does all database work in one writer thread (``_db``), in batches
(``engine.runtime.tick.tick``). Every write about a task is fenced by the token of the claim
that started it. The loop wakes when a server reports, when progress is pending, or
when another connection commits (``PRAGMA data_version``), so a cancel written by
another process is acted on within one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.core.db_outage import Outage, outage_of
from engine.core.identity import current_actor
from engine.core.logs import DEFAULT_MAX_BYTES
from engine.core.procs import RUN_MARKER, kill_all
from engine.core.statuses import JOB_TERMINAL
from engine.runtime import tick as batch
from engine.runtime.heartbeat import Heartbeat
from engine.runtime.leases import PeerLeases
from engine.runtime.limits import OUTAGE_LIMIT_S, OUTAGE_RETRY_S
from engine.runtime.runs import Runner, TaskRuns
from engine.runtime.server_handle import ServerProcess
from engine.runtime.server_names import DEFAULT_SERVERS
from engine.runtime.server_pool import ServerPool
from engine.sql.doorbell import Doorbell
from engine.store import engine_settings, prune
from engine.store.db import Store, shared_store
from engine.store.log_store import LogQueue, write_logs

R = TypeVar("R")

PROGRESS_FLUSH_S = 0.1
DRAIN_CHECK_S = 0.2
# How often an idle engine asks whether another process wrote (a cancel, an abort, a
# submit): PRAGMA data_version costs microseconds, and an operator's cancel should be
# acted on in milliseconds, not in a poll interval. Measured: an idle `serve` uses
# ~2% of a core at 10 ms, ~1% at 50 ms.
WATCH_S = 0.01


def freeze_heap() -> None:
    """Exempt what is alive now (the imports, the engine's set-up) from the collector's
    full collections, for a process that serves from here on (``batchdeck serve``, the
    bench). Each full collection walked every object SQLAlchemy and SQLModel keep, 60-90
    ms at a time, two or three times per 20,000 tasks at 2 x 256 slots; frozen, 5-15 ms
    in all. What is frozen is never collected, so the garbage goes first."""
    gc.collect()
    gc.freeze()


@dataclass
class EngineStats:
    ticks: int = 0
    started: int = 0
    finished: int = 0
    restarts: int = 0
    crashes: int = 0
    errors: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # notable, not errors
    outage: str | None = None  # while the database is out of reach: its one line


class Supervisor(TaskRuns, ServerPool, Heartbeat):
    """The engine of one process (embedded in a console, or ``batchdeck serve``): serves
    the named batch servers on one database until ``stop``. Use it as an async context
    manager, or ``start`` and ``stop`` it; ``wait_job`` waits for a job to end."""

    def __init__(
        self,
        db_path: str,
        servers: dict[str, int] | None = None,
        *,
        poll_interval: float = 0.05,
        heartbeat_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        server_stderr: Any = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.servers = dict(servers or DEFAULT_SERVERS)
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._tick_tag = f"tick {self.owner}"
        self.actor = current_actor()
        self.stats = EngineStats()
        self.store: Store | None = None
        self.procs: dict[str, ServerProcess] = {}
        self._server_stderr = server_stderr
        self._log = log
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="batchdeck-writer")
        self._runners: dict[int, Runner] = {}
        self._outcomes: list[batch.Outcome] = []
        self._dirty: dict[int, batch.Progress] = {}
        self.logs = LogQueue()
        self._logs_waiting = asyncio.Event()
        self._log_max = DEFAULT_MAX_BYTES
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
        self._background: set[asyncio.Task[Any]] = set()
        self._lease_s = 5.0
        self._claims = 0
        self._watch: Any = None
        self._stop_bell: Callable[[], None] = lambda: None
        self._writer_ident = 0
        # Set when every server's lease was lost: ``serve`` stops then.
        self.nothing_to_serve = asyncio.Event()
        # Told of each tick's and heartbeat's write: ``hook(kind, ok, seconds)``, kind
        # "tick" or "heartbeat" (``engine.service``: the watchdog, the metrics).
        self.write_hooks: list[Callable[[str, bool, float], None]] = []
        # Set with ``nothing_to_serve`` when the engine gave up on an outage: ``serve``
        # then exits non-zero.
        self.given_up: str | None = None
        self.outage_limit = OUTAGE_LIMIT_S
        self.outage = Outage(db_path, self._say_outage)
        self._outage_noted: str | None = None
        self._peers = PeerLeases(self._lease_s)
        self._beat_started: float | None = None  # monotonic, while a beat is in flight
        self._stall_since: float | None = None  # monotonic: our beats held up since
        self._vouched_until = 0.0  # monotonic: the lease our servers were last told
        self._taking_over = False  # no claims while a peer's leftovers are being killed
        # Another process wrote since the last look: an operator's cancel may be there.
        self._told = False

    # -- lifecycle ------------------------------------------------------------------
    async def _db(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self._writer, lambda: fn(*args, **kw))
        except Exception as exc:
            self.outage.failed(exc)  # an outage is said once, when it begins
            raise
        if fn == self._write or fn == self._write_tick:
            self.outage.succeeded()
        return out

    async def _written(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        """``self._write(fn, ...)``, tried again until it goes through: a write the engine
        must make (a dead server's runs, its restart). Past ``outage_limit`` seconds of
        failures the engine gives up: ``serve`` exits non-zero rather than serve nothing."""
        loop = asyncio.get_running_loop()
        first = loop.time()
        while True:
            try:
                return await self._db(self._write, fn, *args, **kw)
            except Exception as exc:
                if self._stopping:
                    raise
                if outage_of(exc) is None:
                    self.note(f"{getattr(fn, '__name__', 'write')}: {type(exc).__name__}: {exc}")
                if loop.time() - first > self.outage_limit:
                    self._give_up(f"could not write to the database for {self.outage_limit:.0f} s")
                    raise
            await asyncio.sleep(OUTAGE_RETRY_S)

    def _give_up(self, why: str) -> None:
        self.given_up = why
        self.note(f"giving up: {why}; exiting so that a service manager may restart the engine")
        self.nothing_to_serve.set()

    def _read(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        assert self.store is not None
        with self.store.read() as conn:
            return fn(conn, *args, **kw)

    def _write(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        assert self.store is not None
        with self.store.write() as conn:
            return fn(conn, *args, **kw)

    def _write_tick(self, inp: batch.TickIn) -> batch.TickOut:
        return self._write_own(batch.tick, inp)

    def _write_own(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        """A transaction of the engine's own (a tick, task logs), whose commit does not
        wake the engine again.
        SQLite: the watch takes it as seen (``DataVersionWatch.absorb``), checked on the
        writer connection, whose ``data_version`` counts other connections' commits
        only. PostgreSQL: its notification carries the engine's tick tag, which the
        engine's watch ignores (``NotifyWatch.ignore``)."""
        absorb = getattr(self._watch, "absorb", None)
        assert self.store is not None
        if absorb is None:  # PostgreSQL: the watch ignores this tag
            with self.store.write(tag=self._tick_tag) as conn:
                return fn(conn, *args, **kw)
        from engine.store.watch import data_version

        mark: list[int] = []

        def after(conn: Any) -> None:
            raw = conn.connection.driver_connection
            # The tick has committed: a failed look costs one idle tick at most, where
            # raising would have the engine take the committed tick for a failed one.
            with contextlib.suppress(sqlite3.Error):
                absorb(lambda: data_version(raw) == mark[0])

        with self.store.write(after_commit=after) as conn:
            out = fn(conn, *args, **kw)
            mark.append(data_version(conn.connection.driver_connection))
        return out

    @property
    def running(self) -> int:
        """How many task runs this engine has on its servers now."""
        return len(self._runners)

    def _wrote(self, kind: str, ok: bool, began: float) -> None:
        seconds = time.perf_counter() - began
        for hook in self.write_hooks:
            hook(kind, ok, seconds)

    def _say_outage(self, line: str, began: bool) -> None:
        """An outage begins (its line stays in the console's header until it ends) or
        ends."""
        self.stats.outage = line if began else None
        self.note(line, error=began)

    def note(self, message: str, *, error: bool = True) -> None:
        """An engine error, kept for the operator (the console's header shows the last
        one), and logged; ``error=False``: a notable event, logged and kept apart, which
        the console must not show as an error."""
        (self.stats.errors if error else self.stats.events).append(message)
        if self._log is not None:
            # A log whose reader went away (serve 2>&1 | cat, cat killed) must not stop
            # the engine: what it says is kept in stats all the same.
            with contextlib.suppress(Exception):
                self._log(message)

    async def start(self) -> None:
        """Open the database, take the server leases, recover, and start the servers."""
        try:
            self.store = await self._db(shared_store, self.db_path)
            self.outage = Outage(self.store.path, self.outage._say)
            at = self.clock()
            await self._db(self._write, batch.claim_leases, self.servers, self.owner, at=at)
            self._lease_s = await self._db(self._read, engine_settings.lease_seconds)
            self._log_max = await self._db(self._read, engine_settings.log_max_bytes)
            # Three beats per lease: one late beat never makes a live engine look dead.
            self.heartbeat_interval = min(self.heartbeat_interval, self._lease_s / 3)
            # A lease and a beat: a peer held up on its beat vouches its servers a lease
            # from that beat's start, up to a beat after its last one went through.
            self._peers.lease_s = self._lease_s + self.heartbeat_interval
            # What a dead engine's servers left running on this host dies before its
            # tasks are recovered: nothing runs twice.
            stale = await self._db(self._read, batch.servers_without_engine, self.owner, at=at)
            await kill_all(markers=[(RUN_MARKER, f"{self._run_prefix}{n}|") for n in stale])
            await self._db(self._write, batch.recover, self.owner, at=at)
            # Before any server starts: a watch that cannot open (PostgreSQL's LISTEN
            # connection refused) leaves nothing running.
            self._watch = await self._db(self.store.watcher)
            if hasattr(self._watch, "ignore"):
                self._watch.ignore(self._tick_tag)
            self._writer_ident = await self._db(threading.get_ident)
            self._stop_bell = self._hear_changes(asyncio.get_running_loop())
            started = await asyncio.gather(*(self._start_server(n) for n in self.servers))
            if not any(started):
                raise RuntimeError("no server process would start; see the server log")
        except BaseException:
            # Refused (another engine holds a server) or a bad database: leave nothing open.
            for sp in self.procs.values():
                await sp.end(graceful=False)
            self.procs.clear()
            if self._watch is not None:
                self._watch.close()
            self._stop_bell()
            if self.store is not None:
                with contextlib.suppress(Exception):
                    await self._db(
                        self._write,
                        batch.release_leases,
                        list(self.servers),
                        self.owner,
                        at=self.clock(),
                    )
                await self._db(self.store.dispose)
            self._writer.shutdown(wait=False)
            raise
        self._wake.set()  # work queued before we started: look at once
        self._main = asyncio.create_task(self._run(), name="batchdeck-engine")
        self._own(self._write_logs(), "batchdeck-logs")
        if self.store.writer is not None:
            self._own(self._prune(), "batchdeck-prune")

    async def stop(self) -> None:
        """Stop taking work, stop the servers (their runs go back to Ready), release leases."""
        if self._main is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._main
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        procs = list(self.procs.values())
        left = await asyncio.gather(*(sp.end(graceful=True) for sp in procs))
        for sp, pids in zip(procs, left, strict=True):
            if pids:
                self.note(f"server {sp.name}: pids {pids} still alive after SIGKILL")
        # A clean stop is not the task's failure: it runs again, whatever its attempts.
        outcomes = [
            batch.Outcome(
                r.task_id,
                "interrupted",
                reason="interrupted: engine stopped",
                requeue_always=True,
                token=r.claim.token,
            )
            for r in self._runners.values()
            if not r.detached
        ]
        for r in self._runners.values():
            self._cancel_calls(r)
        at = self.clock()
        dirty, self._dirty = list(self._dirty.values()), {}
        final_outcomes = self._take_outcomes() + outcomes

        logs = self.logs.take(self.logs.bytes + 1) if self.logs.items else []

        def final(conn: Any) -> None:
            write_logs(conn, logs, at=at)
            batch.write_runs(conn, final_outcomes, dirty, at=at)
            batch.release_leases(conn, list(self.servers), self.owner, at=at)

        try:
            await self._db(self._write, final)
        except Exception as exc:  # noqa: BLE001 - out of reach: the next start recovers them
            self.note(
                f"stopping: could not write the runs' end ({exc}); the next start recovers them"
            )
        self._runners.clear()
        self.procs.clear()
        self._stop_bell()
        self._watch.close()
        await self._db(self.store.dispose)
        self._writer.shutdown(wait=True)
        self._main = None

    async def __aenter__(self) -> Supervisor:
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

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A background task the engine owns: cancelled and awaited when it stops."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- main loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        hb = asyncio.create_task(self._heartbeat(), name="batchdeck-heartbeat")
        vouch = self._own(self._vouch_while_held_up(), "batchdeck-vouch")
        try:
            while not self._stopping:
                await self._wait_for_work()
                if self._stopping:
                    break
                try:
                    if self._told:
                        await self._pass_on_stops()
                    await self._tick()
                except Exception as exc:  # noqa: BLE001 - keep serving; recorded for the operator
                    if outage_of(exc) is None:
                        self.note(f"{type(exc).__name__}: {exc}")
                        await asyncio.sleep(self.poll_interval)
                    else:  # said once when it began (Outage); the batch waits for the next try
                        await asyncio.sleep(OUTAGE_RETRY_S)
        finally:
            hb.cancel()
            vouch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hb

    async def _pass_on_stops(self) -> None:
        """Another process wrote: an operator's cancel or abort of a task running here is
        told to its server after one read, not after the tick's write transaction (a few
        milliseconds more on PostgreSQL; the tick, which follows, sends nothing twice)."""
        self._told = False
        running = [
            tid
            for tid, r in self._runners.items()
            if not r.detached and not (r.cancel_sent and r.abort_sent)
        ]
        if running:
            states = await self._db(self._read, batch.stopping, running)
            self._tell_servers({tid: (status, None, None) for tid, status in states.items()})

    async def _wait_for_work(self) -> None:
        while not self._stopping:
            try:
                changed = self._watch.changed()
            except Exception:  # noqa: BLE001 - the file out of reach: look, and find out
                changed = True
            if changed:
                self._told = True
            if self._wake.is_set() or changed:
                self._wake.clear()
                return
            if self._dirty and self.clock() - self._last_flush >= PROGRESS_FLUSH_S:
                return
            draining = any(s == "draining" for s, _, _ in self._server_state.values())
            if draining and self.clock() - self._last_flush >= DRAIN_CHECK_S:
                return  # drain deadlines and "nothing left" are checked on a tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(self.poll_interval, WATCH_S))

    def _hear_changes(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Be woken by other writers' commits as they happen, not at the next poll of the
        watch: this process's Store (a console's cancel), the SQLite file's doorbell
        (a command line's), PostgreSQL's notifications (any host's). Returns what stops
        it. The poll stays, for whatever no signal reaches."""
        stops = [self.store.on_commit(self._bell(loop))]

        def look() -> None:  # on the loop: wakes only for a change the watch confirms
            if self._watch is not None and not self._stopping and self._watch.changed():
                self._told = True
                self._wake.set()

        if self.store.is_postgresql:
            stops.append(self._watch.on_change(lambda: loop.call_soon_threadsafe(look)))
        else:
            bell = Doorbell.open(self.store.path, look)
            if bell is not None:
                stops.append(bell.close)

        def stop() -> None:
            for s in stops:
                s()

        return stop

    def _bell(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Woken by another writer's commit through this process's Store (a console's
        cancel): the engine's own commits, made in its writer thread, are not news."""

        def ring() -> None:
            if threading.get_ident() == self._writer_ident:
                return
            self._told = True
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to wake
                loop.call_soon_threadsafe(self._wake.set)

        return ring

    async def _tick(self) -> None:
        at = self.clock()
        dirty, self._dirty = self._dirty, {}
        self._claims += 1
        outcomes = self._take_outcomes()
        if self.logs.items:
            # A run ends once its lines are written (``logs -f`` stops at its end): held
            # until the log writer has them in, a batch at a time, never in this tick.
            held = [o for o in outcomes if self.logs.waiting_for(o.task_id)]
            if held:
                outcomes = [o for o in outcomes if not self.logs.waiting_for(o.task_id)]
                self._outcomes[:0] = held
                self._logs_waiting.set()
        inp = batch.TickIn(
            at=at,
            outcomes=outcomes,
            progress=list(dirty.values()),
            free=self._free_slots,
            running=[tid for tid, r in self._runners.items() if not r.detached],
            servers=list(self.servers),
            watched_jobs=list(self._job_waiters),
            owner=self.owner,
            token=f"{self.owner}#{self._claims}",
        )
        self._last_flush = at
        began = time.perf_counter()
        try:
            out = await self._db(self._write_tick, inp)
        except Exception:
            self._wrote("tick", False, began)
            # Nothing of the batch was written: keep it for the next try.
            self._outcomes[:0] = inp.outcomes
            for p in dirty.values():
                self._dirty.setdefault(p.task_id, p)
            raise
        self._wrote("tick", True, began)
        self.stats.ticks += 1
        self._start(out.claimed)
        self._react(out)
        for cb in self._listeners:
            cb()
        if not self._runners and not out.claimed and not self._outcomes and not self._dirty:
            self._idle.set()

    def _react(self, out: batch.TickOut) -> None:
        self._tell_servers(out.task_state)
        self._react_jobs_and_servers(out)

    def _react_jobs_and_servers(self, out: batch.TickOut) -> None:
        """Jobs ended that someone waits for; leases lost; drains that end in a restart."""
        for jid, status in out.job_status.items():
            if status in JOB_TERMINAL:
                for fut in self._job_waiters.pop(jid, []):
                    if not fut.done():
                        fut.set_result(status)
        for name in out.lost:
            self._lose(name)
        self._server_state.update(out.servers)
        now = self.clock()
        for name, (status, deadline, _job) in out.servers.items():
            if status != "draining" or name in self._restarting or name not in self.procs:
                continue
            on_it = [r for r in self._runners.values() if r.server == name and not r.detached]
            only_aborting = all(
                out.task_state.get(r.task_id, ("",))[0] == "aborting" for r in on_it
            )
            if only_aborting or (deadline is not None and now >= deadline):
                why = "nothing left but the aborted tasks" if only_aborting else "drain period over"
                self._restarting.add(name)
                self._own(self._restart(name, why), f"restart-{name}")

    # -- running tasks on server processes ------------------------------------------------

    async def _prune(self) -> None:
        """History older than ``keep_days``, hourly, a batch per transaction."""

        async def read(fn: Callable[[Any], R]) -> R:
            return await self._db(self._read, fn)

        async def write(fn: Callable[[Any], R]) -> R:
            return await self._db(self._write, fn)

        await prune.hourly(read, write, clock=self.clock, note=self.note)

    # -- a server process that died, and restarts ------------------------------------------

    # -- what task code asks of the engine -------------------------------------------------
