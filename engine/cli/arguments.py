"""The command line's argument types: each turns one word into its value, or raises
``argparse.ArgumentTypeError`` naming what was expected (argparse then prints the one
line and exits 2). Standard library only."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

# Job ids are SQLite integers: 64-bit signed.
MAX_JOB_ID = 2**63 - 1
MAX_LIST_LIMIT = 1_000_000


def whole(text: str, what: str, least: int, most: int) -> int:
    """A whole number written in ASCII digits, within [least, most]; ``int()`` alone
    would take "٣" for 3 and a 20-digit number that SQLite cannot hold."""
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(f"expected {what} (digits 0-9), got {text!r}")
    value = int(text)
    if not least <= value <= most:
        raise argparse.ArgumentTypeError(
            f"expected {what} from {least} to {most}, got {_shorten(text)}"
        )
    return value


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def job_id(text: str) -> int:
    return whole(text, "a job id", 1, MAX_JOB_ID)


def task_ref(text: str) -> str:
    """A task name, or a task id in ASCII digits that fits SQLite (checked like a job id)."""
    if text.isdigit():
        whole(text, "a task id", 1, MAX_JOB_ID)
    return text


def limit(text: str) -> int:
    return whole(text, "a number of jobs", 1, MAX_LIST_LIMIT)


def poll(text: str) -> float:
    """Seconds from 0.01 to 60 (``serve --poll``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (text.isascii() and 0.01 <= value <= 60):  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0.01 to 60, got {_shorten(text)}"
        )
    return value


def count(text: str) -> int:
    """A number of jobs from 0 to 1,000,000 (``health --max-stuck``)."""
    if not (text.isascii() and text.isdigit() and int(text) <= 1_000_000):
        raise argparse.ArgumentTypeError(
            f"expected a number of jobs from 0 to 1000000, got {text!r}"
        )
    return int(text)


def seconds(text: str) -> int:
    """Whole seconds from 1 to 86400 (``service unit --watchdog``)."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 86400):
        raise argparse.ArgumentTypeError(f"expected whole seconds from 1 to 86400, got {text!r}")
    return int(text)


def listen(text: str) -> tuple[str, int]:
    """``--metrics HOST:PORT`` (``serve``, ``service unit``):
    ``engine.service.options.listen_address``."""
    from engine.service.options import listen_address

    try:
        return listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Version(argparse.Action):
    """``--version``: print the distribution's version (looked up only when asked), exit 0."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_a: Any, **_k: Any) -> None:
        from engine.service.options import version

        sys.stdout.write(f"batchdeck {version()}\n")
        parser.exit(0)
