"""Settings kept in the database, so the engine, the console and the command line agree."""

from __future__ import annotations

from sqlalchemy import Connection

# Defined apart so the command line's fast reads need no SQLAlchemy for them.
from engine.core.setting_values import (  # noqa: F401
    DEFAULTS,
    MAXIMUM_SECONDS,
    MINIMUM_LEASE_S,
    SettingError,
    bounded,
    parse_managers,
    whole_number,
)
from engine.flows import settings as setting_flows
from engine.store.flow_statements import flow_sql


def get(conn: Connection, key: str) -> str:
    return setting_flows.get(flow_sql(conn), key)


def put(conn: Connection, key: str, value: str) -> None:
    setting_flows.store(flow_sql(conn), key, value)


def all_settings(conn: Connection) -> dict[str, str]:
    return setting_flows.all_settings(flow_sql(conn))


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


def log_max_bytes(conn: Connection) -> int:
    value = whole_number("log_max_bytes", get(conn, "log_max_bytes"))
    return value if value is not None else int(DEFAULTS["log_max_bytes"])


def keep_days(conn: Connection) -> int | None:
    """None: keep every job."""
    return whole_number("keep_days", get(conn, "keep_days"))
