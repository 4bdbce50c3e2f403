"""What the data screens share: a live refresh that never overlaps itself, and the
job keys (cancel, abort, hold, approve...) that act on "the selected job".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from textual import events, work
from textual.screen import Screen
from textual.timer import Timer

from tui.data import one_line
from tui.keys import BY_ID, key_names, scope_bindings

if TYPE_CHECKING:
    from tui.app import BatchdeckApp

REFRESH_S = 0.34  # at most ~3 refreshes a second
TICK_S = 1.0  # durations and countdowns move even when the database does not


class LiveScreen(Screen[None]):
    """Loads on mount; while it is the top screen, reloads when the database changed.

    The live refresh is an interval timer, paused while the screen is suspended (a modal
    or another screen on top) and resumed when it is back. Textual awaits the callback
    before the next tick, so two cycles never overlap; a cycle skips its turn while a
    reload is running. A refresh that fails (a locked database...) is said once, keeps
    the last view, and is tried again on the next cycle: it never ends the console, nor
    the engine inside it.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._seen_version = -1
        self._last_load = 0.0
        self._failing = False
        self._live: Timer | None = None
        self.loaded = False

    @property
    def bd(self) -> BatchdeckApp:
        return cast("BatchdeckApp", self.app)

    async def load(self) -> None:
        """Read what the screen shows (subclasses)."""

    async def tick(self) -> None:
        """Time passed but nothing changed: redraw what depends on the clock (by default,
        read again: a lease turns stale with time alone)."""
        self.request_reload()

    def on_mount(self) -> None:
        if self.bd.live:
            # Running at once if this screen is already the current one (ScreenResume may have
            # come before Mount).
            self._live = self.set_interval(
                REFRESH_S, self._cycle, name="live-refresh", pause=not self.is_current
            )
        self.request_reload()

    def on_screen_suspend(self) -> None:
        if self._live is not None:
            self._live.pause()

    def on_screen_resume(self) -> None:
        if self._live is not None:
            self._live.resume()

    async def reload_now(self) -> None:
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

    @work(exclusive=True, group="screen-reload")
    async def request_reload(self) -> None:
        """Reload now, in a worker (first load, after an action). Exclusive: a newer
        request replaces one still reading."""
        await self.reload_now()

    def _reloading(self) -> bool:
        return any(
            w.group == "screen-reload" and w.node is self and not w.is_finished
            for w in self.workers
        )

    async def _cycle(self) -> None:
        if self._reloading():
            return  # a reload is reading: this turn is skipped, the next one looks again
        try:
            if self._failing or self.bd.data.poll() != self._seen_version:
                self.request_reload()  # the same worker as every reload: never two at once
            elif time.monotonic() - self._last_load >= TICK_S:
                self._last_load = time.monotonic()
                await self.tick()
        except Exception as exc:  # noqa: BLE001 - poll() or tick(): as a failed refresh
            self._failed(exc)


JOB_BINDINGS = scope_bindings("job")


# The job keys (tui.keys ids) that ask the engine to change something.
WRITE_KEYS = frozenset(
    {"cancel-job", "abort-job", "enhanced-abort", "cancel-tree", "hold-release"}
    | {"approve", "reject", "rerun-job"}
)
# The job keys only a batch job manager may use when the ``managers`` setting is set.
MANAGER_KEYS = frozenset({"abort-job", "enhanced-abort"})


class JobKeysMixin:
    """Job keys acting on ``selected_job_id()``; the id is taken when the key is pressed."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only database: the keys that write are absent (not shown, not run).
        if action == "job" and parameters and parameters[0] in WRITE_KEYS:
            if self._bd.data.read_only:
                return False
            # Not a manager (``managers`` is set): abort and enhanced abort are absent.
            who = self._bd.who
            if parameters[0] in MANAGER_KEYS and who is not None and not who.manager:
                return False
        return True

    def on_key(self, event: events.Key) -> None:
        """A manager's key (hidden from one who is not) pressed anyway: say why nothing
        happens, in the words a refused request would use."""
        who = self._bd.who
        if who is None or who.manager or self._bd.data.read_only:
            return
        for key_id in sorted(MANAGER_KEYS):
            if event.key in key_names(key_id, self._bd.keymap):
                from engine.core.manager_rule import refusal

                event.stop()
                event.prevent_default()
                kind = "enhanced_abort" if key_id == "enhanced-abort" else "abort"
                cast(Screen, self).notify(str(refusal(who, kind)), severity="warning")
                return

    def selected_job_id(self) -> int | None:
        raise NotImplementedError

    def selected_task_id(self) -> int | None:
        return None

    def _job_or_say(self) -> int | None:
        if self._bd.refuse_if_busy():
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

    def action_job(self, key_id: str) -> None:
        """A job key (tui.keys): start its flow on the job selected now."""
        flow = BY_ID[key_id].flow
        if flow is not None and (job_id := self._job_or_say()) is not None:
            flow(self._bd, job_id, self.selected_task_id())
