"""The documents hold to the code: docs/architecture.md traces a cancel through files that
exist, in at most 12 hops."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def _section(title: str) -> str:
    start = ARCHITECTURE.index(f"## {title}")
    end = ARCHITECTURE.find("\n## ", start + 1)
    return ARCHITECTURE[start : end if end > 0 else None]


def test_a_cancel_is_traced_from_the_key_to_the_task_in_at_most_12_hops() -> None:
    section = _section("A cancel, from the key to the task")
    hops = re.findall(r"^(\d+)\. `([^`]+)`", section, flags=re.M)
    assert [int(n) for n, _ in hops] == list(range(1, len(hops) + 1)), hops
    assert 1 <= len(hops) <= 12, hops
    assert hops[0][1].startswith("tui/") and hops[-1][1].startswith("engine/actions/")
    for _, path in hops:
        assert (ROOT / path).is_file(), f"hop {path} is not a file of the tree"


def test_every_file_the_architecture_names_exists() -> None:
    named = set(
        re.findall(r"`((?:engine|tui|tests|bench|docs)/[\w/.-]+\.(?:py|md|json))`", ARCHITECTURE)
    )
    assert named, "no file named"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, missing
