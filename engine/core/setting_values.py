"""The settings' defaults and bounds, apart from how they are read and written
(``engine.flows.settings``, ``engine.store.engine_settings``): no database layer here."""

from __future__ import annotations

import math
import re

MINIMUM_LEASE_S = 1.0
# Upper bounds. A lease outlives a dead engine by up to its length: an hour is already a
# long wait before its tasks are recovered (1e308 made recovery impossible). A drain
# longer than a day is a server kept out of service by a typo.
MAXIMUM_SECONDS = {"lease_seconds": 3600.0, "drain_seconds": 86400.0, "stuck_seconds": 604800.0}

DEFAULTS: dict[str, str] = {
    "enhanced_abort": "on",
    "drain_seconds": "900",
    "lease_seconds": "5",
    # A job with a task Canceling or Aborting for longer than this is stuck.
    "stuck_seconds": "300",
    # Unix user names and @group names, comma-separated; empty: everyone is a manager.
    "managers": "",
    # A task attempt's log past this many bytes keeps its first and last halves.
    "log_max_bytes": str(10 * 1024 * 1024),
    # Finished jobs older than this many days are pruned (hourly); empty: keep all.
    "keep_days": "",
}
# Bounds of the whole-number settings: (least, most). A log limit below a KiB keeps no
# useful line; above a GiB per attempt is a full disk, not a log.
WHOLE_NUMBERS = {"log_max_bytes": (1024, 1024**3), "keep_days": (1, 36500)}

_MANAGER_NAME = re.compile(r"^@?[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


class SettingError(ValueError):
    pass


def parse_managers(text: str, *, strict: bool = False) -> tuple[str, ...]:
    """``"alice, @batchops"`` -> ("alice", "@batchops"); empty: nobody named (everyone)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if strict:
        for name in names:
            if not _MANAGER_NAME.match(name):
                raise SettingError(
                    f"setting managers: {name!r} is not a user name or an @group name"
                )
    return names


def bounded(key: str, value: str) -> float:
    """A setting of seconds as a number within its bound: a value stored before the
    bounds existed is read within them."""
    return min(float(value), MAXIMUM_SECONDS[key])


def known(key: str) -> None:
    """SettingError unless ``key`` is a setting."""
    if key not in DEFAULTS:
        raise SettingError(f"unknown setting {key!r} (known: {', '.join(sorted(DEFAULTS))})")


def checked(key: str, value: str) -> str:
    """``value`` as ``key`` stores it (managers normalized); SettingError, one line, if
    it is not one ``key`` takes."""
    known(key)
    if key == "enhanced_abort" and value not in ("on", "off"):
        raise SettingError(f"setting enhanced_abort: expected on or off, got {value!r}")
    if key == "managers":
        return ", ".join(parse_managers(value, strict=True))
    if key in WHOLE_NUMBERS:
        least, most = WHOLE_NUMBERS[key]
        if key == "keep_days" and value == "":
            return value  # keep everything
        if not (value.isascii() and value.isdigit() and least <= int(value) <= most):
            empty = " or empty (keep everything)" if key == "keep_days" else ""
            raise SettingError(
                f"setting {key}: expected a whole number from {least} to {most}{empty}, "
                f"got {value[:40]!r}"
            )
        return str(int(value))
    if key in MAXIMUM_SECONDS:
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
    return value


def whole_number(key: str, value: str) -> int | None:
    """A whole-number setting as stored (None: empty), read within its bounds."""
    if not value.strip():
        return None
    least, most = WHOLE_NUMBERS[key]
    try:
        return min(max(int(value), least), most)
    except ValueError:
        return int(DEFAULTS[key]) if DEFAULTS[key] else None
