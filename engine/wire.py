"""The supervisor's conversation with a server process: one JSON object per line.

supervisor -> server: ``run`` (a claimed task), ``cancel``, ``abort``, ``lease``
(how long the supervisor vouches for its lease), ``reply`` (to a ``call``), ``stop``.
server -> supervisor: ``ready``, ``progress``, ``pgid`` (a process group a task
started), ``call`` (submit a child job, record a remote job, wait for a job or an
approval), ``uncall``,
``exit`` (task code called ``os._exit``), ``done`` (a run's outcome).
"""

from __future__ import annotations

import json
from typing import Any

from engine.context import TaskContext


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def encode_batch(msgs: list[dict[str, Any]]) -> bytes:
    """Several messages as one line (a JSON array): one encoder call for a batch of
    256 claims instead of 256."""
    if len(msgs) == 1:
        return encode(msgs[0])
    return json.dumps(msgs, separators=(",", ":")).encode() + b"\n"


def decode_lines(lines: list[bytes]) -> list[dict[str, Any]]:
    """The messages of complete lines, each an object or an array of them, parsed in
    one decoder call."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return []
    out: list[dict[str, Any]] = []
    for item in json.loads(b"[" + b",".join(lines) + b"]"):
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


def progress_of(ctx: TaskContext) -> dict[str, Any]:
    return {
        "done": ctx.progress_done,
        "total": ctx.progress_total,
        "unit": ctx.progress_unit,
        "message": ctx.message,
        "output": ctx.output_tail,
        "child": ctx.child_job_id,
    }
