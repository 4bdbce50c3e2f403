"""A doorbell for the engines on a SQLite file: a writer rings it after its commit, so
that an engine in another process looks at ``PRAGMA data_version`` at once instead of
at its next poll (``engine.runtime.supervisor.WATCH_S``). A cancel from the command line then
reaches the running task in about a millisecond more than the tick itself.

A bell is a datagram socket in Linux's abstract namespace (no file to create, clean up
or give a mode to), named after the database file's real path; an engine binds the
first free one of ``BELLS`` names, a writer sends one byte to each. The ring carries no
information: an engine that hears one only looks at ``data_version`` (a few
microseconds), so a ring from anyone else costs nothing more. Nothing depends on it:
where a ring cannot be sent or heard (another network namespace, another OS), the
engine's poll still sees the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Callable

# Engines on one file (one per set of servers) each take a bell of their own.
BELLS = 8


def _names(path: str) -> list[bytes]:
    key = hashlib.sha1(os.path.realpath(path).encode(), usedforsecurity=False).hexdigest()[:20]
    return [f"\0batchdeck-bell-{key}-{i}".encode() for i in range(BELLS)]


def ring(path: str) -> None:
    """Tell the engines on the SQLite file ``path`` that it changed; never raises."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for name in _names(path):
            with contextlib.suppress(OSError):  # nobody there, or their queue full
                s.sendto(b"!", name)


class Doorbell:
    """An engine's bell on the SQLite file ``path``: ``heard`` runs on the event loop
    each time it rings. ``None`` from ``open`` where no bell can be had."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop

    @classmethod
    def open(cls, path: str, heard: Callable[[], None]) -> Doorbell | None:
        if not sys.platform.startswith("linux"):
            return None
        loop = asyncio.get_running_loop()
        for name in _names(path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(name)
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            bell = cls(sock, loop)
            loop.add_reader(sock.fileno(), bell._drain, heard)
            return bell
        return None

    def _drain(self, heard: Callable[[], None]) -> None:
        # Many rings between two looks are one look.
        with contextlib.suppress(OSError):
            while self._sock.recv(64):
                pass
        heard()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
