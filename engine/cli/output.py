"""The commands' words on stdout and stderr, apart from the tables and plans that the
console shows too (``engine.reader.text``, ``engine.reader.servers``). Each function
returns the text; the command prints it. Standard library only."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from engine.core.safe_text import safe_line

DRY_RUN = "Dry run: nothing changed."


def json_list(items: Iterable[Any]) -> str:
    """Views (each with ``to_json()``) as one indented JSON list."""
    return json.dumps([item.to_json() for item in items], indent=2)


def stuck_banners(stuck: list[Any]) -> str:
    """One line per stuck job (an ``engine.reader`` stuck view): its id and why."""
    return "\n".join(f"{s.job.id}: {s.banner}" for s in stuck)


def cancel_dry_run_text(plan: list[tuple[int, Any]]) -> str:
    """``cancel JOB --dry-run``: each job the cancel reaches, refused (why) or not."""
    lines = [
        f"Job {job_id}: " + (f"refused: {safe_line(str(why))}" if why else "would be canceled")
        for job_id, why in plan
    ]
    return "\n".join([*lines, DRY_RUN])


def nothing_changed(verb: str, n: int) -> str:
    """A bulk plan shown without ``--yes`` (on stderr)."""
    return f"Nothing changed: add --yes to {verb} {n} job{'s' if n != 1 else ''}."


def bulk_results_text(results: list[Any]) -> str:
    """A bulk request's outcome, one line per job (``engine.flows.bulk`` results)."""
    return "\n".join(r.text if r.done else f"refused: {r.text}" for r in results)


def serving_line(servers: dict[str, int], where: str, pid: str) -> str:
    """What ``serve`` prints once its servers run."""
    names = ", ".join(f"{n} ({k} slots)" for n, k in servers.items())
    return f"serving {names} on {where}; pid {pid}; Ctrl-C to stop"


def prune_text(result: Any, *, dry_run: bool) -> str:
    """``prune``'s outcome (an ``engine.store.prune`` result)."""
    if dry_run:
        return f"Dry run: {result.jobs:,} finished jobs are older than that; nothing deleted."
    return (
        f"{result.summary()}\n"
        f"{result.batches} batches in {result.seconds:.2f} s; the longest held the "
        f"write lock {result.longest_hold_s * 1000:.0f} ms"
    )


def healthy_line(live: int) -> str:
    """``health`` with no problem."""
    return f"healthy: {live} server{'s' if live != 1 else ''} serving"
