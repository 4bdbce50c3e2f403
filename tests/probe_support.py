"""Running ``batchdeck`` in a fresh process and telling which heavy packages it imported:
the command line's light paths must need none of them."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "textual", "aiosqlite")

PROBE = f"""\
import sys
from engine.cli.main import main
rc = main(sys.argv[1:])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {set(HEAVY)!r})
print("HEAVY", ",".join(heavy) or "-", rc, file=sys.stderr)
"""


@dataclass(frozen=True)
class Probed:
    out: str
    err: str
    heavy: str  # "HEAVY <packages or -> <exit status>"


def probe(db: str | Path, *argv: str) -> Probed:
    """``batchdeck --db DB ARGV`` in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--db", str(db), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("HEAVY"), proc.stderr
    return Probed(proc.stdout, proc.stderr, last)
