"""Settings as flows (``engine.flows``): read one or all, and a manager's change,
audited either way, written once for the command line's light path and for SQLAlchemy
(``permissions.put_setting``, the console). No SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from engine.flows import Refused, Sql, add_event, audit_refusal, setting, who
from engine.manager_rule import refusal
from engine.setting_values import DEFAULTS, checked, known


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
    if not sql.run("setting.update", row):
        sql.run("setting.insert", row)
    return stored


def put(
    transaction: Callable[[], AbstractContextManager[Sql]],
    key: str,
    value: str,
    *,
    actor: str,
    at: float,
) -> str:
    """Set ``key`` to ``value`` if ``actor`` is a manager: the value and its event in one
    transaction; returns the value as stored. Refused (recorded in the audit, in a
    transaction of its own) for anyone else; SettingError for a value the setting does
    not take, nothing written."""
    with transaction() as sql:
        text = refusal(who(sql, actor), "settings")
        if text is None:
            stored = store(sql, key, value)
            add_event(sql, at=at, actor=actor, kind="request", reason=f"setting {key} = {stored}")
            return stored
    audit_refusal(transaction, text, actor=actor, job_id=None, at=at)
    raise Refused(text)
