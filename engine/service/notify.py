"""systemd's notify protocol (sd_notify(3)): datagrams of ``KEY=value`` lines on the
Unix socket named by ``NOTIFY_SOCKET``. A few lines of the standard library, so
``serve`` needs no library for it.

What ``serve`` says: ``READY=1`` once its servers run; ``STATUS=`` one line ("2 servers,
14 running, 3 waiting"); ``WATCHDOG=1`` every half ``WATCHDOG_USEC``, only while its
database writes succeed (``Pulse``) and its loop runs (the petting is a task on that
loop); ``STOPPING=1`` when it stops. systemd restarts an engine that stops petting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.service.pulse import Pulse

# How often STATUS is refreshed when nothing else prompts it.
STATUS_EVERY_S = 2.0


class Notifier:
    """A datagram socket to systemd's notify socket. A send that fails (the manager
    gone) is dropped: the engine serves on whatever systemd does."""

    def __init__(self, address: str) -> None:
        # "@name": an abstract socket (Linux), as systemd writes it.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sent: list[str] = []  # the last messages, for the log on failure

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier | None:
        address = env.get("NOTIFY_SOCKET", "")
        return cls(address) if address else None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False if it could not be sent."""
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self._sock.close()


def watchdog_seconds(env: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog period systemd asks for (``WATCHDOG_USEC``), or None: none asked,
    or asked of another process (``WATCHDOG_PID``)."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class SystemdLink:
    """READY, STATUS and the watchdog for one engine (``engine.runtime.supervisor.Engine``).

    ``waiting()``: how many jobs wait to start, read off the loop; a read that fails or
    hangs leaves the last figure (the watchdog never waits on it).
    """

    def __init__(
        self,
        engine: Any,
        notifier: Notifier,
        *,
        pulse: Pulse,
        lease_s: float,
        watchdog_s: float | None,
        waiting: Callable[[], Awaitable[int]],
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.engine = engine
        self.notifier = notifier
        self.pulse = pulse  # already among the engine's write hooks
        self.lease_s = lease_s
        self.watchdog_s = watchdog_s
        self._waiting_read = waiting
        self._waiting = 0
        self._log = log
        self._petting = True
        self._tasks: list[asyncio.Task[Any]] = []

    def status(self) -> str:
        n = len(self.engine.servers)
        return (
            f"{n} server{'s' if n != 1 else ''}, {self.engine.running} running, "
            f"{self._waiting} waiting"
        )

    async def start(self) -> None:
        """Say READY (the engine serves), then keep STATUS and the watchdog going."""
        with contextlib.suppress(Exception):
            self._waiting = await asyncio.wait_for(self._waiting_read(), STATUS_EVERY_S)
        self.notifier.send("READY=1", f"STATUS={self.status()}", f"MAINPID={os.getpid()}")
        self._tasks.append(asyncio.create_task(self._statuses(), name="systemd-status"))
        if self.watchdog_s is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(), name="systemd-watchdog"))

    def trouble(self) -> str | None:
        """One line when no database write has succeeded within the lease, else None."""
        if self.pulse.fresh(self.lease_s):
            return None
        return (
            f"no database write has succeeded for {self.pulse.silent_for():.0f} s "
            f"(lease {self.lease_s:g} s)"
            + ("" if self.watchdog_s is None else ": not petting the watchdog")
        )

    async def _statuses(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            with contextlib.suppress(Exception):
                self._waiting = await asyncio.wait_for(self._waiting_read(), STATUS_EVERY_S)
            self.notifier.send(f"STATUS={self.trouble() or self.status()}")

    async def _watchdog(self) -> None:
        assert self.watchdog_s is not None
        while True:
            trouble = self.trouble()
            if trouble is None:
                if not self._petting:
                    self._log("database writes succeed again; petting the watchdog")
                    self.notifier.send(f"STATUS={self.status()}")
                self._petting = True
                self.notifier.send("WATCHDOG=1")
            elif self._petting:
                self._petting = False
                self._log(trouble)
                self.notifier.send(f"STATUS={trouble}")
            await asyncio.sleep(self.watchdog_s / 2)

    async def stopping(self) -> None:
        """STOPPING=1, and no more petting: the stop may take a while."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.notifier.send("STOPPING=1", "STATUS=stopping: running tasks go back to Ready")
