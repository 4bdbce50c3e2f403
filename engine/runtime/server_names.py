"""Batch server names, and the one parser of ``--server NAME[:SLOTS]`` (serve and the
console): a name is ``[A-Za-z0-9._-]``, up to 64 characters, so that it reads the same
in the ``servers`` table, a log line and a shell; slots are ASCII digits, 1 to 1000.

And forgetting a server (``batchdeck servers --forget NAME``): an Offline server stays
listed for good otherwise. Refused while an engine serves it or a task runs on it;
recorded in the audit. A flow (``engine.flows.base``): both paths, no SQLAlchemy.
"""

from __future__ import annotations

import re

from engine.core.refusal import Refusal
from engine.core.setting_values import bounded
from engine.flows.base import Transaction, add_event, at_or_now, setting
from engine.sql import keys

NAME_MAX = 64
MAX_SLOTS = 1000  # more slots than this on one server is a typo, not a machine
DEFAULT_SERVERS = {"batch-01": 4}
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def name_problem(name: str) -> str | None:
    """What is wrong with a server name, or None."""
    if not name:
        return "a server name cannot be empty"
    if len(name) > NAME_MAX:
        return f"a server name is at most {NAME_MAX} characters"
    if not _NAME.fullmatch(name):
        return "a server name uses only letters, digits, '.', '_' and '-'"
    return None


def _shown(spec: str) -> str:
    return repr(spec if len(spec) <= 40 else spec[:40] + "...")


def parse_servers(specs: list[str] | None) -> dict[str, int]:
    """``["batch-01:4", "batch-02"]`` -> {name: slots} (default 4 slots; no specs: the
    default server); raises ValueError naming the bad spec and what is wrong with it."""
    if not specs:
        return dict(DEFAULT_SERVERS)
    out: dict[str, int] = {}
    for spec in specs:
        name, colon, slots = spec.partition(":")
        problem = name_problem(name)
        if problem:
            raise ValueError(f"--server {_shown(spec)}: {problem}")
        if colon and not (slots.isascii() and slots.isdigit()):
            raise ValueError(f"--server {_shown(spec)}: slots must be a whole number (digits 0-9)")
        n = int(slots) if slots else 4
        if n > MAX_SLOTS:
            raise ValueError(f"--server {_shown(spec)}: at most {MAX_SLOTS} slots")
        if n < 1:
            raise ValueError(
                f"--server {_shown(spec)}: expected NAME or NAME:SLOTS with SLOTS >= 1"
            )
        out[name] = n
    return out


def forget(
    transaction: Transaction,
    name: str,
    *,
    actor: str,
    at: float | None = None,
) -> str:
    """Remove the server ``name`` from the servers table, with an event saying who did.
    A Refusal (nothing changed) while an engine's lease on it is live or a task runs on
    it: forgetting is for servers no engine runs any more. ``at``: default now."""
    at = at_or_now(at)
    with transaction() as sql:
        rows = sql.rows(keys.SERVER_ONE, {"name": name})
        if not rows:
            raise Refusal("missing", f"no server named {name!r}")
        row = rows[0]
        ttl = bounded("lease_seconds", setting(sql, "lease_seconds"))
        if row.lease_owner and (row.heartbeat_at or 0) > sql.db_now(at) - ttl:
            raise Refusal(
                "busy",
                f"server {name} is {str(row.status).capitalize()}: an engine serves it; "
                "stop that engine first",
            )
        busy = sql.rows(keys.SERVER_RUNNING_TASKS, {"name": name})[0][0]
        if busy:
            raise Refusal(
                "busy",
                f"server {name} holds {busy} running task{'s' if busy != 1 else ''}: "
                "an engine must recover them first",
            )
        sql.run(keys.SERVER_FORGET, {"name": name})
        add_event(sql, at=at, actor=actor, kind="server", server=name, reason="forgotten")
    return f"Server {name} forgotten"
