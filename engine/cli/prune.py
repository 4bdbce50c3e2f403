"""``batchdeck prune --before DATE | --older-than 30d [--dry-run]`` (``engine.store.prune``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from engine.cli import output
from engine.cli.shared import EXIT_OK, EXIT_USAGE, Fail, actor, open_store, usable


def cmd_prune(args: argparse.Namespace) -> int:
    from engine.store import prune

    try:
        cutoff = prune.cutoff_of(before=args.before, older_than=args.older_than, now=time.time())
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    path = usable(args, write=not args.dry_run)
    store = open_store(path, write=not args.dry_run)
    try:
        who = actor()
        if not args.dry_run:
            _must_manage(store, who)
        result = prune.run_sync(store, cutoff, actor=who, dry_run=args.dry_run)
    finally:
        store.dispose()
    print(output.prune_text(result, dry_run=args.dry_run))
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
