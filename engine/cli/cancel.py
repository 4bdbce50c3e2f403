"""``cancel`` and ``abort``: of one job (``--with-children``: and every job it called),
or of every job ``--all`` and its filters select (``engine.flows.bulk``). Without
``--yes`` an abort or a bulk request prints its plan, changes nothing and exits 1;
``--dry-run`` prints it and exits 0."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli import output
from engine.cli.shared import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Fail,
    actor,
    flow,
    read,
    usable,
    write_flow,
)
from engine.core.safe_text import safe_line


def cmd_cancel(args: argparse.Namespace) -> int:
    _bulk_usage(args)
    if args.all:
        return _bulk(args, "cancel")
    if args.dry_run:
        return _cancel_dry_run(args)
    from engine.flows import base

    if not args.with_children:
        why = _quick_cancel_refusal(args)
        if why is not None:
            raise Fail(str(why))
    cancel_flow = base.cancel_tree if args.with_children else base.cancel

    def cancel(transaction: Any, at: float) -> str:
        return cancel_flow(transaction, args.job, actor=actor(), words=args.reason, at=at)

    print(safe_line(write_flow(args, cancel)))
    return EXIT_OK


def cmd_abort(args: argparse.Namespace) -> int:
    from engine.flows import abort
    from engine.reader.text import abort_plan_text

    _bulk_usage(args)
    if args.all:
        return _bulk(args, "enhanced_abort" if args.enhanced else "abort")
    if args.yes and not args.dry_run:
        # abort checks who may, then plans exactly as the preview does.
        def do(transaction: Any, at: float) -> str:
            return abort.abort(
                transaction,
                args.job,
                actor=actor(),
                enhanced=args.enhanced,
                confirmed=None,
                at=at,
            )

        print(safe_line(write_flow(args, do)))
        return EXIT_OK

    def preview(reading: Any, _transaction: Any) -> Any:
        with reading() as sql:
            return abort.preview(sql, args.job, enhanced=args.enhanced, actor=actor())

    # With --yes (and --dry-run) the file is checked as for the write it would be.
    plan = flow(args, preview, write=args.yes)
    print(abort_plan_text(plan))
    if args.dry_run:
        print(output.DRY_RUN)
        return EXIT_OK
    print("Nothing done: add --yes to abort.", file=sys.stderr)
    return EXIT_REFUSED


def _cancel_dry_run(args: argparse.Namespace) -> int:
    """``cancel JOB --dry-run``: each job the cancel would reach, refused or not; a read,
    so a user who may only read the database may ask too."""
    from engine.core.refusal import Refusal
    from engine.flows import base

    def plan(reading: Any, _transaction: Any) -> list[tuple[int, Any]]:
        with reading() as sql:
            try:
                jobs = base.cancel_dry_run(sql, args.job, actor=actor(), tree=args.with_children)
            except Refusal as exc:  # no such job: said as its refusal
                return [(args.job, exc)]
            return [(job.id, why) for job, why in jobs]

    print(output.cancel_dry_run_text(flow(args, plan, write=False)))
    return EXIT_OK


def cancel_refusal_of(job_id: int, job: Any) -> Any:
    """Why a cancel of ``job`` (a ``JobView``, None: no such job) is refused when everyone
    is a manager (``engine.flows.base.cancel_refusal``): a ``Refusal``, or None."""
    from engine.core.manager_rule import who_with
    from engine.core.refusal import Refusal
    from engine.core.statuses import no_such_job
    from engine.flows.base import cancel_refusal

    if job is None:
        return Refusal("missing", no_such_job(job_id))
    return cancel_refusal(who_with(None, ""), job)


def _quick_cancel_refusal(args: argparse.Namespace) -> Any:
    """A cancel that would be refused, told from one light read before the write path is
    loaded: a job already ended is the common case. Only when everyone may cancel (no
    ``managers`` setting): a refusal by that rule is audited, which is a write. Nothing
    is written here, so the file is checked as for a read; the cancel flow checks again,
    in its write transaction, whatever this says."""
    path = usable(args, write=True, whole=False)
    if "://" in path:
        return None

    async def status(reader: Any) -> str | None:
        if (await reader.managers()).strip():
            return None
        return cancel_refusal_of(args.job, await reader.job(args.job))

    return read(status, args, path)


def _bulk_usage(args: argparse.Namespace) -> None:
    """JOB or --all, filters only with --all, --dry-run or --yes: else a usage Fail.
    Turns ``args.status`` into the job statuses it names."""
    filters = [f"--{n}" for n in ("status", "name", "user") if getattr(args, n, None) is not None]
    if args.all and args.job is not None:
        raise Fail("give JOB or --all, not both", EXIT_USAGE)
    if not args.all:
        if args.job is None:
            raise Fail("give a JOB, or --all with filters", EXIT_USAGE)
        if filters:
            raise Fail(f"{', '.join(filters)} select jobs for --all only", EXIT_USAGE)
    if args.dry_run and args.yes:
        raise Fail("give --dry-run or --yes, not both", EXIT_USAGE)
    if args.all and getattr(args, "with_children", False):
        raise Fail("--with-children is for one JOB, not --all", EXIT_USAGE)
    from engine.core.statuses import JobStatus, with_groups

    try:
        args.status = with_groups(args.status, [s.value for s in JobStatus])
    except ValueError as exc:
        raise Fail(str(exc).replace("unknown status", "unknown job status"), EXIT_USAGE) from None


def _bulk(args: argparse.Namespace, kind: str) -> int:
    """``cancel --all`` / ``abort --all``: plan, then act only with --yes
    (``engine.flows.bulk``)."""
    import time

    from engine.core.refusal import Refusal
    from engine.flows import base, bulk
    from engine.reader.text import bulk_plan_text

    who = actor()
    yes = bool(getattr(args, "yes", False))

    def go(reading: Any, transaction: Any) -> tuple[Any, Any]:
        try:
            with reading() as sql:
                plan = bulk.plan(
                    sql, kind, actor=who, statuses=args.status, name=args.name, user=args.user
                )
        except Refusal as exc:
            if yes:
                base.audit_refusal(transaction, str(exc), actor=who, job_id=None, at=time.time())
            raise
        if not (yes and plan.jobs):
            return plan, None
        reason = getattr(args, "reason", None)
        return plan, bulk.apply(transaction, plan, actor=who, reason=reason, at=time.time())

    plan, results = flow(args, go, write=yes)
    verb = {"cancel": "cancel", "abort": "abort", "enhanced_abort": "enhanced-abort"}[kind]
    if not plan.jobs:
        if args.dry_run:
            print("No job matches: nothing to do.")
            return EXIT_OK
        raise Fail("No job matches: nothing done")
    if not yes:
        print(bulk_plan_text(plan))
        if args.dry_run:
            print(output.DRY_RUN)
            return EXIT_OK
        print(output.nothing_changed(verb, len(plan.act)), file=sys.stderr)
        return EXIT_REFUSED
    if results:
        print(output.bulk_results_text(results))
    refused = sum(not r.done for r in results)
    if refused:
        print(f"{refused} of {len(results)} jobs refused", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK
