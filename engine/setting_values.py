"""The settings' defaults and bounds, apart from how they are read and written
(``engine.settings``): the command line's fast reads need them without SQLAlchemy."""

from __future__ import annotations

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
}

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
