"""``batchdeck logs JOB [TASK] [--attempt N] [-f] [--tail N] [--json]``.

One task: its lines of one attempt (the latest with a log, unless ``--attempt``).
Without TASK: every task's lines as they were written, each prefixed with the task's
name (and ``#N`` for an attempt after the first). ``-f`` prints new lines as they come,
until the task (the job, without TASK) has ended. Every line is escaped for the
terminal (``engine.core.safe_text``): a command's ANSI colour is shown as ``\\x1b[...``,
never sent raw. ``--json``: one JSON object per line (task, attempt, stream, text).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from engine.cli.main import EXIT_OK, EXIT_USAGE, Fail, _flow
from engine.core.safe_text import safe_line

FOLLOW_POLL_S = 0.2
MAX_TAIL = 100_000_000


def add_parser(
    cmd: Callable[[str, str], argparse.ArgumentParser], job_id: Any, task_ref: Any
) -> None:
    s = cmd("logs", "print a job's task logs (every task's, or one task's), or follow them")
    s.add_argument("job", type=job_id, metavar="JOB")
    s.add_argument("task", type=task_ref, metavar="TASK", nargs="?", help="task name or id")
    s.add_argument("--attempt", type=int, metavar="N", help="this attempt (default: the latest)")
    s.add_argument("-f", "--follow", action="store_true", help="print new lines until it ends")
    s.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    s.add_argument("--json", action="store_true", help="one JSON object per line")


class _Printer:
    def __init__(self, as_json: bool, prefix: bool) -> None:
        self.as_json = as_json
        self.prefix = prefix
        self.out: list[str] = []

    def lines(
        self, name: str, attempt: int, stream: str, text: str, tail: int | None = None
    ) -> None:
        lines = text.split("\n")
        if tail is not None:
            lines = lines[-tail:] if tail else []
        if self.as_json:
            self.out.extend(
                json.dumps({"task": name, "attempt": attempt, "stream": stream, "text": line})
                for line in lines
            )
            return
        head = ""
        if self.prefix:
            head = f"{safe_line(name)}{'#' + str(attempt) if attempt > 1 else ''} | "
        self.out.extend(head + safe_line(line) for line in lines)

    def flush(self) -> None:
        if self.out:
            sys.stdout.write("\n".join(self.out) + "\n")
            sys.stdout.flush()
            self.out = []


def _check(args: argparse.Namespace) -> None:
    if args.attempt is not None and args.attempt < 1:
        raise Fail(f"--attempt {args.attempt}: expected 1 or more", EXIT_USAGE)
    if args.tail is not None and not 0 <= args.tail <= MAX_TAIL:
        raise Fail(f"--tail {args.tail}: expected 0 to {MAX_TAIL:,}", EXIT_USAGE)


def cmd_logs(args: argparse.Namespace) -> int:
    _check(args)

    def go(reading: Callable[[], Any], _transaction: Any) -> None:
        if args.task is None:
            _job_logs(reading, args)
        else:
            _task_logs(reading, args)

    # The light path (no SQLAlchemy) where the database allows it: ``cli._flow``.
    _flow(args, go, write=False)
    return EXIT_OK


def _job(sql: Any, job_id: int) -> tuple[str, dict[int, tuple[str, str, int]]]:
    from engine.core.statuses import no_such_job
    from engine.flows import logs as log_reads

    status = log_reads.job_status(sql, job_id)
    if status is None:
        raise Fail(no_such_job(job_id))
    return status, log_reads.task_refs(sql, job_id)


def _print_refs(
    sql: Any, printer: _Printer, refs: list[Any], names: dict[int, Any], tail: int | None
) -> None:
    """The chunks' lines; ``tail``: only the last so many of them."""
    from engine.flows import logs as log_reads

    skip = 0
    if tail is not None:
        skip = max(0, sum(r.lines for r in refs) - tail)
    for start in range(0, len(refs), 256):
        part = refs[start : start + 256]
        texts = log_reads.texts(sql, [r.id for r in part])
        for r in part:
            keep = None
            if skip:
                if skip >= r.lines:
                    skip -= r.lines
                    continue
                keep, skip = r.lines - skip, 0
            name = names.get(r.task_id, (str(r.task_id),))[0]
            printer.lines(name, r.attempt, r.stream, texts[r.id], keep)
        printer.flush()


def _job_logs(reading: Callable[[], Any], args: argparse.Namespace) -> None:
    from engine.core.statuses import JOB_TERMINAL
    from engine.flows import logs as log_reads

    printer = _Printer(args.json, prefix=True)
    last = 0
    first = True
    while True:
        with reading() as sql:
            status, names = _job(sql, args.job)
            refs = log_reads.job_index(sql, args.job, after_id=last, attempt=args.attempt)
            _print_refs(sql, printer, refs, names, args.tail if first else None)
        first = False
        if refs:
            last = refs[-1].id
        if not args.follow or status in JOB_TERMINAL:
            return
        time.sleep(FOLLOW_POLL_S)


def _task_logs(reading: Callable[[], Any], args: argparse.Namespace) -> None:
    from engine.core.statuses import TASK_TERMINAL
    from engine.flows import logs as log_reads

    printer = _Printer(args.json, prefix=False)
    with reading() as sql:
        _status, names = _job(sql, args.job)
        tid = _task_id(names, args.task, args.job)
        attempt = args.attempt
        if attempt is None:
            logged = log_reads.attempts(sql, tid)
            attempt = logged[-1] if logged and not args.follow else names[tid][2]
        if args.tail is not None:
            refs = log_reads.run_tail_index(sql, tid, attempt, args.tail)
        else:
            refs = log_reads.run_index(sql, tid, attempt)
        _print_refs(sql, printer, refs, names, args.tail)
    last = refs[-1].seq if refs else 0
    while args.follow:
        with reading() as sql:
            _job_status, names = _job(sql, args.job)
            _name, status, current = names[tid]
            refs = log_reads.run_index(sql, tid, attempt, after_seq=last)
            _print_refs(sql, printer, refs, names, None)
        if refs:
            last = refs[-1].seq
        if status in TASK_TERMINAL or current != attempt:
            return  # this attempt has ended: its last lines were written before that
        time.sleep(FOLLOW_POLL_S)


def _task_id(names: dict[int, tuple[str, str, int]], ref: str, job_id: int) -> int:
    if ref.isdigit() and int(ref) in names:
        return int(ref)
    for tid, (name, _s, _a) in names.items():
        if name == ref:
            return tid
    raise Fail(f"Job {job_id} has no task {safe_line(ref)!r}")
