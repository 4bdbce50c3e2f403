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

from engine.actions.context import TaskContext

# The most a text of a message (a task's message, its output's tail, its outcome's
# words) may carry: past it, the text is cut in the server, before it is sent. The
# supervisor reads lines of at most 16 MiB: a longer one (a 20 MB ``ctx.log()``) would
# have the whole server killed, with every other task on it.
TEXT_MAX_BYTES = 64 * 1024
CUT_MARK = "… (cut)"
# A batch of messages is sent as one line up to this size, then as several.
LINE_TARGET_BYTES = 1024 * 1024


def cut(text: str | None, limit: int = TEXT_MAX_BYTES) -> str | None:
    """``text`` if it fits in ``limit`` bytes of UTF-8, else its beginning ending in
    "… (cut)", within ``limit``."""
    if text is None or len(text) * 4 <= limit:
        return text  # the common case: short enough whatever its characters
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    keep = limit - len(CUT_MARK.encode())
    return data[:keep].decode(errors="ignore") + CUT_MARK


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def encode_batch(msgs: list[dict[str, Any]]) -> bytes:
    """Several messages as one line (a JSON array): one encoder call for a batch of
    256 claims instead of 256."""
    if len(msgs) == 1:
        return encode(msgs[0])
    return json.dumps(msgs, separators=(",", ":")).encode() + b"\n"


def encode_lines(msgs: list[dict[str, Any]]) -> bytes:
    """``msgs`` as lines of at most about ``LINE_TARGET_BYTES`` each (one message may
    make a longer line, bounded by ``TEXT_MAX_BYTES`` per text): 256 runs with a long
    message each never make one line the reader refuses."""
    data = encode_batch(msgs)
    if len(data) <= LINE_TARGET_BYTES or len(msgs) == 1:
        return data
    lines, group, size = [], [], 0
    for m in msgs:
        one = encode(m)
        if group and size + len(one) > LINE_TARGET_BYTES:
            lines.append(encode_batch(group))
            group, size = [], 0
        group.append(m)
        size += len(one)
    if group:
        lines.append(encode_batch(group))
    return b"".join(lines)


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
        "message": cut(ctx.message),
        "output": cut(ctx.output_tail),
        "unit": cut(ctx.progress_unit, 1024),
        "child": ctx.child_job_id,
    }
