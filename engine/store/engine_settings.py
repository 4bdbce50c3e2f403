"""The settings the engine reads for itself on a SQLAlchemy connection of its own
transaction (a tick, its start, its hourly prune): each value as the setting holds it,
checked and bounded as ``engine.core.setting_values`` says, its default when unset."""

from __future__ import annotations

from sqlalchemy import Connection

from engine.core.setting_values import DEFAULTS, bounded, whole_number
from engine.flows.base import setting
from engine.store.flow_statements import flow_sql


def lease_seconds(conn: Connection) -> float:
    """How long an engine's lease on a server lives without a heartbeat."""
    return bounded("lease_seconds", setting(flow_sql(conn), "lease_seconds"))


def log_max_bytes(conn: Connection) -> int:
    """The most log a task run keeps."""
    value = whole_number("log_max_bytes", setting(flow_sql(conn), "log_max_bytes"))
    return value if value is not None else int(DEFAULTS["log_max_bytes"])


def keep_days(conn: Connection) -> int | None:
    """How many days of finished jobs the hourly prune keeps; None: every job."""
    return whole_number("keep_days", setting(flow_sql(conn), "keep_days"))
