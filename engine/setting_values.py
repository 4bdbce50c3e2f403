"""The settings' defaults and bounds, apart from how they are read and written
(``engine.settings``): the command line's fast reads need them without SQLAlchemy."""

from __future__ import annotations

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
