"""The names statements are run by: the reader's variants and the flows' keys. Both the
statement builders (``engine.store``) and the code that runs them by name import these.
"""

from __future__ import annotations

from typing import Any

# The list's sort columns and the shapes of its text filter (see Reader.list_jobs).
SORTS = ("id", "name", "status", "started", "submitted_by")
TEXT_KINDS = ("none", "digits", "words")


# The keys of the flows' statements (``engine.store.flow_statements``) among the reads'.
FLOW = "flow:"


def variant_key(name: str, **variant: Any) -> str:
    """A statement's name with the options that select its variant:
    ``list_jobs|descending=1|sort=name|statuses=0|text=none``."""
    parts = [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(variant.items())]
    return "|".join([name, *parts])


def jobs_key(*, ids: bool, statuses: bool, name: bool) -> str:
    """The key of the statement selecting a bulk action's jobs by these filters
    (``engine.store.flow_statements``: one statement per combination)."""
    return "bulk.jobs/" + "".join(c for c, on in (("i", ids), ("s", statuses), ("n", name)) if on)
