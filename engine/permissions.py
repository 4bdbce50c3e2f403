"""Who may do what: the ``managers`` setting (D365's "batch job manager").

Unset (the default), everyone is a manager, as before the setting existed. When set
(Unix user names and ``@group`` names, comma-separated):

- abort and enhanced abort need a manager;
- cancel needs the job's submitter or a manager;
- changing a setting needs a manager.

A refusal is one line naming the rule and the user, and it is recorded in the audit
(an event of kind ``refused``) in a transaction of its own, since the refused request
itself writes nothing.

What this protects: an operator using batchdeck from aborting other people's jobs by
mistake or by habit. What it does not: on SQLite, anyone who can write the database
file can write the rows directly (see README, "Who may abort").
"""

from __future__ import annotations

import grp
import os
import pwd
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, select

from engine import settings
from engine.db import Store
from engine.identity import current_actor, user_name
from engine.tables import job
from engine.writes import add_event

Action = Literal["cancel", "abort", "enhanced_abort", "settings"]

_RULES: dict[str, str] = {
    "abort": "Abort",
    "enhanced_abort": "Enhanced abort",
    "settings": "Changing settings",
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


def who(conn: Connection, actor: str | None = None) -> Who:
    actor = actor or current_actor()
    names = settings.managers(conn)
    user = user_name(actor)
    return Who(actor=actor, user=user, manager=is_manager(user, names), managers=names)


def whoami(store: Store, actor: str | None = None) -> Who:
    """Who am I, and am I a manager: for the console's header."""
    with store.read() as conn:
        return who(conn, actor)


def _needs_manager(rule: str, w: Who) -> str:
    return f"{rule} needs a batch job manager ({', '.join(w.managers)}); you are {w.user}"


def refusal(w: Who, action: Action, submitted_by: str | None = None) -> str | None:
    """Why ``w`` may not do ``action`` (to a job submitted by ``submitted_by``), or None."""
    if w.manager:
        return None
    if action == "cancel":
        submitter = user_name(submitted_by or "")
        if submitter and submitter == w.user:
            return None
        return (
            f"Cancel needs the job's submitter ({submitter or 'unknown'}) or a batch job "
            f"manager ({', '.join(w.managers)}); you are {w.user}"
        )
    return _needs_manager(_RULES[action], w)


def job_refusal(conn: Connection, w: Who, action: Action, job_id: int) -> str | None:
    """Why ``w`` may not do ``action`` to job ``job_id`` (None: allowed, or no such job)."""
    if w.manager:
        return None
    row = conn.execute(select(job.c.submitted_by).where(job.c.id == job_id)).first()
    return refusal(w, action, row.submitted_by if row else None)


def may(
    store: Store, action: Action, job_id: int | None = None, *, actor: str | None = None
) -> str | None:
    """May I do ``action`` (to job ``job_id``)? None if so, else the one-line refusal.

    For the console, to hide what the user may not do; the request itself checks again.
    """
    with store.read() as conn:
        w = who(conn, actor)
        if job_id is None:
            return refusal(w, action)
        return job_refusal(conn, w, action, job_id)


def audit_refusal(
    store: Store, actor: str, text: str, *, job_id: int | None = None, now: float | None = None
) -> None:
    """Record a refusal in the audit, in its own transaction."""
    at = time.time() if now is None else now
    with store.write() as conn:
        add_event(conn, at=at, actor=actor, kind="refused", job_id=job_id, reason=text)


def put_setting(store: Store, key: str, value: str, *, actor: str) -> None:
    """Change a setting, if ``actor`` is a manager; audited either way."""
    with store.write() as conn:
        w = who(conn, actor)
        text = refusal(w, "settings")
        if text is None:
            settings.put(conn, key, value)
            add_event(
                conn,
                at=time.time(),
                actor=actor,
                kind="request",
                reason=f"setting {key} = {settings.get(conn, key)}",
            )
            return
    audit_refusal(store, actor, text)
    raise NotAllowed(text)
