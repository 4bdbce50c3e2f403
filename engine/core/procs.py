"""Finding and killing every process a batch server or a task started, and proving it.

A process group is not enough to find them all: a command may start its own session
(``setsid``, a daemon's double fork). So every server process carries an environment
marker (``BATCHDECK_RUN``) that its descendants inherit, and each shell a task starts
carries the task's claim token (``BATCHDECK_CLAIM``). ``/proc`` tells us, for each
process, its group, its state and its environment: the truth a status is checked
against before a task is reported Aborted or a restarted server Online.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable

RUN_MARKER = "BATCHDECK_RUN"
CLAIM_MARKER = "BATCHDECK_CLAIM"
_PROC = "/proc"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid``, or None if it is gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0], int(fields[2])


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir(_PROC) if n.isdigit()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is dead: its code runs nowhere)."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def group_members(pgids: Iterable[int]) -> list[int]:
    """Live (non-zombie) processes whose process group is one of ``pgids``."""
    wanted = set(pgids)
    if not wanted:
        return []
    out = []
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[0] != "Z" and st[1] in wanted:
            out.append(pid)
    return out


def marked(name: str, value: str) -> list[int]:
    """Live processes whose environment holds ``name=value`` (ours is never listed);
    a ``value`` ending in ``|`` matches every value it begins."""
    needle = f"{name}={value}".encode()
    if not value.endswith("|"):
        needle += b"\0"
    me = os.getpid()
    out = []
    for pid in _pids():
        if pid == me:
            continue
        try:
            with open(f"{_PROC}/{pid}/environ", "rb") as f:
                env = f.read() + b"\0"
        except OSError:
            continue
        if (env.startswith(needle) or b"\0" + needle in env) and alive(pid):
            out.append(pid)
    return out


def kill_now(pids: Iterable[int] = (), pgids: Iterable[int] = ()) -> None:
    """SIGKILL these processes and groups; those already gone are skipped."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def survivors(pgids: Iterable[int] = (), markers: Iterable[tuple[str, str]] = ()) -> list[int]:
    pgids = list(pgids)
    found = set(group_members(pgids))
    for name, value in markers:
        found.update(marked(name, value))
    return sorted(found)


async def kill_all(
    pgids: Iterable[int] = (),
    markers: Iterable[tuple[str, str]] = (),
    pids: Iterable[int] = (),
    *,
    limit: float = 10.0,
) -> list[int]:
    """Kill every process in ``pgids``, marked with one of ``markers``, or in ``pids``,
    until none is left alive; returns those still alive after ``limit`` seconds (a
    process in uninterruptible sleep dies only when its system call returns)."""
    pgids, markers = list(pgids), list(markers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    left = [p for p in pids if alive(p)] + survivors(pgids, markers)
    while left:
        kill_now(left, pgids)
        await asyncio.sleep(0.02)
        left = [p for p in left if alive(p)] + survivors(pgids, markers)
        left = sorted(set(left))
        if loop.time() >= deadline:
            break
    return left


def kill_all_blocking(
    pgids: Iterable[int] = (), markers: Iterable[tuple[str, str]] = (), limit: float = 5.0
) -> list[int]:
    """``kill_all`` for code with no event loop (a server's exit path)."""
    pgids, markers = list(pgids), list(markers)
    deadline = time.monotonic() + limit
    left = survivors(pgids, markers)
    while left:
        kill_now(left, pgids)
        time.sleep(0.02)
        left = survivors(pgids, markers)
        if time.monotonic() >= deadline:
            break
    return left
