"""Plain-text formatting shared by the command line and the console."""

from __future__ import annotations

import time

from engine.core.statuses import LABELS


def label(status: str) -> str:
    return LABELS.get(status, status)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(at: float | None, now: float | None = None) -> str:
    """HH:MM:SS for today, else YYYY-MM-DD HH:MM (local time)."""
    if at is None:
        return "-"
    now = time.time() if now is None else now
    t, n = time.localtime(at), time.localtime(now)
    if t[:3] == n[:3]:
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def stamp(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def number(x: float | None) -> str:
    if x is None:
        return "?"
    # Whole numbers, or one decimal below 10 (seconds of a short wait: "2.5/5 s").
    if float(x).is_integer() or abs(x) >= 10:
        return f"{int(x):,}"
    return f"{x:.1f}"


def progress(done: float, total: float | None, unit: str | None = None) -> str:
    if not total and not done:
        return ""
    u = f" {unit}" if unit else ""
    if total:
        return f"{number(done)}/{number(total)}{u}"
    return f"{number(done)}{u}"


def percent(done: float, total: float | None) -> float | None:
    if not total:
        return None
    return max(0.0, min(1.0, done / total))
