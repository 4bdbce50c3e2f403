"""`shell`: run a command (argv, no shell) in its own process group, keeping its output tail."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections import deque
from typing import Any

from engine.actions._tasks import cancel_and_wait, fmt_seconds
from engine.actions.base import Action, Param
from engine.actions.context import ActionError, TaskCanceled, TaskContext
from engine.core.procs import CLAIM_MARKER, kill_all

TAIL_LINES = 20
TAIL_CHARS = 4000
_READ_SIZE = 65536
# After SIGKILL, how long an abort waits for the process to exit before it gives up.
KILL_GRACE = 5.0


class _Tail:
    """The last lines of stdout and stderr together, as the console shows them: whole
    lines in the order they came, each stream's unfinished line kept apart."""

    def __init__(self) -> None:
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._lines: deque[str] = deque(maxlen=TAIL_LINES)
        self._partials: dict[str, str] = {}

    def feed(self, data: bytes, final: bool = False, stream: str = "out") -> None:
        if len(data) > 4 * TAIL_CHARS:
            # Only the last lines can show: keep the whole lines of the read's end (the
            # lines before them, and the unfinished one, are gone from view anyway).
            data = data[-2 * TAIL_CHARS :]
            data = data[data.find(b"\n") + 1 :]
            self._partials[stream] = ""
            self._decoders.pop(stream, None)
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        text = self._partials.get(stream, "") + decoder.decode(data, final)
        parts = text.replace("\r\n", "\n").split("\n")
        partial = parts.pop()
        for line in parts:
            # A progress bar redraws with "\r": only its last state is worth keeping.
            self._lines.append(line.rsplit("\r", 1)[-1])
        # A line with no newline (a runaway progress bar) must not grow without bound.
        self._partials[stream] = partial[-TAIL_CHARS:]

    @property
    def text(self) -> str:
        lines = list(self._lines)
        lines += [p.rsplit("\r", 1)[-1] for p in self._partials.values() if p]
        return "\n".join(lines)[-TAIL_CHARS:]

    @property
    def last_line(self) -> str:
        for line in reversed(self.text.split("\n")):
            if line.strip():
                return line.strip()
        return ""


async def _pump(
    stream: asyncio.StreamReader, tail: _Tail, ctx: TaskContext, name: str = "out"
) -> None:
    """Every byte to the task's log as ``name`` (out, err); the tail for the preview."""
    while data := await stream.read(_READ_SIZE):
        ctx.write_log(name, data)
        tail.feed(data, stream=name)
        ctx.output(tail.text)
        if tail.last_line:
            ctx.tell(tail.last_line)


async def _pump_both(proc: asyncio.subprocess.Process, tail: _Tail, ctx: TaskContext) -> None:
    """stdout and stderr, each kept apart in the log, both in the one preview tail."""
    assert proc.stdout is not None and proc.stderr is not None
    await asyncio.gather(_pump(proc.stdout, tail, ctx, "out"), _pump(proc.stderr, tail, ctx, "err"))
    for name in ("out", "err"):
        tail.feed(b"", final=True, stream=name)
    ctx.output(tail.text)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group may already be gone (everything exited): nothing left to signal.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _reap(
    proc: asyncio.subprocess.Process, waiter: asyncio.Future[Any], grace: float = KILL_GRACE
) -> bool:
    """After SIGKILL: wait for the exit status, even through a repeated abort; True once
    the process has exited.

    A process in uninterruptible sleep (stuck in the kernel, on a dead NFS mount say)
    dies only when that call returns, which may be never: past ``grace`` seconds, give
    up, so that the abort ends and the console can quit. The event loop's child watcher
    keeps waiting for that pid and collects it whenever it does exit.

    ``proc.wait()`` also waits for the output pipe to close, which a grandchild that
    left the process group could hold open forever; so wait on the exit status, and
    give the pipe only a moment.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while proc.returncode is None:
        if loop.time() >= deadline:
            return False
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            continue  # already being aborted: the group is killed, keep reaping
    try:
        await asyncio.wait({waiter}, timeout=1.0)
    except asyncio.CancelledError:
        pass  # it has exited; only its output may be unread
    return True


async def run(ctx: TaskContext, command: list[str], on_cancel: str, cwd: str | None) -> str:
    if cwd is None and ctx.recipe_path:
        cwd = os.path.dirname(os.path.abspath(ctx.recipe_path))
    env = dict(os.environ)
    if ctx.token:
        # Every process of this run inherits the claim: a restart or a recovery finds
        # them all by it, even those that left the process group.
        env[CLAIM_MARKER] = ctx.token
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            # Its own session, hence its own process group: cancel and abort signal the
            # whole group, so children the command started stop with it.
            start_new_session=True,
        )
    )
    try:
        # Shielded: a cancel or abort during the spawn must not let asyncio kill only
        # the first process (it kills the pid, not the group): wait for it, then kill
        # the whole group below.
        proc = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        while not spawn.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({spawn})
        if spawn.cancelled() or spawn.exception() is not None:
            raise
        proc = spawn.result()
        _signal_group(proc.pid, signal.SIGKILL)
        waiter = asyncio.ensure_future(proc.wait())
        await _reap(proc, waiter)
        await cancel_and_wait(waiter)
        raise
    except OSError as exc:
        if cwd is not None and not os.path.isdir(cwd):
            # The spawn fails with ENOENT for a missing cwd too: name the directory.
            raise ActionError(f"cannot run {command[0]!r}: no such directory: {cwd}") from exc
        raise ActionError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from exc
    ctx.started_process_group(proc.pid)
    pgid = proc.pid
    ctx.log(f"started pid {proc.pid}")
    tail = _Tail()
    reader = asyncio.ensure_future(_pump_both(proc, tail, ctx))
    waiter = asyncio.ensure_future(proc.wait())
    terminated = False
    try:
        if on_cancel == "terminate":
            cancel = asyncio.ensure_future(ctx.wait_cancel())
            try:
                await asyncio.wait({waiter, cancel}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(cancel)
            if not waiter.done():
                terminated = True
                ctx.log("cancel requested: sent SIGTERM, waiting for the command to exit")
                _signal_group(pgid, signal.SIGTERM)
        rc = await asyncio.shield(waiter)
        await asyncio.shield(reader)
    except asyncio.CancelledError:
        _signal_group(pgid, signal.SIGKILL)
        if not await _reap(proc, waiter):
            ctx.log(
                f"pid {proc.pid} killed but not exited after {fmt_seconds(KILL_GRACE)} s "
                "(uninterruptible sleep?): left to be collected when it exits"
            )
        await cancel_and_wait(reader, waiter)
        if ctx.token:
            # Reported Aborted only once no process of this run is left anywhere.
            await asyncio.shield(kill_all([pgid], [(CLAIM_MARKER, ctx.token)], limit=KILL_GRACE))
        raise
    if terminated and rc != 0:
        raise TaskCanceled("terminated by SIGTERM on cancel")
    last = tail.last_line
    if rc != 0:
        if rc < 0:
            status = f"killed by {signal.Signals(-rc).name}"
        else:
            status = f"exit status {rc}"
        raise ActionError(f"{status}: {last}" if last else status)
    return last or "exit status 0"


def _check(params: dict[str, Any]) -> tuple[str, str] | None:
    if not params["command"]:
        return "command", "must not be empty"
    if not params["command"][0]:
        return "command", "the program name must not be empty"
    return None


ACTION = Action(
    name="shell",
    run=run,
    params=(
        Param("command", list),
        Param(
            "on_cancel", str, required=False, default="terminate", choices=("terminate", "finish")
        ),
        Param("cwd", str, required=False, default=None, is_path=True),
    ),
    long=True,
    doc="Run a command (argv list, no shell) in its own process group; keep its output tail.",
    check=_check,
)
