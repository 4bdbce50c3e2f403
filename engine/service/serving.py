"""What ``batchdeck serve`` adds around its engine when run as a service: the systemd
notify link when ``NOTIFY_SOCKET`` is set, the metrics endpoint when asked. The command
calls ``Service.prepare`` before the engine starts, ``attach`` once it serves,
``stopping`` when asked to stop, ``close`` after."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from engine.service.notify import Notifier, SystemdLink, watchdog_seconds
from engine.service.pulse import Pulse

SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Service:
    def __init__(self, metrics: Any, notifier: Notifier | None, watchdog_s: float | None) -> None:
        self.metrics_server = metrics
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.link: SystemdLink | None = None
        self._reader: Any = None

    @classmethod
    def prepare(
        cls, metrics: tuple[str, int] | None, env: Mapping[str, str] = os.environ
    ) -> Service:
        """Bind the metrics port (OSError when it cannot: in use, no such address), and
        take systemd's variables out of the environment (as sd_notify's
        ``unset_environment`` does): the server processes and the tasks they run are
        not the service, and must not speak for it."""
        server = None
        if metrics is not None:
            from engine.service.metrics import MetricsServer

            server = MetricsServer(*metrics)
        service = cls(server, Notifier.from_env(env), watchdog_seconds(env))
        if env is os.environ:
            for name in SYSTEMD_VARIABLES:
                os.environ.pop(name, None)
        return service

    async def attach(self, engine: Any, log: Callable[[str], None], *, since: float = 0.0) -> None:
        """The engine serves: READY, then STATUS and the watchdog; metrics from now on,
        counting what the engine did from ``since`` (when it started)."""
        if self.metrics_server is None and self.notifier is None:
            return
        from engine.reader.reader import Reader

        self._reader = Reader(engine.db_path)  # reads on a thread of its own
        lease_s = await self._reader.lease_seconds()
        pulse = Pulse()
        engine.write_hooks.append(pulse)
        if self.metrics_server is not None:
            self.metrics_server.serve(engine, pulse, lease_s=lease_s, since=since)
            log(f"metrics on {self.metrics_server.url}")
        if self.notifier is not None:
            reader = self._reader

            async def waiting() -> int:
                return int(await reader.count_jobs(statuses=["waiting"]))

            self.link = SystemdLink(
                engine,
                self.notifier,
                pulse=pulse,
                lease_s=lease_s,
                watchdog_s=self.watchdog_s,
                waiting=waiting,
                log=log,
            )
            await self.link.start()

    async def stopping(self) -> None:
        if self.link is not None:
            await self.link.stopping()

    async def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.notifier is not None:
            self.notifier.close()
        if self._reader is not None:
            await self._reader.close()
