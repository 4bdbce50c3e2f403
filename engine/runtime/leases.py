"""Leases judged by a clock that cannot jump, and a beat that tells the truth.

A peer's lease is expired only once this engine has seen it unchanged for a whole
lease of its own monotonic time, during which its own beats went through: the wall
clock may jump an hour (and on SQLite every heartbeat is written on some engine's
wall clock), and while the database is out of reach nobody can renew anything, so
that time counts for nobody. The takeover then checks, in its own transaction, that
the lease is still the one seen; what ran there is killed only after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import String, literal, or_, select, update
from sqlalchemy.engine import Connection

from engine.core.db_outage import NOTE_PREFIX
from engine.runtime import tick as batch
from engine.store.dialect import in_list
from engine.store.tables import server, task
from engine.store.writes import add_event


@dataclass
class PeerLeases:
    """What this engine saw of other engines' leases: (owner, heartbeat) and when
    (monotonic) it first saw each unchanged. ``lease_s``: how long one must be seen
    unchanged to count as expired (the engine sets a lease and a beat)."""

    lease_s: float
    seen: dict[str, tuple[str, float, float]] = field(default_factory=dict)

    def forget(self) -> None:
        """Our own beat failed or was held up: the database was out of reach for us, so
        maybe for them; every peer's clock starts again."""
        self.seen.clear()

    def expired(
        self, rows: list[tuple[str, str, float]], now: float
    ) -> list[tuple[str, str, float]]:
        """Of ``rows`` (name, owner, heartbeat), those seen unchanged for a lease."""
        seen: dict[str, tuple[str, float, float]] = {}
        out = []
        for name, owner, beat in rows:
            prev = self.seen.get(name)
            first = prev[2] if prev is not None and prev[:2] == (owner, beat) else now
            seen[name] = (owner, beat, first)
            if now - first >= self.lease_s:
                out.append((name, owner, beat))
        self.seen = seen
        return out


def peer_leases(conn: Connection, owner: str) -> list[tuple[str, str, float]]:
    """(name, owner, heartbeat) of every server another engine holds."""
    rows = conn.execute(
        select(server.c.name, server.c.lease_owner, server.c.heartbeat_at).where(
            server.c.lease_owner.is_not(None),
            server.c.lease_owner != owner,
            server.c.heartbeat_at.is_not(None),
        )
    )
    return [(r.name, r.lease_owner, r.heartbeat_at) for r in rows]


def take_over(
    conn: Connection, owner: str, seen: list[tuple[str, str, float]], *, at: float
) -> tuple[list[str], dict[int, str]]:
    """Take offline each server of ``seen`` whose lease is still exactly what was seen
    (a peer that beat meanwhile keeps it; of two engines taking over at once only the
    first finds it), and recover what ran there. Returns (servers taken, tasks moved)."""
    taken = []
    for name, peer, beat in seen:
        n = conn.execute(
            update(server)
            .where(
                server.c.name == name,
                server.c.lease_owner == peer,
                server.c.heartbeat_at == beat,
            )
            .values(
                status="offline",
                lease_owner=None,
                pid=None,
                note=literal(f"engine {peer} stopped beating; its tasks were recovered", String),
            )
        ).rowcount
        if n:
            taken.append(name)
            add_event(
                conn,
                at=at,
                actor="recovery",
                kind="server",
                server=name,
                reason=f"offline: lease expired; recovered by engine {owner}",
            )
    if not taken:
        return [], {}
    on_them = in_list(task.c.server, taken)
    return taken, batch._recover_tasks(conn, on_them, "interrupted: its engine stopped", at=at)


def beat(
    conn: Connection, servers: list[str], owner: str, *, at: float, down: list[str]
) -> list[str]:
    """Renew our leases (``batch.heartbeat``); in the same transaction, servers in
    ``down`` (their process is gone, their restart not yet written) stop saying Online."""
    lost = batch.heartbeat(conn, servers, owner, at=at)
    if down:
        conn.execute(
            update(server)
            .where(
                in_list(server.c.name, down),
                server.c.lease_owner == owner,
                server.c.status == "online",
            )
            .values(status="restarting")
        )
    return lost


def note_outage(conn: Connection, servers: list[str], owner: str, note: str | None) -> None:
    """Our server rows' note says the outage (``note``), or no longer does (None): only
    a note of an outage is replaced, never another."""
    conn.execute(
        update(server)
        .where(
            in_list(server.c.name, servers),
            server.c.lease_owner == owner,
            or_(server.c.note.is_(None), server.c.note.startswith(NOTE_PREFIX)),
        )
        .values(note=note)
    )
