"""The batch servers as an operator sees them: one row each, for `servers` and the console."""

from __future__ import annotations

from typing import Any

from engine.core.format import stamp
from engine.core.views import ServerView


def server_rows(servers: list[ServerView], ttl: float, now: float) -> list[dict[str, Any]]:
    """name, status, host, pid, slots, in_use, drain_deadline, lease_age (s), engine,
    note, from the Reader's ``servers(now)`` (heartbeats on ``now``'s clock) and the
    lease length ``ttl``."""
    rows = []
    for s in servers:
        beat, owner = s.heartbeat_at, s.lease_owner
        age = None if beat is None or owner is None else round(max(0.0, now - beat), 1)
        status = s.status
        if status != "offline" and (age is None or age > ttl):
            status = "offline"  # its engine stopped beating: nothing serves it now
        rows.append(
            {
                "name": s.name,
                "status": status,
                "host": s.host,
                "pid": s.pid if status != "offline" else None,
                "slots": s.slots,
                "in_use": s.in_use,
                "drain_deadline": s.drain_deadline,
                "lease_age": age,
                "engine": owner,
                "note": s.note,
            }
        )
    return rows


def servers_table(rows: list[dict[str, Any]]) -> str:
    from engine.reader.text import _table

    if not rows:
        return "no servers"
    return _table(
        ["NAME", "STATUS", "HOST", "PID", "SLOTS", "IN USE", "DRAIN DEADLINE", "LEASE AGE", "NOTE"],
        [
            [
                r["name"],
                r["status"].capitalize(),
                r["host"] or "",
                str(r["pid"] or ""),
                str(r["slots"]),
                str(r["in_use"]),
                stamp(r["drain_deadline"]) if r["drain_deadline"] else "",
                f"{r['lease_age']:g} s" if r["lease_age"] is not None else "",
                r["note"] or "",
            ]
            for r in rows
        ],
    )
