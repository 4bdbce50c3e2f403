"""The commands on jobs that are neither a cancel nor an abort: ``submit``, ``recipes
check``, ``list``, ``show``, ``rerun`` and the requests on one job (``hold``,
``release``, ``approve``, ``reject``). Each returns its exit code or raises ``Fail``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli import output
from engine.cli.shared import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Fail, actor, read, write_flow
from engine.core.safe_text import safe_line


def cmd_submit(args: argparse.Namespace) -> int:
    from engine.flows import base
    from engine.recipes import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as exc:
        raise Fail(str(exc)) from None
    system = True if args.system else None

    def insert(transaction: Any, at: float) -> int:
        return base.submit(transaction, recipe, actor=actor(), system=system, at=at)

    # A new file goes through SQLAlchemy, which creates the schema first.
    print(write_flow(args, insert))
    return EXIT_OK


def cmd_recipes(args: argparse.Namespace) -> int:
    """``recipes check PATH``: each recipe file ok, or its error (then exit 1)."""
    from engine.recipes import check_path

    results = check_path(args.path)
    if not results:
        raise Fail(f"{args.path}: no recipe files (*.toml) found")
    bad = 0
    for path, error in results:
        if error:
            bad += 1
            print(safe_line(error), file=sys.stderr)
        else:
            print(safe_line(f"{path}: ok"))
    return EXIT_REFUSED if bad else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from engine.core.statuses import LABELS, with_groups

    try:
        args.status = with_groups(args.status, list(LABELS))
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    if args.stuck:
        return _list_stuck(args)
    page = read(lambda r: r.list_jobs(0, args.limit, statuses=args.status, with_total=False), args)
    if args.json:
        print(output.json_list(page.rows))
        return EXIT_OK
    from engine.reader.text import job_table

    print(job_table(page.rows))
    return EXIT_OK


def _list_stuck(args: argparse.Namespace) -> int:
    stuck = read(lambda r: r.stuck_jobs(), args)
    stuck = [s for s in stuck if not args.status or s.job.status in args.status][: args.limit]
    if args.json:
        print(output.json_list(stuck))
        return EXIT_OK
    if not stuck:
        print("no stuck jobs")
        return EXIT_OK
    from engine.reader.text import job_table

    print(job_table([s.job for s in stuck]))
    print(output.stuck_banners(stuck))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    import json

    async def both(r: Any) -> Any:
        return await r.job_detail(args.job), await r.stuck_job(args.job)

    detail, stuck = read(both, args)
    if detail is None:
        from engine.core.statuses import no_such_job

        raise Fail(no_such_job(args.job))
    if args.json:
        print(json.dumps(detail.to_json(), indent=2))
        return EXIT_OK
    from engine.reader.text import job_detail_text

    print(job_detail_text(detail, banner=stuck.banner if stuck else None))
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace) -> int:
    from engine.flows import rerun

    def submit_rerun(transaction: Any, at: float) -> int:
        return rerun.rerun(transaction, args.job, actor=actor(), at=at)

    print(write_flow(args, submit_rerun))
    return EXIT_OK


def cmd_request(args: argparse.Namespace) -> int:
    """``hold``, ``release``, ``approve``, ``reject``: an operator's request on one job
    (``engine.flows.requests``); prints what it did."""
    from engine.flows import requests

    def request(transaction: Any, at: float) -> str:
        if args.command == "hold":
            return requests.hold(transaction, args.job, actor=actor(), at=at)
        if args.command == "release":
            return requests.release(transaction, args.job, actor=actor(), at=at)
        return requests.decide_approval(
            transaction,
            args.job,
            actor=actor(),
            at=at,
            task=args.task,
            approve=args.command == "approve",
        )

    print(safe_line(write_flow(args, request)))
    return EXIT_OK
