"""Settings kept in the database, so the engine, the console and the command line agree."""

from __future__ import annotations

from sqlalchemy import Connection

DEFAULTS: dict[str, str] = {
    "enhanced_abort": "on",
    "drain_seconds": "900",
    "lease_seconds": "5",
}


class SettingError(ValueError):
    pass


def get(conn: Connection, key: str) -> str:
    if key not in DEFAULTS:
        raise SettingError(f"unknown setting {key!r} (known: {', '.join(sorted(DEFAULTS))})")
    row = conn.exec_driver_sql("SELECT value FROM meta WHERE key=?", (f"setting.{key}",)).fetchone()
    return row[0] if row else DEFAULTS[key]


def put(conn: Connection, key: str, value: str) -> None:
    get(conn, key)  # validates the key
    if key == "enhanced_abort" and value not in ("on", "off"):
        raise SettingError(f"setting enhanced_abort: expected on or off, got {value!r}")
    if key in ("drain_seconds", "lease_seconds"):
        try:
            if float(value) <= 0:
                raise ValueError
        except ValueError:
            raise SettingError(
                f"setting {key}: expected a positive number, got {value!r}"
            ) from None
    conn.exec_driver_sql(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (f"setting.{key}", value),
    )


def all_settings(conn: Connection) -> dict[str, str]:
    return {k: get(conn, k) for k in DEFAULTS}


def enhanced_abort_on(conn: Connection) -> bool:
    return get(conn, "enhanced_abort") == "on"


def drain_seconds(conn: Connection) -> float:
    return float(get(conn, "drain_seconds"))


def lease_seconds(conn: Connection) -> float:
    return float(get(conn, "lease_seconds"))
