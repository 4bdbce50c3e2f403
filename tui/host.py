"""What runs beside the console in one process: the embedded engine's lifetime, and what
happens on a signal or when the terminal goes away. ``tui.launch`` makes the host; the
console (``tui.app.BatchdeckApp``) only asks it to start, to say what runs, and to stop.

- SIGTERM / SIGINT (``request_exit``): a normal quit; the terminal is restored and an
  embedded engine stops (its running tasks go back to Ready).
- The terminal is gone (``request_hangup``: SIGHUP, or the periodic TTY check): the
  console exits. A real console's engine is handed off (``handed_off``) for
  ``tui.launch`` to run headless until its work is done: the jobs outlive the SSH
  session. The demo's engine (``end_on_hangup``) stops with its terminal: its data is
  throwaway, and its approval task would otherwise wait for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

TTY_CHECK_S = 2.0


class Console(Protocol):
    """What the host needs of the console app."""

    def notify(self, message: str, *, severity: Any = ..., timeout: float | None = ...) -> None: ...
    def set_mode(self, label: str) -> None: ...
    def exit(self, result: Any = ...) -> None: ...
    def call_later(self, callback: Callable[..., Any], *args: Any) -> bool: ...
    async def live_engines(self) -> dict[str, list[str]]: ...


class EngineHost:
    """``engine``: an Engine to start with the console and stop when it quits (embedded),
    or None (attached: control goes through the database; jobs outlive the console)."""

    def __init__(
        self,
        engine: Any = None,
        *,
        end_on_hangup: bool = False,
        watch_tty: Callable[[], bool] | None = None,
        tty_check_s: float = TTY_CHECK_S,
        after_start: Callable[[], Any] | None = None,
    ) -> None:
        self.engine = engine
        self.after_start = after_start  # a coroutine function run once the engine is up
        self.end_on_hangup = end_on_hangup
        self.running = False  # the engine started and has not been stopped
        self.handed_off: Any = None  # the running engine, when the terminal went away
        self.exit_requested = False
        self.on_tty_lost: Callable[[], None] | None = None  # set by tui.launch
        self._watch_tty = watch_tty
        self._tty_check_s = tty_check_s
        self._hangup_requested = False
        self._start_called = False  # start() ran
        self._console: Console | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start: asyncio.Task[None] | None = None
        self._stop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def servers(self) -> list[str]:
        return list(self.engine.servers) if self.engine is not None and self.running else []

    @property
    def stats(self) -> Any:
        """The running embedded engine's EngineStats (its errors: the header), or None."""
        return self.engine.stats if self.engine is not None and self.running else None

    # -- the console's side ------------------------------------------------------------
    def attach(self, console: Console) -> None:
        """The console is up (its ``on_mount``): from now on a signal reaches it."""
        self._console = console
        self._loop = asyncio.get_running_loop()
        if self.exit_requested:  # a signal came before the loop was known
            console.exit(0)
        elif self._hangup_requested:
            self.hangup()

    def start(self) -> None:
        """The console's first list is painted: start the engine, watch the terminal.
        (Not earlier: the first paint is what the operator waits for.)"""
        if self._console is None or self._start_called or self.exit_requested:
            return
        self._start_called = True
        if self.engine is not None and not self._hangup_requested:
            # A plain task, not a worker: Textual cancels workers when it exits, and a
            # start cancelled after its leases were written would leave them behind.
            self._start = self._spawn(self._start_engine(), "batchdeck-engine-start")
        if self._watch_tty is not None:
            self._spawn(self._check_tty(), "batchdeck-tty-check")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start_engine(self) -> None:
        from engine.runtime.tick import LeaseRefused

        console, engine = self._console, self.engine
        assert console is not None
        try:
            await engine.start()
        except Exception as exc:  # noqa: BLE001 - LeaseRefused or a broken database
            self.engine = None  # start() has closed what it opened
            from tui.app import attached_label
            from tui.data import one_line

            with contextlib.suppress(Exception):
                console.set_mode(attached_label(await console.live_engines()))
            if isinstance(exc, LeaseRefused):
                why = str(exc).removesuffix("; stop it first")
                console.notify(
                    f"Attached to the running engine ({why})", severity="warning", timeout=8
                )
            else:
                console.notify(
                    f"The engine did not start: {one_line(exc)}", severity="error", timeout=10
                )
            return
        self.running = True
        console.notify(f"Engine started: {', '.join(engine.servers)}", timeout=3)
        if self.after_start is not None:  # the demo's stuck job (tui.demo.stage_stuck)
            self._spawn(self.after_start(), "batchdeck-after-start")

    async def _started(self) -> None:
        """Until a start in progress has finished (successfully or not)."""
        task = self._start
        if task is not None and not task.done():
            await asyncio.wait([task])

    async def stop_engine(self) -> None:
        """Stop the embedded engine; one still starting is let finish first, then stopped.
        The stop is a task of its own: a caller cancelled meanwhile (the quit flow, when
        the app exits) does not cut it short, and ``detach`` waits for it."""
        await self._started()
        engine, self.engine = self.engine, None
        if engine is not None and self.running:
            self.running = False
            self._stop = self._spawn(engine.stop(), "batchdeck-engine-stop")
        if self._stop is not None:
            await asyncio.shield(self._stop)

    async def detach(self) -> None:
        """The console is going (its ``on_unmount``): stop the engine unless handed off."""
        for task in list(self._tasks):
            if task is not self._start and task is not self._stop:
                task.cancel()
        with contextlib.suppress(Exception):
            await self.stop_engine()

    # -- signals and a lost terminal (tui.launch calls these, from any thread) -----------
    def _soon(self, fn: Callable[[], None]) -> None:
        loop, console = self._loop, self._console
        if loop is not None and console is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(console.call_later, fn)

    def request_exit(self) -> None:
        """SIGTERM / SIGINT: exit normally (the terminal is restored, the engine stops)."""
        self.exit_requested = True
        if self._console is not None:
            self._soon(partial(self._console.exit, 0))

    def request_hangup(self) -> None:
        """The terminal is gone: see ``hangup``."""
        self._hangup_requested = True
        self._soon(self.hangup)

    def hangup(self) -> None:
        """End the console. A real console's running engine is kept in ``handed_off``;
        the demo's stops with the console."""
        if self._console is not None:
            self._spawn(self._hangup(self._console), "batchdeck-hangup")

    async def _hangup(self, console: Console) -> None:
        try:
            await self._started()
            keep = not (self.end_on_hangup or self.exit_requested)
            if keep and self.engine is not None and self.running:
                self.handed_off = self.engine
                self.engine, self.running = None, False
        finally:
            console.exit(0)

    async def _check_tty(self) -> None:
        assert self._watch_tty is not None
        while True:
            await asyncio.sleep(self._tty_check_s)
            if not self._watch_tty():
                if self.on_tty_lost is not None:
                    self.on_tty_lost()
                else:
                    self.hangup()
                return
