"""The HTTP side of the remote long actions: the token, a timeout on every request, and
riding out a remote that is briefly gone.

- The token is read by the process running the task (a batch server, which has the
  engine's environment) from ``token_env`` or ``token_file``: never from the recipe, and
  it is put in no message, log line or exception text.
- A network error, a timeout or a 5xx is retried with a bounded backoff; while it
  lasts, the task's message says "remote unreachable since …". It becomes a failure only
  when the bound (``give_up_after_seconds``) is reached.
- A 401 fails the task with one line: "the remote refused our credentials" (after one
  more try if the token file has changed meanwhile: a rotated token).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from engine.actions._tasks import cancel_and_wait
from engine.actions.context import ActionError, TaskContext

# Backoff between tries while the remote is unreachable: doubling, capped.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
_BODY_SHOWN = 200  # characters of a remote's error body that reach the task's message


class RemoteError(ActionError):
    """A remote call failed for good; the message is one line, without secrets."""


class CancelSeen(Exception):
    """A cancel arrived while a request was being retried: stop retrying, go abort."""


def _one_line(text: str, limit: int = _BODY_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def remote_message(resp: httpx.Response) -> str:
    """What the remote said about an error, in one short line."""
    try:
        data = resp.json()
    except ValueError:
        return _one_line(resp.text)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Salesforce: [{"message": ..., "errorCode": ...}]
    if isinstance(data, dict):
        for key in ("message", "error", "errorMessage", "detail"):
            if isinstance(data.get(key), str):
                code = data.get("errorCode")
                return _one_line(f"{code}: {data[key]}" if code else data[key])
    return _one_line(resp.text)


class Token:
    """The bearer token, read from the environment variable or the file named."""

    def __init__(self, env: str | None, file: str | None) -> None:
        self._env = env
        self._file = file
        self.value = ""

    def read(self) -> str:
        if self._env:
            value = os.environ.get(self._env, "")
            if not value.strip():
                raise RemoteError(
                    f"environment variable {self._env} is not set in the engine's environment "
                    "(token_env)"
                )
        else:
            assert self._file is not None
            try:
                with open(self._file, encoding="utf-8") as fh:
                    value = fh.read()
            except FileNotFoundError:
                raise RemoteError(f"token file {self._file}: no such file") from None
            except OSError as exc:
                raise RemoteError(f"token file {self._file}: {exc.strerror or exc}") from None
            if not value.strip():
                raise RemoteError(f"token file {self._file} is empty")
        value = value.strip()
        if not value.isprintable() or not value.isascii() or " " in value:
            # Said without the value: an HTTP library's error would quote the header.
            where = f"environment variable {self._env}" if self._env else f"token file {self._file}"
            raise RemoteError(f"{where}: not a token (spaces, line breaks or non-ASCII)")
        self.value = value
        return self.value


class Remote:
    """One run's HTTP client for one remote service."""

    def __init__(
        self,
        ctx: TaskContext,
        token: Token,
        *,
        timeout: float,
        give_up_after: float,
    ) -> None:
        self.ctx = ctx
        self.token = token
        self.timeout = timeout
        self.give_up_after = give_up_after
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._down_since: float | None = None  # wall clock, for the message
        self._down_t0: float | None = None  # monotonic, for the bound

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.value}", **(extra or {})}

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        create: bool = False,
        stop_on_cancel: bool = False,
        deadline: float | None = None,
    ) -> httpx.Response:
        """One request, retried while the remote is unreachable; a 2xx response.

        ``create``: the request makes a remote job, so only a failure that proves
        nothing was made (no connection, a 502/503/504) is retried: a lost answer could
        hide a job made, and a second one must never be. ``stop_on_cancel``: a cancel
        arriving while retrying raises ``CancelSeen``. ``deadline`` (monotonic): give up
        then instead of at the general bound.
        """
        if not self.token.value:
            await asyncio.to_thread(self.token.read)
        refreshed = False
        delay = BACKOFF_FIRST_S
        while True:
            timeout = self.timeout
            if deadline is not None:
                timeout = max(0.05, min(timeout, deadline - time.monotonic()))
            try:
                resp = await self._client.request(
                    method,
                    url,
                    json=json,
                    content=content,
                    headers=self._headers(headers),
                    timeout=timeout,
                )
            except httpx.TransportError as exc:
                safe = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if create and not safe:
                    raise RemoteError(
                        f"{what}: the connection failed after the request was sent "
                        f"({_cause(exc)}); the remote may have created a job we never heard "
                        "of: look for it there before running this task again"
                    ) from None
                cause = _cause(exc)
            except httpx.HTTPError as exc:
                # Never the exception's own words: they may quote the request's headers.
                raise RemoteError(f"{what}: {type(exc).__name__}") from None
            else:
                if resp.status_code == 401:
                    if not refreshed and await self._token_changed():
                        refreshed = True
                        continue
                    raise RemoteError(
                        f"the remote refused our credentials (HTTP 401 on {what})"
                    ) from None
                if resp.status_code >= 500 and (not create or resp.status_code in (502, 503, 504)):
                    cause = f"HTTP {resp.status_code}"
                elif resp.status_code >= 400:
                    raise RemoteError(
                        f"{what}: HTTP {resp.status_code}: {remote_message(resp)}"
                    ) from None
                else:
                    self._reachable()
                    return resp
            delay = await self._unreachable(cause, what, delay, stop_on_cancel, deadline)

    async def _token_changed(self) -> bool:
        before = self.token.value
        try:
            return await asyncio.to_thread(self.token.read) != before
        except RemoteError:
            return False

    def _reachable(self) -> None:
        if self._down_since is not None:
            self.ctx.log("the remote answers again")
        self._down_since = self._down_t0 = None

    async def _unreachable(
        self, cause: str, what: str, delay: float, stop_on_cancel: bool, deadline: float | None
    ) -> float:
        """Say so, wait before the next try (a cancel may cut the wait short); the next
        delay. Raises once the bound is reached."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since, self._down_t0 = time.time(), now
        assert self._down_t0 is not None
        since = time.strftime("%H:%M:%S", time.localtime(self._down_since))
        down_for = now - self._down_t0
        if down_for >= self.give_up_after or (deadline is not None and now >= deadline):
            raise RemoteError(
                f"remote unreachable since {since} ({cause} on {what}); gave up after "
                f"{down_for:.0f} s"
            )
        self.ctx.log(f"remote unreachable since {since} ({cause} on {what}); retrying")
        wait = min(delay, self.give_up_after - down_for)
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        if stop_on_cancel:
            if self.ctx.cancel_requested:
                raise CancelSeen
            await wait_or(self.ctx.wait_cancel, wait)
            if self.ctx.cancel_requested:
                raise CancelSeen
        else:
            await asyncio.sleep(wait)
        return min(delay * 2, BACKOFF_MAX_S)


async def wait_or(event: Callable[[], Awaitable[None]], seconds: float) -> None:
    """Sleep ``seconds`` or until ``event()`` completes, whichever is first."""
    waiter = asyncio.ensure_future(event())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        await cancel_and_wait(waiter)


def _cause(exc: httpx.TransportError) -> str:
    """A transport error in a few words (never the request's headers)."""
    kind = {
        httpx.ConnectError: "connection refused or failed",
        httpx.ConnectTimeout: "connect timeout",
        httpx.ReadTimeout: "no answer within the timeout",
        httpx.WriteTimeout: "write timeout",
        httpx.PoolTimeout: "pool timeout",
        httpx.RemoteProtocolError: "connection closed by the remote",
        httpx.ReadError: "connection reset",
        httpx.WriteError: "connection reset while sending",
    }.get(type(exc))
    return kind or type(exc).__name__
