"""Settings as flows (``engine.flows.base``): read one or all, and a manager's change,
audited either way."""

from __future__ import annotations

from engine.core.identity import user_name
from engine.core.manager_rule import is_manager, refusal
from engine.core.refusal import Refusal
from engine.core.setting_values import DEFAULTS, checked, known, parse_managers
from engine.flows.base import Transaction, add_event, at_or_now, audit_refusal, setting, who
from engine.sql import keys
from engine.sql.protocol import Sql


def get(sql: Sql, key: str) -> str:
    """The setting's value (its default when never set); SettingError for no such key."""
    known(key)
    return setting(sql, key)


def all_settings(sql: Sql) -> dict[str, str]:
    return {key: setting(sql, key) for key in DEFAULTS}


def store(sql: Sql, key: str, value: str) -> str:
    """Write ``key`` (no permission asked: ``put`` asks); returns the value as stored.
    SettingError for a value the setting does not take, nothing written."""
    stored = checked(key, value)
    row = {"key": f"setting.{key}", "value": stored}
    # Writers take turns (the write lock): nobody inserts it in between.
    if not sql.run(keys.SETTING_UPDATE, row):
        sql.run(keys.SETTING_INSERT, row)
    return stored


def put(
    transaction: Transaction,
    key: str,
    value: str,
    *,
    actor: str,
    at: float | None = None,
    force: bool = False,
) -> str:
    """Set ``key`` to ``value`` if ``actor`` is a manager: the value and its event in one
    transaction (``at``: default now); returns the value as stored. A Refusal (``rule``,
    recorded in the audit, in a transaction of its own) for anyone else; SettingError
    for a value the setting does not take, nothing written. A ``managers`` value that
    leaves ``actor`` out is refused unless ``force``: they could not change it back."""
    at = at_or_now(at)
    with transaction() as sql:
        denied = refusal(who(sql, actor), "settings")
        if denied is None:
            if key == "managers" and not force:
                locked_out(actor, checked(key, value))
            stored = store(sql, key, value)
            add_event(sql, at=at, actor=actor, kind="request", reason=f"setting {key} = {stored}")
            return stored
    audit_refusal(transaction, denied.text, actor=actor, job_id=None, at=at)
    raise denied


def locked_out(actor: str, managers: str) -> None:
    """A Refusal (``input``) when ``managers`` (as stored) would not make ``actor`` a
    manager."""
    names = parse_managers(managers)
    user = user_name(actor)
    if names and not is_manager(user, names):
        raise Refusal(
            "input",
            f"managers {', '.join(names)} would leave you ({user}) out: you could no longer "
            "change settings or abort. Add yourself, or give --force",
        )


def managers_line(managers: str, actor: str) -> str:
    """Who the managers are now, as ``batchdeck settings managers VALUE`` says after it."""
    names = parse_managers(managers)
    if not names:
        return "Managers: everyone (the setting is unset)"
    you = "you are one" if is_manager(user_name(actor), names) else "you are not one"
    return f"Managers: {', '.join(names)} ({you}); they abort and change settings"
