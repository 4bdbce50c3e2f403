"""``batchdeck health``: one answer for a monitor or a load balancer's script.

Exit 0 when every server with a live lease is serving; 1 when degraded, one line per
problem: no engine serves the database, a lease gone stale (its engine died), a server
whose beat is late (its engine cannot write the database, or is stalled), a server
Restarting or Offline under a live lease, more stuck jobs than ``--max-stuck``, or the
database itself unreadable or damaged (``engine.cli.main``'s one line). 2: bad usage.

The light read path of ``list`` and ``servers`` (``engine.sql.light``): no SQLAlchemy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from engine.cli import main as cli
from engine.cli.main import EXIT_OK, EXIT_REFUSED, Fail

# A live engine beats every third of the lease at most, and every second at least
# (``Engine.heartbeat_interval``): a beat older than this share of the lease, and than
# LATE_BEAT_S (a busy host's scheduling hiccup), is two beats missed.
LATE_BEAT = 0.6
LATE_BEAT_S = 2.0
SERVING = ("online", "draining")


def problems_of(
    servers: list[Any], stuck: dict[int, float], *, ttl: float, max_stuck: int, now: float
) -> list[str]:
    """The problems, one line each, from the Reader's server views and stuck jobs."""
    out: list[str] = []
    for s in servers:
        age = s.lease_age(now)
        if s.lease_owner is None:
            continue  # released by a clean stop: nobody claims to serve it
        if not s.live:
            out.append(
                f"server {s.name}: lease stale for {age:.0f} s (lease {ttl:g} s): "
                f"engine {s.lease_owner} has not renewed it (gone, or cannot write the database)"
            )
        elif s.status not in SERVING:
            out.append(f"server {s.name}: {s.status} under a live lease")
        elif age is not None and age > max(ttl * LATE_BEAT, LATE_BEAT_S):
            out.append(
                f"server {s.name}: last heartbeat {age:.1f} s ago (lease {ttl:g} s): "
                "its engine cannot write the database or is stalled"
            )
    if not any(s.live for s in servers) and not out:
        out.append("no engine serves this database")
    if len(stuck) > max_stuck:
        ids = ", ".join(str(j) for j in sorted(stuck)[:10]) + (", ..." if len(stuck) > 10 else "")
        out.append(
            f"{len(stuck)} stuck job{'s' if len(stuck) != 1 else ''} "
            f"(more than --max-stuck {max_stuck}): {ids}"
        )
    return out


def cmd_health(args: argparse.Namespace) -> int:
    from engine.reader.servers import server_rows

    path = cli._usable(args, write=False)
    if "://" not in path and not os.path.exists(path):
        raise Fail(f"{path}: no such database")  # create nothing for a mistyped --db

    now = time.time()

    async def everything(reader: Any) -> tuple[list[Any], dict[int, float], float]:
        ttl = await reader.lease_seconds()
        return await reader.servers(now), await reader.stuck_ages(now), ttl

    servers, stuck, ttl = cli._run(everything, args, path)
    problems = problems_of(servers, stuck, ttl=ttl, max_stuck=args.max_stuck, now=now)
    if args.json:
        report = {
            "healthy": not problems,
            "problems": problems,
            "servers": server_rows(servers, ttl, now),
            "stuck_jobs": len(stuck),
        }
        print(json.dumps(report, indent=2))
    elif problems:
        for line in problems:
            print(cli.safe_line(line))
    else:
        live = [s.name for s in servers if s.live]
        print(f"healthy: {len(live)} server{'s' if len(live) != 1 else ''} serving")
    return EXIT_REFUSED if problems else EXIT_OK
