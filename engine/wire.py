"""The supervisor's conversation with a server process: one JSON object per line.

supervisor -> server: ``run`` (a claimed task), ``cancel``, ``abort``, ``lease``
(how long the supervisor vouches for its lease), ``reply`` (to a ``call``), ``stop``.
server -> supervisor: ``ready``, ``progress``, ``pgid`` (a process group a task
started), ``call`` (submit a child job, wait for a job or an approval), ``uncall``,
``exit`` (task code called ``os._exit``), ``done`` (a run's outcome).
"""

from __future__ import annotations

import json
from typing import Any

from engine.context import TaskContext


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line)


def progress_of(ctx: TaskContext) -> dict[str, Any]:
    return {
        "done": ctx.progress_done,
        "total": ctx.progress_total,
        "unit": ctx.progress_unit,
        "message": ctx.message,
        "output": ctx.output_tail,
        "child": ctx.child_job_id,
    }
