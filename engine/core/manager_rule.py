"""The ``managers`` rule itself, apart from how the setting is read (``engine.store.permissions``):
who is a batch job manager, and why a user may not do an action. No database layer here,
so the command line's light cancel applies the very same rule."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Literal

from engine.core.identity import current_actor, user_name
from engine.core.setting_values import parse_managers

Action = Literal["cancel", "abort", "enhanced_abort", "settings", "prune"]

_RULES: dict[str, str] = {
    "abort": "Abort",
    "enhanced_abort": "Enhanced abort",
    "settings": "Changing settings",
    "prune": "Pruning history",
    "cancel": "Cancel",
}


class NotAllowed(Exception):
    """The user may not do this; the message is one line for the operator."""


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


def _needs_manager(rule: str, w: Who) -> str:
    return f"{rule} needs a batch job manager ({', '.join(w.managers)}); you are {w.user}"


# How a cancel refused by this rule begins (``refused_by_rule``).
_CANCEL_NEEDS = "Cancel needs"


def refusal(w: Who, action: Action, submitted_by: str | None = None) -> str | None:
    """Why ``w`` may not do ``action`` (to a job submitted by ``submitted_by``), or None."""
    if w.manager:
        return None
    if action == "cancel":
        submitter = user_name(submitted_by or "")
        if submitter and submitter == w.user:
            return None
        return (
            f"{_CANCEL_NEEDS} the job's submitter ({submitter or 'unknown'}) or a batch job "
            f"manager ({', '.join(w.managers)}); you are {w.user}"
        )
    return _needs_manager(_RULES[action], w)


def refused_by_rule(why: str | None) -> bool:
    """Whether a cancel's refusal (``refusal`` or the job's status) is this rule's: only
    those are recorded in the audit."""
    return why is not None and why.startswith(_CANCEL_NEEDS)


def who_with(actor: str | None, managers_setting: str) -> Who:
    """``actor`` (default: the current user) under the setting's text."""
    actor = actor or current_actor()
    names = parse_managers(managers_setting)
    user = user_name(actor)
    return Who(actor=actor, user=user, manager=is_manager(user, names), managers=names)
