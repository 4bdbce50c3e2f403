"""The batch servers as an operator sees them: one row each, for `servers` and the console."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from engine import settings
from engine.format import stamp


def server_rows(conn: Connection, now: float) -> list[dict[str, Any]]:
    """name, status, host, pid, slots, in_use, drain_deadline, lease_age (s), owner, note."""
    ttl = settings.lease_seconds(conn)
    in_use = dict(
        conn.exec_driver_sql(
            "SELECT server, count(*) FROM task WHERE status IN "
            "('executing', 'canceling', 'aborting') AND server IS NOT NULL GROUP BY server"
        ).fetchall()
    )
    rows = []
    for name, status, host, pid, slots, deadline, owner, beat, note in conn.exec_driver_sql(
        "SELECT name, status, host, pid, slots, drain_deadline, lease_owner, heartbeat_at, note "
        "FROM server ORDER BY name"
    ):
        age = None if beat is None or owner is None else round(max(0.0, now - beat), 1)
        if status != "offline" and (age is None or age > ttl):
            status = "offline"  # its engine stopped beating: nothing serves it now
        rows.append(
            {
                "name": name,
                "status": status,
                "host": host,
                "pid": pid if status != "offline" else None,
                "slots": slots,
                "in_use": in_use.get(name, 0),
                "drain_deadline": deadline,
                "lease_age": age,
                "engine": owner,
                "note": note,
            }
        )
    return rows


def servers_table(rows: list[dict[str, Any]]) -> str:
    from engine.text_views import _table

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
