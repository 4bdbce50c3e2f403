"""``batchdeck prune --before DATE | --older-than 30d [--dry-run]`` (``engine.store.prune``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from engine.cli.main import EXIT_OK, EXIT_USAGE, Fail, _actor, _store, _usable


def add_parser(cmd: Callable[[str, str], argparse.ArgumentParser]) -> None:
    s = cmd(
        "prune",
        "delete finished jobs older than a date, with their tasks, events, recipes and logs",
    )
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", metavar="DATE", help="finished before this date (YYYY-MM-DD)")
    when.add_argument(
        "--older-than", metavar="AGE", help="finished longer ago than this (30d, 12h)"
    )
    s.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")


def cmd_prune(args: argparse.Namespace) -> int:
    from engine.store import prune

    try:
        cutoff = prune.cutoff_of(before=args.before, older_than=args.older_than, now=time.time())
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    path = _usable(args, write=not args.dry_run)
    store = _store(path, write=not args.dry_run)
    try:
        actor = _actor()
        if not args.dry_run:
            _must_manage(store, actor)
        result = prune.run_sync(store, cutoff, actor=actor, dry_run=args.dry_run)
    finally:
        store.dispose()
    if args.dry_run:
        print(f"Dry run: {result.jobs:,} finished jobs are older than that; nothing deleted.")
    else:
        print(result.summary())
        print(
            f"{result.batches} batches in {result.seconds:.2f} s; the longest held the "
            f"write lock {result.longest_hold_s * 1000:.0f} ms"
        )
    return EXIT_OK


def _must_manage(store: Any, actor: str) -> None:
    """Deleting history is a manager's act, as changing settings is; a refusal is
    audited like theirs."""
    from engine.core.manager_rule import refusal
    from engine.flows.base import audit_refusal, who

    with store.reading() as sql:
        denied = refusal(who(sql, actor), "prune")
    if denied is None:
        return
    audit_refusal(store.transaction, denied.text, actor=actor, job_id=None, at=time.time())
    raise Fail(denied.text)
