"""The parameters every remote long action has: where its token is, and its bounds."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from engine.actions.base import ONE_YEAR_S, Param
from engine.actions.context import TaskContext
from engine.actions.remote.client import Remote, Token
from engine.actions.remote.follow import Timing

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

COMMON = (
    # The secret is never in the recipe: it names where the engine's process finds it.
    Param("token_env", str, required=False, default=None),
    Param("token_file", str, required=False, default=None, is_path=True),
    Param("timeout_seconds", float, required=False, default=30.0, minimum=0.1, maximum=3600),
    Param("poll_seconds", float, required=False, default=2.0, minimum=0.05, maximum=3600),
    Param("cancel_wait_seconds", float, required=False, default=60.0, minimum=0, maximum=86400),
    Param("abort_wait_seconds", float, required=False, default=5.0, minimum=0, maximum=600),
    Param(
        "give_up_after_seconds",
        float,
        required=False,
        default=900.0,
        minimum=0,
        maximum=ONE_YEAR_S,
    ),
)


def check_url(value: str) -> str | None:
    """Why ``value`` is not a URL a remote action may call, or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL, got {value!r}"
    if "@" in parts.netloc:
        return "must not hold credentials: name them with token_env or token_file"
    return None


def check_common(p: dict[str, Any], *url_fields: str) -> tuple[str, str] | None:
    for name in url_fields:
        if p.get(name) is not None:
            problem = check_url(p[name])
            if problem:
                return name, problem
    if bool(p["token_env"]) == bool(p["token_file"]):
        return "token_env", "give exactly one of token_env (a variable name) or token_file"
    if p["token_env"] and not _ENV_NAME.match(p["token_env"]):
        return "token_env", f"expected an environment variable's name, got {p['token_env']!r}"
    return None


def remote_for(ctx: TaskContext, p: dict[str, Any]) -> Remote:
    return Remote(
        ctx,
        Token(p["token_env"], p["token_file"]),
        timeout=p["timeout_seconds"],
        give_up_after=p["give_up_after_seconds"],
    )


def timing(p: dict[str, Any]) -> Timing:
    return Timing(p["poll_seconds"], p["cancel_wait_seconds"], p["abort_wait_seconds"])
