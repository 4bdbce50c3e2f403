"""Settings kept in the database, so the engine, the console and the command line agree."""

from __future__ import annotations

import math

from sqlalchemy import Connection, select

from engine.dialect import upsert

# Defined apart so the command line's fast reads need no SQLAlchemy for them.
from engine.setting_values import (  # noqa: F401
    DEFAULTS,
    MAXIMUM_SECONDS,
    MINIMUM_LEASE_S,
    SettingError,
    bounded,
    parse_managers,
)
from engine.tables import meta


def get(conn: Connection, key: str) -> str:
    if key not in DEFAULTS:
        raise SettingError(f"unknown setting {key!r} (known: {', '.join(sorted(DEFAULTS))})")
    value = conn.execute(select(meta.c.value).where(meta.c.key == f"setting.{key}")).scalar()
    return value if value is not None else DEFAULTS[key]


def put(conn: Connection, key: str, value: str) -> None:
    get(conn, key)  # validates the key
    if key == "enhanced_abort" and value not in ("on", "off"):
        raise SettingError(f"setting enhanced_abort: expected on or off, got {value!r}")
    if key == "managers":
        value = ", ".join(parse_managers(value, strict=True))
    if key in ("drain_seconds", "lease_seconds", "stuck_seconds"):
        # A lease shorter than a second would let a live engine (heartbeat: a third of
        # the lease) look dead between two beats on a busy machine.
        least = MINIMUM_LEASE_S if key == "lease_seconds" else 0.0
        most = MAXIMUM_SECONDS[key]
        try:
            number = float(value) if value.isascii() else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0 or number < least or number > most:
            floor = f" of at least {least:g}" if least else ""
            raise SettingError(
                f"setting {key}: expected a positive number{floor} and at most {most:g} "
                f"(seconds), got {value[:40]!r}"
            )
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
