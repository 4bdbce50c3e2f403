"""What the data screens share: a live refresh that never overlaps itself, and the
job keys (cancel, abort, hold, approve...) that act on "the selected job".
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from textual.binding import Binding
from textual.screen import Screen

from tui.data import one_line

if TYPE_CHECKING:
    from tui.app import BatchdeckApp

REFRESH_S = 0.34  # at most ~3 refreshes a second
TICK_S = 1.0  # durations and countdowns move even when the database does not


class LiveScreen(Screen[None]):
    """Loads on mount; while it is the top screen, reloads when the database changed.

    The refresh is a one-shot timer re-armed after each refresh (never ``set_interval``),
    so two refreshes never overlap, and it does nothing while a modal is on top. A refresh
    that fails (a locked database...) is said once, keeps the last view, and is tried
    again on the next cycle: it never ends the console, nor the engine inside it.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._reload_lock = asyncio.Lock()
        self._seen_version = -1
        self._last_load = 0.0
        self._failing = False
        self.loaded = False

    @property
    def bd(self) -> BatchdeckApp:
        return cast("BatchdeckApp", self.app)

    async def load(self) -> None:
        """Read what the screen shows (subclasses)."""

    async def tick(self) -> None:
        """Time passed but nothing changed: redraw what depends on the clock."""
        await self.reload_now()

    def on_mount(self) -> None:
        self.run_worker(self._first_load(), group="screen-load")

    async def _first_load(self) -> None:
        await self.reload_now()
        if self.bd.live:
            self._arm()

    async def reload_now(self) -> None:
        async with self._reload_lock:
            try:
                version = self.bd.data.poll()
                await self.load()
            except Exception as exc:  # noqa: BLE001 - said once; retried next cycle
                self._failed(exc)
                return
            self._seen_version = version
            self._last_load = time.monotonic()
            self.loaded = True
            self._failing = False

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            self.notify(f"could not refresh: {one_line(exc)}", severity="error", timeout=6)

    def request_reload(self) -> None:
        """Reload soon, in a worker (after an action, or a changed filter)."""
        self.run_worker(self.reload_now(), group="screen-reload")

    def _arm(self) -> None:
        self.set_timer(REFRESH_S, self._cycle, name="live-refresh")

    async def _cycle(self) -> None:
        try:
            if self.is_active and not self._reload_lock.locked():
                if self._failing or self.bd.data.poll() != self._seen_version:
                    await self.reload_now()
                elif time.monotonic() - self._last_load >= TICK_S:
                    self._last_load = time.monotonic()
                    await self.tick()
        except Exception as exc:  # noqa: BLE001 - poll() or tick(): as a failed refresh
            self._failed(exc)
        finally:
            if self.is_attached:
                self._arm()


JOB_BINDINGS = [
    Binding("c", "cancel_job", "Cancel"),
    Binding("a", "abort_job", "Abort"),
    Binding("A", "enhanced_abort", "Enhanced abort", show=False),
    Binding("C", "cancel_tree", "Cancel with children", show=False),
    Binding("h", "hold_release", "Hold/release", show=False),
    Binding("y", "approve", "Approve", show=False),
    Binding("n", "reject", "Reject", show=False),
]


# The job keys' actions: each asks the engine to change something.
WRITE_ACTIONS = frozenset(
    {"cancel_job", "abort_job", "enhanced_abort", "cancel_tree", "hold_release"}
    | {"approve", "reject"}
)


class JobKeysMixin:
    """Job keys acting on ``selected_job_id()``; the id is taken when the key is pressed."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only database: the keys that write are absent (not shown, not run).
        if action in WRITE_ACTIONS and self._bd.data.read_only:
            return False
        return True

    def selected_job_id(self) -> int | None:
        raise NotImplementedError

    def selected_task_id(self) -> int | None:
        return None

    def _job_or_say(self) -> int | None:
        if self._bd.busy_say():
            return None  # a request is being prepared or confirmed: one at a time
        return self._selected_or_say()

    def _selected_or_say(self) -> int | None:
        job_id = self.selected_job_id()
        if job_id is None:
            cast(Screen, self).notify("No job selected", severity="warning")
        return job_id

    @property
    def _bd(self) -> BatchdeckApp:
        return cast("BatchdeckApp", cast(Screen, self).app)

    def action_cancel_job(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_cancel(job_id)

    def action_abort_job(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_abort(job_id, enhanced=False)

    def action_enhanced_abort(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_abort(job_id, enhanced=True)

    def action_cancel_tree(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_cancel_tree(job_id)

    def action_hold_release(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_hold_release(job_id)

    def action_approve(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_approval(job_id, self.selected_task_id(), approve=True)

    def action_reject(self) -> None:
        if (job_id := self._job_or_say()) is not None:
            self._bd.flow_approval(job_id, self.selected_task_id(), approve=False)
