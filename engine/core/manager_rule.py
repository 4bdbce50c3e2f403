"""The ``managers`` rule (D365's "batch job manager"): who is a manager, and why a user
may not do an action.

Unset (the default), everyone is a manager. When set (Unix user names and ``@group``
names, comma-separated): abort and enhanced abort, changing a setting and pruning need a
manager; cancel needs the job's submitter or a manager. A refusal by the rule is a
``Refusal`` of kind ``rule``, the one kind recorded in the audit.

What this protects: an operator aborting other people's jobs by mistake or by habit.
What it does not: on SQLite, anyone who can write the database file can write the rows
directly (see README, "Who may abort")."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Literal

from engine.core.identity import current_actor, user_name
from engine.core.refusal import Refusal
from engine.core.setting_values import parse_managers

Action = Literal["cancel", "abort", "enhanced_abort", "settings", "prune"]

_RULES: dict[str, str] = {
    "abort": "Abort",
    "enhanced_abort": "Enhanced abort",
    "settings": "Changing settings",
    "prune": "Pruning history",
    "cancel": "Cancel",
}


@dataclass(frozen=True)
class Who:
    """The user asking, and what the ``managers`` setting makes of them."""

    actor: str  # as recorded in the audit: "bob" or "bob from 10.0.0.5"
    user: str  # the Unix user name
    manager: bool
    managers: tuple[str, ...]  # the setting; empty: everyone is a manager

    @property
    def restricted(self) -> bool:
        return bool(self.managers)


def user_groups(user: str) -> set[str]:
    """The names of the Unix groups ``user`` belongs to (primary and supplementary)."""
    names: set[str] = set()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pw = None
    gids: list[int] = []
    if pw is not None:
        try:
            gids = os.getgrouplist(user, pw.pw_gid)
        except OSError:
            gids = [pw.pw_gid]
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    # Members listed in /etc/group count even without a passwd entry for the user.
    for group in grp.getgrall():
        if user in group.gr_mem:
            names.add(group.gr_name)
    return names


def is_manager(user: str, managers: tuple[str, ...]) -> bool:
    if not managers:
        return True
    if user in managers:
        return True
    wanted = {m[1:] for m in managers if m.startswith("@")}
    return bool(wanted) and bool(wanted & user_groups(user))


def refusal(w: Who, action: Action, submitted_by: str | None = None) -> Refusal | None:
    """Why ``w`` may not do ``action`` (to a job submitted by ``submitted_by``): a
    Refusal of kind ``rule``; None: the rule allows it."""
    if w.manager:
        return None
    managers = ", ".join(w.managers)
    if action == "cancel":
        submitter = user_name(submitted_by or "")
        if submitter and submitter == w.user:
            return None
        return Refusal(
            "rule",
            f"Cancel needs the job's submitter ({submitter or 'unknown'}) or a batch job "
            f"manager ({managers}); you are {w.user}",
        )
    return Refusal(
        "rule", f"{_RULES[action]} needs a batch job manager ({managers}); you are {w.user}"
    )


def who_with(actor: str | None, managers_setting: str) -> Who:
    """``actor`` (default: the current user) under the setting's text."""
    actor = actor or current_actor()
    names = parse_managers(managers_setting)
    user = user_name(actor)
    return Who(actor=actor, user=user, manager=is_manager(user, names), managers=names)
