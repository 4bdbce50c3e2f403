"""What an action sees while it runs: cancel requests, progress, log, unmanaged waits.

Outcomes: an action that returns has Ended (its return value, if a string, becomes the
task's last message); one that raises ``TaskCanceled`` stopped at a safe point after a
cancel (Canceled); any other exception is an Error. An abort cancels the action's
asyncio task: actions clean up in ``except asyncio.CancelledError`` (kill a process
group, roll back a chunk) and re-raise.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

R = TypeVar("R")

# The task whose code is running, in this asyncio task or thread: a server process
# names it when task code ends the process (``os._exit``).
CURRENT_TASK: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "batchdeck_task", default=None
)


class TaskCanceled(Exception):
    """A long action stopped at a safe point because the task is Canceling."""


class ActionError(Exception):
    """An action failed in a way the operator should read as one line."""


class EngineHooks(Protocol):
    """What the engine provides to a running task besides its own state."""

    async def submit_child(self, ctx: TaskContext, recipe_path: str, mode: str) -> int: ...

    async def wait_job(self, job_id: int) -> str: ...

    async def wait_approval(self, ctx: TaskContext) -> tuple[str, str]: ...

    def note_dirty(self, ctx: TaskContext) -> None: ...

    def note_process_group(self, ctx: TaskContext, pgid: int) -> None: ...

    async def record_remote_job(self, ctx: TaskContext, remote_job: str) -> None: ...


class TaskContext:
    """One run (attempt) of one task."""

    def __init__(
        self,
        *,
        task_id: int,
        job_id: int,
        name: str,
        action: str,
        attempt: int,
        server: str,
        recipe_path: str | None,
        hooks: EngineHooks,
        run_thread: Callable[..., asyncio.Future[Any]],
        token: str = "",
    ) -> None:
        self.task_id = task_id
        self.token = token  # the claim this run belongs to (fencing)
        self.job_id = job_id
        self.name = name
        self.action = action
        self.attempt = attempt
        self.server = server
        self.recipe_path = recipe_path
        self._hooks = hooks
        self._run_thread = run_thread
        self._cancel = asyncio.Event()
        self.aborting = False
        self.abandoned = False  # a restart or shutdown gave up on this run
        self.in_unmanaged_wait = False
        # Written by the action, flushed by the engine in its next batch.
        self.progress_done: float = 0
        self.progress_total: float | None = None
        self.progress_unit: str | None = None
        self.message: str | None = None
        self.output_tail: str | None = None
        self.child_job_id: int | None = None
        # The job a remote long action started on its remote service (an earlier
        # attempt's, when this run follows it again).
        self.remote_job: str | None = None
        self.abort_requested = False  # an operator's abort, not an engine stopping

    # -- cancel ------------------------------------------------------------------
    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def request_cancel(self) -> None:
        self._cancel.set()

    async def wait_cancel(self) -> None:
        await self._cancel.wait()

    def checkpoint(self, message: str | None = None) -> None:
        """A safe point: raise TaskCanceled if a cancel has been asked for."""
        if self._cancel.is_set():
            raise TaskCanceled(message or self.message or "stopped at a safe point")

    # -- reporting ---------------------------------------------------------------
    def progress(self, done: float, total: float | None = None, unit: str | None = None) -> None:
        self.progress_done = done
        if total is not None:
            self.progress_total = total
        if unit is not None:
            self.progress_unit = unit
        self._hooks.note_dirty(self)

    def log(self, message: str) -> None:
        """A line for the task's log (kept, ``engine.core.logs``), and its last message."""
        self.message = message
        self.write_log("log", message.encode("utf-8", "replace") + b"\n")
        self._hooks.note_dirty(self)

    def tell(self, message: str) -> None:
        """The task's last message only, not a line of its log (a command's last line,
        already in its log as output)."""
        self.message = message
        self._hooks.note_dirty(self)

    def write_log(self, stream: str, data: bytes) -> None:
        """Bytes of the task's log: ``out``/``err`` of a command, ``log`` lines."""
        note = getattr(self._hooks, "note_log", None)
        if note is not None:
            note(self, stream, data)

    def output(self, tail: str) -> None:
        self.output_tail = tail
        self._hooks.note_dirty(self)

    def started_process_group(self, pgid: int) -> None:
        """A process group this task started: killed with the task's server if it dies."""
        note = getattr(self._hooks, "note_process_group", None)
        if note is not None:
            note(self, pgid)

    # -- waits -------------------------------------------------------------------
    async def run_blocking(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn`` in a thread: an unmanaged wait, which an abort cannot interrupt.

        If the task is aborted meanwhile it shows Aborting until ``fn`` returns; then the
        result is discarded and CancelledError ends the action. Only a server restart
        (enhanced abort) abandons the thread.
        """
        fut = self._run_thread(fn, *args)
        self.in_unmanaged_wait = True
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            self.aborting = True
            if self.abandoned:
                raise  # the thread runs on alone; its result is never read
            try:
                await asyncio.shield(fut)
            except BaseException:  # noqa: BLE001 - the result is discarded either way
                pass
            raise
        finally:
            self.in_unmanaged_wait = False

    async def submit_child(self, recipe_path: str, mode: str) -> int:
        self.child_job_id = await self._hooks.submit_child(self, recipe_path, mode)
        return self.child_job_id

    async def wait_job(self, job_id: int) -> str:
        return await self._hooks.wait_job(job_id)

    async def record_remote_job(self, remote_job: str) -> None:
        """Store the remote job's id on the task now, fenced by this run's claim (an
        ActionError if the run no longer holds its task): a later attempt follows it."""
        await self._hooks.record_remote_job(self, remote_job)
        self.remote_job = remote_job

    async def wait_approval(self) -> tuple[str, str]:
        """Wait for the operator: ("approved" or "rejected", who decided)."""
        return await self._hooks.wait_approval(self)


def run_in_daemon_thread(fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
    """Run ``fn`` in a daemon thread; the process may exit without waiting for it.

    The default executor's threads are joined at interpreter exit, so a task stuck in
    an unmanaged wait would keep a quitting console alive; a daemon thread does not.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[R] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def target() -> None:
        try:
            value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            ok, value = False, exc
        else:
            ok = True
        try:
            loop.call_soon_threadsafe(deliver, ok, value)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    # The thread runs in the caller's context: CURRENT_TASK names its task there too.
    ctx = contextvars.copy_context()
    threading.Thread(
        target=ctx.run, args=(target,), daemon=True, name="batchdeck-unmanaged-wait"
    ).start()
    return fut
