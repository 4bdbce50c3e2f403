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
import hashlib
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.actions.context import ActionError
from engine.core.db_outage import Outage, outage_of
from engine.core.dburl import parse_db
from engine.core.identity import current_actor
from engine.core.logs import DEFAULT_MAX_BYTES
from engine.core.procs import RUN_MARKER, kill_all
from engine.core.statuses import JOB_TERMINAL
from engine.runtime import tick as batch
from engine.runtime.leases import PeerLeases, beat, note_outage, peer_leases, take_over
from engine.runtime.server_handle import ServerProcess
from engine.runtime.server_names import DEFAULT_SERVERS
from engine.sql.doorbell import Doorbell
from engine.store import engine_settings, prune
from engine.store.db import Store, is_postgresql, shared_store
from engine.store.log_store import LogItem, LogQueue, write_logs

R = TypeVar("R")

HOST = socket.gethostname()
PROGRESS_FLUSH_S = 0.1
DRAIN_CHECK_S = 0.2
# How often an idle engine asks whether another process wrote (a cancel, an abort, a
# submit): PRAGMA data_version costs microseconds, and an operator's cancel should be
# acted on in milliseconds, not in a poll interval. Measured: an idle `serve` uses
# ~2% of a core at 10 ms, ~1% at 50 ms.
WATCH_S = 0.01
MAX_CALL_DEPTH = 20
RESTART_GRACE_S = 2.0
# A server whose process keeps dying at start is given up after this many tries in a row.
MAX_START_FAILURES = 5
# While the database is out of reach, a write the engine must make is tried this often;
# past OUTAGE_LIMIT_S the engine gives up and exits non-zero (a service manager
# restarts it) rather than stay up serving nothing.
OUTAGE_RETRY_S = 0.25
OUTAGE_LIMIT_S = 600.0
# The exit status of a server process whose lease ran out (engine.server_proc).
LEASE_EXIT = 75
# Log chunks written per transaction of their own, between ticks: a tick waits for at
# most one such write (a few ms), whatever a task prints.
LOG_BATCH_BYTES = 256 * 1024


def freeze_heap() -> None:
    """Exempt what is alive now (the imports, the engine's set-up) from the collector's
    full collections, for a process that serves from here on (``batchdeck serve``, the
    bench). Each full collection walked every object SQLAlchemy and SQLModel keep, 60-90
    ms at a time, two or three times per 20,000 tasks at 2 x 256 slots; frozen, 5-15 ms
    in all. What is frozen is never collected, so the garbage goes first."""
    gc.collect()
    gc.freeze()


@dataclass
class Runner:
    """One run of a task on a server process, as the supervisor tracks it."""

    claim: batch.Claimed
    server: str
    cancel_sent: bool = False
    abort_sent: bool = False
    detached: bool = False  # its result is not written (settled elsewhere, lease lost)
    # Waiting for a child job (a sync call_job): its slot is free meanwhile, or callers
    # as many as the slots (or a chain deeper than them) wait for ever on children that
    # need a slot (issue 21).
    waiting_child: int = 0
    calls: dict[int, asyncio.Task[Any]] = field(default_factory=dict)

    @property
    def task_id(self) -> int:
        return self.claim.task_id


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


class Supervisor:
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

    @property
    def _run_prefix(self) -> str:
        # Server processes of this database carry it in their marker, whatever engine
        # started them: a recovery finds a dead engine's leftovers by it.
        # A URL: a hash of it without its password, which has no business in every
        # process's environment, and no "|" of its own to confuse the marker.
        if is_postgresql(self.db_path):
            identity = parse_db(self.db_path).identity()
            return f"pg:{hashlib.sha256(identity.encode()).hexdigest()[:16]}|"
        return f"{os.path.realpath(self.db_path)}|"

    def _spawn(self, name: str) -> ServerProcess:
        sp = ServerProcess(name, self._on_messages, self._on_server_exit, self._server_stderr)
        sp.marker = f"{self._run_prefix}{name}|{uuid.uuid4().hex}"
        return sp

    async def _start_server(self, name: str) -> ServerProcess | None:
        """A fresh server process, ready for work; None if it would not start."""
        for _ in range(MAX_START_FAILURES):
            if name not in self.servers or self._stopping:
                return None  # lost meanwhile, or stopping: nothing to serve
            sp = self._spawn(name)
            await sp.start()
            if await sp.wait_ready():
                self.procs[name] = sp
                sp.send([{"op": "lease", "valid_for": self._lease_valid_for(0.0)}])
                await self._written(batch.note_server_process, name, self.owner, sp.pid, HOST)
                return sp
            sp.ending = True
            await sp.end(graceful=False)
            self.note(f"server {name}: process exited at start ({sp.returncode}); trying again")
            await asyncio.sleep(0.2)
        self.note(f"server {name}: process would not start; not serving it")
        return None

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

    def _lease_valid_for(self, elapsed: float) -> float:
        # The servers must have stopped before another engine may take the lease over:
        # a margin below the lease, less what has passed since the beat was taken.
        return max(0.1, self._lease_s - elapsed - min(1.0, self._lease_s * 0.2))

    async def _heartbeat(self) -> None:
        t0 = time.monotonic()
        while True:
            # Beats keep their cadence from when each began: after one the database held
            # up, the next goes at once, before what that one vouched for runs out.
            await asyncio.sleep(max(0.0, t0 + self.heartbeat_interval - time.monotonic()))
            at = self.clock()
            began = time.perf_counter()
            t0 = self._beat_started = time.monotonic()
            note = self.outage.note() if self.outage.down else None
            # A server whose process is gone and whose restart is not yet written does
            # not go on saying Online.
            down = [n for n in self.servers if n in self._restarting and n not in self.procs]
            try:
                lost = await self._db(
                    self._write, beat, list(self.servers), self.owner, at=at, down=down
                )
            except Exception as exc:  # noqa: BLE001 - a locked database: try next beat
                self._wrote("heartbeat", False, began)
                if outage_of(exc) is None:
                    self.note(f"heartbeat: {exc}")
                self._held_up(t0)
                continue
            finally:
                self._beat_started = None
            self._wrote("heartbeat", True, began)
            took = time.monotonic() - t0
            if note != self._outage_noted:
                # Its own transaction, best effort: a longer row may not fit a full disk,
                # and the lease must not wait on it.
                with contextlib.suppress(Exception):
                    await self._db(self._write, note_outage, list(self.servers), self.owner, note)
                    self._outage_noted = note
            if took > self.heartbeat_interval / 2:
                self._held_up(t0)  # it went through, late: the database held everyone up
            else:
                self._stall_since = None
            for name in lost:
                self._lose(name)
            self._vouch(t0 + self._lease_valid_for(0.0), always=True)
            try:
                await self._recover_peers(at)
            except Exception as exc:  # noqa: BLE001 - try again next beat
                if outage_of(exc) is None:
                    self.note(f"recovery of other engines' servers: {exc}")

    def _held_up(self, started: float) -> None:
        """Our beat failed or was held up by the database: peers' clocks start again (the
        database was out of their reach too), and on SQLite our servers' lease counts
        from here (see ``_vouch_while_held_up``)."""
        self._peers.forget()
        if self._stall_since is None:
            self._stall_since = started

    def _vouch(self, until: float, *, always: bool = False) -> None:
        """Tell our servers their lease runs until ``until`` (monotonic): after a beat,
        ``always``; while held up, only if later than what they were told."""
        if until <= self._vouched_until and not always:
            return
        self._vouched_until = until
        msg = [{"op": "lease", "valid_for": max(0.1, until - time.monotonic())}]
        for sp in self.procs.values():
            sp.send(msg)

    async def _vouch_while_held_up(self) -> None:
        """SQLite: while our beat is held up by the database (another process's write
        lock, a full disk), the lease our servers run on counts from when it began.
        Sound because the one file is out of every engine's reach alike, and a peer
        counts our lease only over time its own beats went through (``PeerLeases``): so
        an outage shorter than the lease costs the running tasks nothing.
        PostgreSQL: one host may lose the database while others reach it; there the
        lease counts from the last beat that went through, as before."""
        if self.store is None or self.store.is_postgresql:
            return
        while True:
            await asyncio.sleep(0.05)
            started = self._beat_started
            if started is not None and time.monotonic() - started > self.heartbeat_interval / 2:
                if self._stall_since is None:
                    self._stall_since = started
            if self._stall_since is not None:
                self._vouch(self._stall_since + self._lease_valid_for(0.0))

    def _unreachable_cause(self) -> str:
        """Why our runs were stopped when our servers' lease ran out."""
        now = time.monotonic()
        since = [t for t in (self._stall_since, self._beat_started) if t is not None]
        if not since and not self.outage.down:
            return "interrupted: the engine stalled past its lease"  # SIGSTOP, say
        took = max([self.outage.seconds()] + [now - t for t in since])
        return f"interrupted: the engine could not reach its database for {took:.0f} s"

    async def _recover_peers(self, at: float) -> None:
        """Another engine let its lease expire (its host died): recover its tasks here
        now, not at the next engine start. One small read per beat. The lease is judged
        by our monotonic clock (``PeerLeases``), taken over only if unchanged in the
        transaction that takes it, and what ran there is killed after that, not before."""
        rows = await self._db(self._read, peer_leases, self.owner)
        expired = self._peers.expired(rows, time.monotonic())
        if not expired:
            return
        self._taking_over = True
        try:
            taken, changed = await self._db(self._write, take_over, self.owner, expired, at=at)
            if not taken:
                return
            # Its server processes, if on this host, die before anything of theirs is
            # claimed again: nothing runs twice.
            await kill_all(markers=[(RUN_MARKER, f"{self._run_prefix}{n}|") for n in taken])
        finally:
            self._taking_over = False
        self.note(
            f"recovered {len(changed)} task(s) of expired server(s) {', '.join(taken)}",
            error=False,
        )
        self._wake.set()

    def _lose(self, name: str) -> None:
        """Another engine took this server (we stalled past the lease): stop serving it.

        Its recovery has already put our running tasks back to Ready, so running them on
        here too would run them twice: they are killed without writing anything.
        """
        if name not in self.servers:
            return  # already given up
        self.note(
            f"lease on {name} taken by another engine; stopped serving it and killed its tasks"
        )
        self.servers.pop(name, None)
        if not self.servers:
            self.nothing_to_serve.set()
        for r in [r for r in self._runners.values() if r.server == name]:
            r.detached = True
            self._cancel_calls(r)
            del self._runners[r.task_id]
        sp = self.procs.pop(name, None)
        if sp is not None:
            self._own(sp.end(graceful=False), f"lose-{name}")
        self._own(
            self._db(self._write, batch.note_lease_lost, name, self.owner, at=self.clock()),
            f"lost-{name}",
        )

    def _free_slots(self) -> dict[str, int]:
        """Called by the tick in the writer thread while the loop runs on: it reads
        copies (``list`` of a dict is taken whole under the GIL), never the live dicts."""
        if self._stopping or self._taking_over:
            return {}
        servers = list(self.servers.items())
        used: dict[str, int] = {}
        for r in list(self._runners.values()):
            if not r.waiting_child:
                used[r.server] = used.get(r.server, 0) + 1
        free = {}
        for name, slots in servers:
            status = self._server_state.get(name, ("online",))[0]
            sp = self.procs.get(name)
            if sp is None or not sp.ready.is_set() or sp.exited.is_set():
                continue
            if status == "online" and name not in self._restarting:
                free[name] = slots - used.get(name, 0)
        return free

    def _take_outcomes(self) -> list[batch.Outcome]:
        out, self._outcomes = self._outcomes, []
        return out

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

    def _tell_servers(self, task_state: dict[int, tuple[str, Any, Any]]) -> None:
        """Stop our runs that an operator asked to stop (once each), and those settled
        elsewhere; hand an approval decided to the run waiting for it."""
        sends: dict[str, list[dict[str, Any]]] = {}
        for tid, (status, approval, by) in task_state.items():
            r = self._runners.get(tid)
            if r is None or r.detached:
                continue
            if status == "canceling" and not r.cancel_sent:
                r.cancel_sent = True
                sends.setdefault(r.server, []).append({"op": "cancel", "task": tid})
            elif status == "aborting" and not r.abort_sent:
                r.abort_sent = True
                sends.setdefault(r.server, []).append({"op": "abort", "task": tid})
            elif status not in ("executing", "canceling", "aborting"):
                # Someone else settled it (recovery by another engine): stop our copy,
                # and write nothing of it. Its slot is free once its code has stopped.
                r.detached = True
                sends.setdefault(r.server, []).append({"op": "abort", "task": tid})
            if approval and tid in self._approval_waiters:
                fut = self._approval_waiters.pop(tid)
                if not fut.done():
                    fut.set_result((approval, by or "?"))
        for name, msgs in sends.items():
            sp = self.procs.get(name)
            if sp is not None:
                sp.send(msgs)

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
    def _start(self, claimed: list[batch.Claimed]) -> None:
        sends: dict[str, list[dict[str, Any]]] = {}
        for c in claimed:
            self._runners[c.task_id] = Runner(claim=c, server=c.server)
            sends.setdefault(c.server, []).append(
                {
                    "op": "run",
                    "task": c.task_id,
                    "token": c.token,
                    "job": c.job_id,
                    "name": c.name,
                    "action": c.action,
                    "params_json": c.params_json,
                    "attempt": c.attempt,
                    "recipe_path": c.recipe_path,
                    "child": c.child_job_id,
                    "remote_job": c.remote_job,
                    "log_max": self._log_max,
                }
            )
            self.stats.started += 1
        for name, msgs in sends.items():
            sp = self.procs.get(name)
            if sp is not None:
                sp.send(msgs)

    def _on_messages(self, sp: ServerProcess, msgs: list[dict[str, Any]]) -> None:
        if self.procs.get(sp.name) is not sp:
            return  # a process we have already replaced or given up
        wake = False
        for m in msgs:
            op = m["op"]
            r = self._runners.get(m["task"]) if "task" in m else None
            if r is not None and r.server != sp.name:
                r = None
            if op == "progress" and r is not None and not r.detached:
                self._dirty[r.task_id] = self._progress(r, m["progress"])
            elif op == "log" and r is not None and not r.detached:
                c = r.claim
                self.logs.add(
                    LogItem(c.task_id, c.job_id, c.attempt, c.token, m.get("chunk"), m.get("cut"))
                )
                self._logs_waiting.set()
            elif op == "done":
                if r is None:
                    continue
                del self._runners[r.task_id]
                sp.forget(r.task_id)
                self._cancel_calls(r)
                self.stats.finished += 1
                wake = True
                if r.detached:
                    continue
                outcome, message = m["outcome"], m.get("message")
                why = "interrupted: engine stopped" if self._stopping else None
                self._outcomes.append(
                    batch.Outcome(
                        r.task_id,
                        outcome,
                        message,
                        reason=(
                            f"aborted by request; {message}"
                            if outcome == "aborted" and message
                            else why
                        ),
                        requeue_always=outcome == "interrupted",
                        token=r.claim.token,
                    )
                )
                # The final progress rides with the outcome in the same batch.
                self._dirty[r.task_id] = self._progress(r, m["progress"])
            elif op == "call" and r is not None:
                r.calls[m["id"]] = self._own(self._answer(sp, r, m), f"call-{r.task_id}-{m['fn']}")
            elif op == "uncall":
                for run in self._runners.values():
                    t = run.calls.pop(m["id"], None)
                    if t is not None:
                        t.cancel()
        if wake:
            self._wake.set()

    @staticmethod
    def _progress(r: Runner, p: dict[str, Any]) -> batch.Progress:
        return batch.Progress(
            r.task_id,
            p["done"],
            p["total"],
            p["unit"],
            p["message"],
            p["output"],
            p.get("child"),
            token=r.claim.token,
        )

    async def _write_logs(self) -> None:
        """Log chunks, in transactions of their own between the ticks (the writer thread
        takes them in turn): what a task prints never makes a tick wait for more than
        one batch. A run's outcome waits for its last chunks (``_tick``)."""
        while True:
            await self._logs_waiting.wait()
            self._logs_waiting.clear()
            while self.logs.items:
                items = self.logs.take(LOG_BATCH_BYTES)
                try:
                    await self._db(self._write_own, write_logs, items, at=self.clock())
                except Exception as exc:  # noqa: BLE001 - a locked database: try again
                    self.logs.put_back(items)
                    if outage_of(exc) is None:  # an outage is said once, by its watch
                        self.note(f"writing task logs: {exc}")
                    await asyncio.sleep(max(self.poll_interval, OUTAGE_RETRY_S))
                if self._outcomes:
                    self._wake.set()  # outcomes held for their lines may go now

    async def _prune(self) -> None:
        """History older than ``keep_days``, hourly, a batch per transaction."""

        async def read(fn: Callable[[Any], R]) -> R:
            return await self._db(self._read, fn)

        async def write(fn: Callable[[Any], R]) -> R:
            return await self._db(self._write, fn)

        await prune.hourly(read, write, clock=self.clock, note=self.note)

    def _cancel_calls(self, r: Runner) -> None:
        for t in r.calls.values():
            t.cancel()
        r.calls.clear()

    async def _answer(self, sp: ServerProcess, r: Runner, m: dict[str, Any]) -> None:
        """Do what task code asked of the engine (a child job, a wait) and reply."""
        fn, args = m["fn"], m["args"]
        reply: dict[str, Any] = {"op": "reply", "id": m["id"]}
        try:
            if fn == "submit_child":
                reply["value"] = await self._submit_child(r, *args)
            elif fn == "record_remote_job":
                reply["value"] = await self._record_remote_job(r, str(args[0]))
            elif fn == "wait_job":
                r.waiting_child += 1
                self._wake.set()  # its slot is free: the child may take it at once
                try:
                    reply["value"] = await self.wait_job(int(args[0]))
                finally:
                    r.waiting_child -= 1
            elif fn == "wait_approval":
                reply["value"] = list(await self._wait_approval(r.task_id))
            else:
                reply["error"] = f"unknown request {fn!r}"
        except ActionError as exc:
            reply["error"] = str(exc)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - the task fails with it, not the engine
            reply["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            r.calls.pop(m["id"], None)
        sp.send([reply])

    # -- a server process that died, and restarts ------------------------------------------
    def _on_server_exit(self, sp: ServerProcess) -> None:
        if self._stopping or self.procs.get(sp.name) is not sp:
            return
        self._restarting.add(sp.name)
        self._own(self._server_died(sp), f"died-{sp.name}")

    @staticmethod
    def _death_cause(rc: int | None) -> str:
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = "?"
            return f"signal {-rc} ({name})"
        return f"exit status {rc}"

    async def _restart_begin(self, name: str, why: str) -> bool:
        """Mark the server Restarting; False if another engine holds it now (then we
        stop serving it: nothing of it is ours to write)."""
        held = await self._written(batch.restart_begin, name, self.owner, at=self.clock(), why=why)
        if not held:
            self._lose(name)
        return held

    async def _restart_end(
        self, name: str, victims: list[Runner], outcomes: list[batch.Outcome]
    ) -> None:
        """Start a fresh process, then write what happened to the old one's runs and
        bring the server back Online (only once the new process is ready)."""
        progress = [self._dirty.pop(r.task_id) for r in victims if r.task_id in self._dirty]
        fresh = await self._start_server(name)

        def end(conn: Any) -> None:
            at = self.clock()
            batch.write_runs(conn, outcomes, progress, at=at)  # fenced by claim tokens
            if fresh is not None:
                batch.restart_end(conn, name, self.owner, at=at)

        await self._written(end)

    async def _server_died(self, sp: ServerProcess) -> None:
        """Its code is gone; so must be everything it started. Then say what happened to
        each of its runs, and start a fresh process.

        The dead process is forgotten first, before any write: a write that fails (the
        database locked, full or gone) must not leave the engine counting on a process
        that is not there. The writes are then tried until the database takes them."""
        name = sp.name
        self.stats.crashes += 1
        if self.procs.get(name) is sp:
            self.procs.pop(name, None)
        victims = [r for r in self._runners.values() if r.server == name]
        for r in victims:
            del self._runners[r.task_id]
            self._cancel_calls(r)
        try:
            left = await sp.sweep()
            if left:
                self.note(f"server {name}: pids {left} still alive after SIGKILL")
            cause, outcomes = self._death_outcomes(sp, victims)
            self.note(f"server {name}: {cause}")
            if not await self._restart_begin(name, cause):
                return
            await self._restart_end(name, victims, outcomes)
        except Exception as exc:  # noqa: BLE001 - given up (see _written): serve nothing, say so
            if self.given_up is None and not self._stopping:
                self._give_up(f"server {name} could not be restarted: {exc}")
        finally:
            self._restarting.discard(name)
            self._server_state[name] = ("online", None, None)
            self._wake.set()

    def _death_outcomes(
        self, sp: ServerProcess, victims: list[Runner]
    ) -> tuple[str, list[batch.Outcome]]:
        """Why the process died, and what each of its runs became."""
        cause = f"server process died: {self._death_cause(sp.returncode)}"
        if sp.returncode == LEASE_EXIT:
            # The lease we vouched for ran out: our own failure to reach the database (or
            # a stall), never a task's. Every run goes back to Ready with the true cause.
            why = self._unreachable_cause()
            cause = f"its lease ran out: {why.removeprefix('interrupted: ')}"
            return cause, [
                batch.Outcome(
                    r.task_id, "interrupted", reason=why, requeue_always=True, token=r.claim.token
                )
                for r in victims
                if not r.detached
            ]
        culprits: dict[int, str] = {
            t: f"task code exited with status {code}" for t, code in sp.exit_blame.items()
        }
        if not culprits and len(victims) == 1:
            culprits = {victims[0].task_id: cause}
        outcomes = []
        for r in victims:
            if r.detached:
                continue
            token = r.claim.token
            if r.task_id in culprits:
                outcomes.append(batch.Outcome(r.task_id, "error", culprits[r.task_id], token=token))
            elif culprits:
                outcomes.append(
                    batch.Outcome(
                        r.task_id,
                        "interrupted",
                        reason="interrupted: another task's code ended the server process",
                        requeue_always=True,
                        token=token,
                    )
                )
            else:
                # Nobody to blame: each runs again while it has attempts left.
                outcomes.append(
                    batch.Outcome(
                        r.task_id, "interrupted", reason=f"interrupted: {cause}", token=token
                    )
                )
        return cause, outcomes

    async def _restart(self, name: str, why: str) -> None:
        """Enhanced abort: end the server process and everything it started, then report
        its runs (Aborted, or back to Ready for other jobs) and bring it back Online."""
        try:
            if not await self._restart_begin(name, why):
                return
            sp = self.procs.pop(name, None)
            if sp is None:
                return
            left = await sp.end(graceful=False, grace=RESTART_GRACE_S)
            if left:
                self.note(f"server {name}: pids {left} still alive after SIGKILL")
            victims = [r for r in self._runners.values() if r.server == name]
            outcomes = []
            for r in victims:
                del self._runners[r.task_id]
                self._cancel_calls(r)
                if not r.detached:
                    outcomes.append(
                        batch.Outcome(
                            r.task_id,
                            "interrupted",
                            reason="interrupted by server restart",
                            requeue_always=True,
                            token=r.claim.token,
                        )
                    )
            await self._restart_end(name, victims, outcomes)
            self.stats.restarts += 1
        finally:
            self._restarting.discard(name)
            self._server_state[name] = ("online", None, None)
            self._wake.set()

    # -- what task code asks of the engine -------------------------------------------------
    async def _submit_child(self, r: Runner, recipe_path: str, mode: str) -> int:
        from engine.flows.base import insert_job
        from engine.recipes import RecipeError, load_recipe
        from engine.store.flow_statements import flow_sql

        try:
            recipe = await asyncio.to_thread(load_recipe, recipe_path)
        except RecipeError as exc:
            raise ActionError(str(exc)) from None
        c = r.claim

        def insert(conn: Any) -> int:
            depth = conn.execute(batch.call_depth(c.job_id)).scalar_one()
            if depth >= MAX_CALL_DEPTH:
                # A recipe that ends up calling itself would otherwise fill the database.
                raise ActionError(
                    f"call depth {depth} reached (at most {MAX_CALL_DEPTH} "
                    "nested jobs): does the recipe call itself?"
                )
            if not batch.holds_claim(conn, c.task_id, c.token):
                raise ActionError("this run no longer holds its task: nothing started")
            job_id = insert_job(
                flow_sql(conn),
                recipe,
                actor=self.actor,
                at=self.clock(),
                parent_id=c.job_id,
                parent_task_id=c.task_id,
                call_mode=mode,
            )
            # Recorded at once, so that a retry of this task finds the child.
            batch.record_child(conn, c.task_id, c.token, job_id)
            return job_id

        return await self._db(self._write, insert)

    async def _record_remote_job(self, r: Runner, remote_job: str) -> None:
        c = r.claim
        if not await self._db(self._write, batch.record_remote_job, c.task_id, c.token, remote_job):
            raise ActionError("this run no longer holds its task: the remote job was not recorded")

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

    async def _wait_approval(self, task_id: int) -> tuple[str, str]:
        fut: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._approval_waiters[task_id] = fut
        self._wake.set()
        try:
            return await fut
        finally:
            self._approval_waiters.pop(task_id, None)
