"""Settings kept in the database, so the engine, the console and the command line agree."""

from __future__ import annotations

from sqlalchemy import Connection, select

from engine.dialect import upsert

# Defined apart so the command line's fast reads need no SQLAlchemy for them.
from engine.setting_values import (  # noqa: F401
    DEFAULTS,
    MAXIMUM_SECONDS,
    MINIMUM_LEASE_S,
    SettingError,
    bounded,
    checked,
    known,
    parse_managers,
)
from engine.tables import meta


def get(conn: Connection, key: str) -> str:
    known(key)
    value = conn.execute(select(meta.c.value).where(meta.c.key == f"setting.{key}")).scalar()
    return value if value is not None else DEFAULTS[key]


def put(conn: Connection, key: str, value: str) -> None:
    value = checked(key, value)
    upsert(conn, meta, {"key": f"setting.{key}", "value": value}, "key", {"value": value})


def all_settings(conn: Connection) -> dict[str, str]:
    return {k: get(conn, k) for k in DEFAULTS}


def enhanced_abort_on(conn: Connection) -> bool:
    return get(conn, "enhanced_abort") == "on"


def _bounded(conn: Connection, key: str) -> float:
    return bounded(key, get(conn, key))


def drain_seconds(conn: Connection) -> float:
    return _bounded(conn, "drain_seconds")


def lease_seconds(conn: Connection) -> float:
    return _bounded(conn, "lease_seconds")


def stuck_seconds(conn: Connection) -> float:
    return _bounded(conn, "stuck_seconds")


def managers(conn: Connection) -> tuple[str, ...]:
    return parse_managers(get(conn, "managers"))
