"""A batch server process: the only place task code runs.

Started by the engine's supervisor (``engine.runtime.server_handle``) as
``python -m engine.runtime.server_proc NAME``, in a session of its own. It talks to the
supervisor in JSON lines (``engine.runtime.wire``) on the pipes it was started with; task
code's own prints go to stderr, so they can never corrupt that channel. The server
never opens the database: the supervisor claims, fences and writes.

It ends, killing every process its tasks started, when:
- the supervisor says ``stop``, or sends SIGTERM (a restart);
- its input pipe closes: the supervisor is gone (killed with SIGKILL, say), so
  nothing may run on without it;
- the lease the supervisor last vouched for runs out: another engine may take these
  tasks over, and two copies must never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine.actions import get_action
from engine.actions.context import (
    CURRENT_TASK,
    ActionError,
    TaskCanceled,
    TaskContext,
    run_in_daemon_thread,
)
from engine.core.logs import DEFAULT_MAX_BYTES, LogBuffer, log_messages
from engine.core.procs import RUN_MARKER, kill_all, kill_all_blocking
from engine.runtime import wire

PROGRESS_FLUSH_S = 0.05
STOP_GRACE_S = 2.0
# How long a dying server may spend on its last words (a pipe nobody reads blocks).
LAST_WORDS_S = 0.5
_real_exit = os._exit


def _write_bounded(writes: list[tuple[int, bytes]], limit: float) -> None:
    """Each ``(fd, data)`` written in a daemon thread, given ``limit`` seconds in all:
    a dying process says what it can and exits, whatever state its pipes are in."""

    def write_all() -> None:
        for fd, data in writes:
            with contextlib.suppress(Exception):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]

    t = threading.Thread(target=write_all, daemon=True, name="last-words")
    t.start()
    t.join(limit)


@dataclass
class Run:
    ctx: TaskContext
    task: asyncio.Task[None] | None = None
    abort_sent: bool = False
    groups: set[int] = field(default_factory=set)
    log: LogBuffer = field(default_factory=LogBuffer)


class Server:
    def __init__(self, name: str, proto_in: int, proto_out: int) -> None:
        self.name = name
        self._in = proto_in
        self._out = proto_out
        self._write_lock = threading.Lock()
        self._outbox: list[dict[str, Any]] = []  # outcomes, progress said in this turn
        self._die_lock = threading.Lock()  # one death: a second caller waits for it
        self.runs: dict[int, Run] = {}
        self._dirty: dict[int, TaskContext] = {}
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._next_call = 0
        self._lease_deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._dying = False
        self._done = asyncio.Event()
        self._marker = os.environ.get(RUN_MARKER, "")

    # -- the channel ----------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        """Write ``msg`` now, after the outcomes waiting in the outbox (order kept)."""
        self._write([msg])

    def send_soon(self, msg: dict[str, Any]) -> None:
        """Write ``msg`` at the end of this turn of the loop, with the others said in it
        (from the loop's thread only): 100 runs canceled at once reach the supervisor as
        one line that it settles in one tick, not as 100 writes over several ticks."""
        with self._write_lock:
            self._outbox.append(msg)
            first = len(self._outbox) == 1
        if first and self._loop is not None:
            self._loop.call_soon(self._write, [])

    def _write(self, msgs: list[dict[str, Any]]) -> None:
        if self._dying:
            return
        with self._write_lock:
            msgs, self._outbox = self._outbox + msgs, []
            if msgs:
                self._write_locked(wire.encode_lines(msgs))

    def _write_locked(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._out, view)
            except BrokenPipeError:
                self.die("supervisor gone", 0)
            view = view[n:]

    def _read_forever(self) -> None:
        """The supervisor's messages, in a thread of its own: it notices the pipe closing
        even while task code holds the event loop."""
        with os.fdopen(self._in, "rb", buffering=0) as f:
            buf = b""
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                msgs = wire.decode_lines(lines)
                if msgs and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._on_messages, msgs)
        self.die("supervisor gone", 0)

    def _watch_lease(self) -> None:
        while True:
            time.sleep(0.05)
            deadline = self._lease_deadline
            if deadline is not None and time.monotonic() > deadline:
                self.die("lease not renewed by the supervisor: stopped every task", 75)

    def die(self, why: str, code: int) -> None:
        """End now, with every process a task started: from any thread, even a signal."""
        with self._die_lock:
            self._die_now(why, code)

    def _die_now(self, why: str, code: int) -> None:
        # Nothing stands between the decision and the kill: a word on stderr or the
        # channel comes after it, never before. A print to a pipe whose reader died
        # raises BrokenPipeError, one to a full pipe blocks: either would leave every task
        # of a gone supervisor running on, perhaps a second copy elsewhere.
        # From here nothing more is said on the channel: the outcomes of the kill below
        # ("killed by SIGKILL") are not the tasks' own. Outcomes already said still
        # count; a writer that holds the lock (the pipe broke under it) is dying itself.
        self._dying = True
        last: list[tuple[int, bytes]] = []
        if self._outbox and self._write_lock.acquire(blocking=False):
            try:
                msgs, self._outbox = self._outbox, []
                with contextlib.suppress(Exception):
                    last.append((self._out, wire.encode_batch(msgs)))
            finally:
                self._write_lock.release()
        groups = {g for r in list(self.runs.values()) for g in r.groups}
        markers = [(RUN_MARKER, self._marker)] if self._marker else []
        with contextlib.suppress(Exception):
            kill_all_blocking(groups, markers, limit=2.0)
        last.append((2, f"batchdeck server {self.name}: {why}\n".encode(errors="replace")))
        _write_bounded(last, LAST_WORDS_S)
        _real_exit(code)

    def _exit_hook(self, code: int = 0) -> None:
        """``os._exit`` called by task code: say which task, then exit as asked."""
        tid = CURRENT_TASK.get()
        try:
            if tid is not None:
                self.send({"op": "exit", "task": tid, "code": code})
        finally:
            _real_exit(code)

    # -- messages from the supervisor -----------------------------------------------
    def _on_messages(self, msgs: list[dict[str, Any]]) -> None:
        for m in msgs:
            op = m["op"]
            if op == "run":
                self._start(m)
            elif op == "cancel":
                run = self.runs.get(m["task"])
                if run is not None:
                    run.ctx.request_cancel()
            elif op == "abort":
                run = self.runs.get(m["task"])
                if run is not None and not run.abort_sent:
                    run.abort_sent = True
                    run.ctx.abort_requested = True
                    run.ctx.request_cancel()
                    if run.task is not None:
                        run.task.cancel()
            elif op == "lease":
                self._lease_deadline = time.monotonic() + float(m["valid_for"])
            elif op == "reply":
                fut = self._calls.pop(m["id"], None)
                if fut is not None and not fut.done():
                    if "error" in m:
                        fut.set_exception(ActionError(m["error"]))
                    else:
                        fut.set_result(m.get("value"))
            elif op == "stop":
                self._stopping = True
                self._done.set()

    def _start(self, m: dict[str, Any]) -> None:
        ctx = TaskContext(
            task_id=m["task"],
            job_id=m["job"],
            name=m["name"],
            action=m["action"],
            attempt=m["attempt"],
            server=self.name,
            recipe_path=m.get("recipe_path"),
            hooks=self,
            run_thread=run_in_daemon_thread,
            token=m["token"],
        )
        ctx.child_job_id = m.get("child")
        ctx.remote_job = m.get("remote_job")
        run = Run(ctx, log=LogBuffer(m.get("log_max", DEFAULT_MAX_BYTES)))
        self.runs[ctx.task_id] = run
        run.task = asyncio.create_task(self._execute(run, m), name=f"task-{ctx.task_id}")

    async def _execute(self, run: Run, m: dict[str, Any]) -> None:
        ctx = run.ctx
        CURRENT_TASK.set(ctx.task_id)
        outcome, message = "ended", None
        try:
            action = get_action(m["action"])
            if action is None:
                raise ActionError(f"unknown action {m['action']!r}")
            result = await action.run(ctx, **json.loads(m["params_json"]))
            message = result if isinstance(result, str) else ctx.message
        except TaskCanceled as exc:
            outcome, message = "canceled", str(exc)
        except asyncio.CancelledError:
            outcome = "aborted" if run.abort_sent else "interrupted"
            message = ctx.message
        except SystemExit as exc:
            code = exc.code if exc.code is not None else 0
            outcome, message = "error", f"task code exited with status {code}"
        except Exception as exc:  # noqa: BLE001 - any failure of an action is the task's Error
            outcome, message = "error", str(exc) or type(exc).__name__
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and kin: its own Error
            outcome, message = "error", f"task code raised {type(exc).__name__}"
        # Its code has stopped here; so must every process it started, before a word
        # of its outcome is said.
        if run.groups:
            left = await kill_all(run.groups, limit=5.0)
            while left:
                ctx.log(f"waiting for pids {', '.join(map(str, left))} to exit")
                self._flush_one(ctx)
                left = await kill_all(run.groups, limit=5.0)
        self._send_log(run, final=True)  # every line before the outcome
        self.runs.pop(ctx.task_id, None)
        self._dirty.pop(ctx.task_id, None)
        self.send_soon(
            {
                "op": "done",
                "task": ctx.task_id,
                "outcome": outcome,
                "message": wire.cut(message),
                "progress": wire.progress_of(ctx),
            }
        )

    # -- hooks for actions (engine.context.EngineHooks) --------------------------------
    def note_dirty(self, ctx: TaskContext) -> None:
        self._dirty[ctx.task_id] = ctx

    def note_log(self, ctx: TaskContext, stream: str, data: bytes) -> None:
        run = self.runs.get(ctx.task_id)
        if run is not None:
            run.log.feed(stream, data)

    def _send_log(self, run: Run, *, final: bool = False) -> None:
        for msg in log_messages(run.ctx.task_id, *run.log.take(final=final)):
            self.send_soon(msg)

    def note_process_group(self, ctx: TaskContext, pgid: int) -> None:
        run = self.runs.get(ctx.task_id)
        if run is not None:
            run.groups.add(pgid)
        self.send({"op": "pgid", "task": ctx.task_id, "pgid": pgid})

    async def _call(self, ctx: TaskContext, fn: str, *args: Any) -> Any:
        self._next_call += 1
        cid = self._next_call
        fut = asyncio.get_running_loop().create_future()
        self._calls[cid] = fut
        self.send({"op": "call", "id": cid, "task": ctx.task_id, "fn": fn, "args": list(args)})
        try:
            return await fut
        except asyncio.CancelledError:
            self.send({"op": "uncall", "id": cid})
            raise
        finally:
            self._calls.pop(cid, None)

    async def submit_child(self, ctx: TaskContext, recipe_path: str, mode: str) -> int:
        self._flush_one(ctx)  # a retry must find what this run recorded so far
        return int(await self._call(ctx, "submit_child", recipe_path, mode))

    async def record_remote_job(self, ctx: TaskContext, remote_job: str) -> None:
        await self._call(ctx, "record_remote_job", remote_job)

    async def wait_job(self, job_id: int) -> str:
        tid = CURRENT_TASK.get()
        run = self.runs.get(tid) if tid is not None else None
        assert run is not None
        return str(await self._call(run.ctx, "wait_job", job_id))

    async def wait_approval(self, ctx: TaskContext) -> tuple[str, str]:
        decision, by = await self._call(ctx, "wait_approval")
        return str(decision), str(by)

    # -- the loop -------------------------------------------------------------------
    def _send_progress(self, ctx: TaskContext) -> None:
        self.send_soon({"op": "progress", "task": ctx.task_id, "progress": wire.progress_of(ctx)})

    def _flush_one(self, ctx: TaskContext) -> None:
        self._dirty.pop(ctx.task_id, None)
        self._send_progress(ctx)

    async def _flush_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_FLUSH_S)
            dirty, self._dirty = self._dirty, {}
            for ctx in dirty.values():
                if ctx.task_id in self.runs:
                    self._send_progress(ctx)
            for run in list(self.runs.values()):
                self._send_log(run)

    async def main(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._read_forever, daemon=True, name="supervisor-pipe").start()
        threading.Thread(target=self._watch_lease, daemon=True, name="lease-watch").start()
        flusher = asyncio.create_task(self._flush_progress())
        self.send({"op": "ready", "pid": os.getpid()})
        await self._done.wait()
        # Stop: every run is interrupted; those that end in time report it themselves.
        tasks = [r.task for r in self.runs.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        flusher.cancel()
        self.die("stopped", 0)


def main() -> None:
    name = sys.argv[1]
    # The channel keeps the pipes; fd 0 and 1 become what task code may use freely.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    faulthandler.enable()
    # Terminal keys are the console's, not ours; the supervisor stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = Server(name, proto_in, proto_out)
    signal.signal(signal.SIGTERM, lambda *_: server.die("terminated", 0))
    os._exit = server._exit_hook  # type: ignore[assignment]
    asyncio.run(server.main())


if __name__ == "__main__":
    main()
