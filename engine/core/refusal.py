"""The one refusal: a request that cannot be done, said in one line for the operator.

Every refused request raises (or a plan carries) a ``Refusal``; ``str(refusal)`` is the
line shown (the console's notification, the command line's stderr). Its ``kind`` says
what refused it, so a caller decides by the kind, never by the words:

- ``missing``: no such job, task or server;
- ``status``: what the job is, or its status, forbids it (a system job, already Ended);
- ``rule``: the ``managers`` rule (``engine.core.manager_rule``): the only kind recorded
  in the audit (``audited``);
- ``setting``: a setting turns it off (enhanced abort);
- ``changed``: what the operator confirmed has changed since (a grown abort plan);
- ``busy``: something running holds it (a server an engine serves);
- ``read_only``: the database is read-only for this user;
- ``input``: a value the request does not take.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["missing", "status", "rule", "setting", "changed", "busy", "read_only", "input"]


class Refusal(Exception):
    """The request cannot be done; ``str()`` is its one line, ``kind`` what refused it.

    Two refusals are equal when their kind and text are: a refusal is a value (a plan
    carries one per job) as much as an exception."""

    def __init__(self, kind: Kind, text: str) -> None:
        super().__init__(text)
        self.kind: Kind = kind
        self.text = text

    @property
    def audited(self) -> bool:
        """Whether it is recorded in the audit: a refusal by the ``managers`` rule."""
        return self.kind == "rule"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Refusal):
            return NotImplemented
        return (self.kind, self.text) == (other.kind, other.text)

    def __hash__(self) -> int:
        return hash((self.kind, self.text))

    def __repr__(self) -> str:
        return f"Refusal({self.kind!r}, {self.text!r})"
