"""The supervisor's timings and limits, shared by its parts."""

from __future__ import annotations

# While the database is out of reach, a write the engine must make is tried this often;
# past OUTAGE_LIMIT_S the engine gives up and exits non-zero (a service manager
# restarts it) rather than stay up serving nothing.
OUTAGE_RETRY_S = 0.25
OUTAGE_LIMIT_S = 600.0
