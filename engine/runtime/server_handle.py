"""The supervisor's side of one batch server process: start it, talk to it, end it.

The process runs in a session of its own (the terminal's keys and hang-up are the
console's) and carries a marker in its environment, unique to this process, that
every process its tasks start inherits: ending a server means ending the process,
its threads with it, every process group its tasks started, and every marked
process — checked in ``/proc`` before the end is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Callable
from typing import IO, Any

from engine.core.procs import RUN_MARKER, kill_all
from engine.runtime import wire

TERM_GRACE_S = 2.0
START_LIMIT_S = 60.0
_LINE_LIMIT = 16 * 1024 * 1024

OnMessages = Callable[["ServerProcess", list[dict[str, Any]]], None]
OnExit = Callable[["ServerProcess"], None]


class ServerProcess:
    def __init__(
        self,
        name: str,
        on_messages: OnMessages,
        on_exit: OnExit,
        stderr: int | IO[Any] | None = None,
    ) -> None:
        self.name = name
        self._on_messages = on_messages
        self._on_exit = on_exit
        self._stderr = stderr if stderr is not None else asyncio.subprocess.DEVNULL
        self.marker = f"{name}:{uuid.uuid4().hex}"
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.exited = asyncio.Event()
        self.groups: dict[int, set[int]] = {}  # task id -> process groups it started
        self.exit_blame: dict[int, int] = {}  # task id -> os._exit status it called
        self.ending = False  # we are ending it on purpose: not a crash
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    async def start(self) -> None:
        env = dict(os.environ)
        env[RUN_MARKER] = self.marker
        # The server imports task code exactly as this process would.
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.runtime.server_proc",
            self.name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        self._reader = asyncio.create_task(self._read(), name=f"server-{self.name}-pipe")

    async def wait_ready(self, limit: float = START_LIMIT_S) -> bool:
        ready = asyncio.ensure_future(self.ready.wait())
        exited = asyncio.ensure_future(self.exited.wait())
        try:
            await asyncio.wait({ready, exited}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            exited.cancel()
        return self.ready.is_set() and not self.exited.is_set()

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                lines = [line]
                # Take everything already buffered in one go: one batch per wake-up.
                while b"\n" in stdout._buffer:  # noqa: SLF001 - cheap peek, no await
                    lines.append(await stdout.readline())
                msgs = wire.decode_lines(lines)
                for m in msgs:
                    if m["op"] == "ready":
                        self.ready.set()
                    elif m["op"] == "pgid":
                        self.groups.setdefault(m["task"], set()).add(m["pgid"])
                    elif m["op"] == "exit":
                        self.exit_blame[m["task"]] = m["code"]
                self._on_messages(self, msgs)
        except (ValueError, asyncio.LimitOverrunError) as exc:
            print(f"batchdeck: server {self.name}: bad message: {exc}", file=sys.stderr)
        finally:
            self._signal(signal.SIGKILL)
            await self.proc.wait()
            self.exited.set()
            if not self.ending:
                self._on_exit(self)

    def _signal(self, sig: int) -> None:
        # os.kill, not Popen.send_signal: that one polls first, reaping an exited process
        # behind the event loop's child watcher (which then reports a bogus status 255).
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def send(self, msgs: list[dict[str, Any]]) -> None:
        if self.proc is None or self.proc.stdin is None or self.exited.is_set():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(wire.encode_batch(msgs))

    def forget(self, task_id: int) -> None:
        self.groups.pop(task_id, None)

    async def end(self, *, graceful: bool, grace: float = TERM_GRACE_S) -> list[int]:
        """End the process and everything it started; returns pids still alive after
        every kill (uninterruptible sleep), which should be empty.

        Graceful: ``stop`` lets runs report their interruption first; otherwise SIGTERM
        (the server kills its tasks' processes and exits), SIGKILL after ``grace``.
        """
        self.ending = True
        if self.proc is not None and self.proc.returncode is None:
            if graceful:
                self.send([{"op": "stop"}])
            else:
                self._signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), grace + (2.0 if graceful else 0.0))
            self._signal(signal.SIGKILL)
        await self.reap()
        return await self.sweep()

    async def reap(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        elif self.proc is not None:
            await self.proc.wait()

    async def sweep(self) -> list[int]:
        """Kill whatever the server's tasks left behind, and prove it is gone."""
        pgids = {g for gs in self.groups.values() for g in gs}
        if self.proc is not None:
            pgids.add(self.proc.pid)  # its own session: what task code forked stays there
        return await kill_all(pgids, [(RUN_MARKER, self.marker)])
