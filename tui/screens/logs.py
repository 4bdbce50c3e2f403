"""A task's log (or every task's of a job), as k9s shows a pod's: the whole log
scrollable without loading it (``tui.widgets.log_view``), followed live (``f``),
wrapped (``w``), searched (``/``, ``n``/``N``), from the top or the bottom (``g``/``G``),
attempt by attempt (``[``/``]``). Escape goes back."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Header, Input, Static

from engine.core.safe_text import safe_line
from tui.keys import scope_bindings
from tui.screens.base import LiveScreen
from tui.widgets.footer import KeyFooter
from tui.widgets.log_view import LogSource, LogView


class LogScreen(LiveScreen):
    BINDINGS = scope_bindings("logs")

    def __init__(self, job_id: int, task_id: int | None = None, attempt: int | None = None):
        super().__init__()
        self.job_id = job_id
        self.task_id = task_id
        self._attempt = attempt
        self.following: bool | None = None  # None: decided on the first load
        self._source: LogSource | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="log-title")
        yield LogView(LogSource(None, self.job_id, self.task_id, self._attempt), id="log")
        yield Input(placeholder="search the log (any case), enter", id="log-search")
        yield KeyFooter()

    @property
    def view(self) -> LogView:
        return self.query_one("#log", LogView)

    def on_mount(self) -> None:  # LiveScreen.on_mount runs too
        self.title = f"Job {self.job_id} · logs"
        self.query_one("#log-search", Input).display = False
        self.view.focus()

    # -- loading ------------------------------------------------------------------------
    async def tick(self) -> None:
        return  # nothing on this screen moves with the clock alone

    async def load(self) -> None:
        view = self.view
        source = view.source
        if source.store is None:
            await self.bd.data.open()
            source.store = self.bd.data.store
        changed = source.reload()
        if self.following is None:
            # Opens at the end (the last lines are what an operator looks for first),
            # following while more may come.
            self.following = source.running
            view.follow = True  # opened at the end, once laid out
            view.changed()
            view.follow = self.following
        elif changed:
            view.changed()
        self._show_title()

    def _show_title(self) -> None:
        source = self.view.source
        what = "every task"
        if source.task_id is not None:
            name = source.names.get(source.task_id, (str(source.task_id),))[0]
            what = f"task {safe_line(name)} · attempt {source.attempt}"
            if len(source.attempts) > 1:
                what += f" of {len(source.attempts)} ([ ])"
        parts = [f"Job {self.job_id} · {what}", f"{source.total:,} lines"]
        parts.append("following" if self.following else "paused")
        if self.view.wrap:
            parts.append("wrapped")
        view = self.view
        if view.needle:
            where = f"line {view.match + 1:,}" if view.match is not None else "no match"
            parts.append(f"/{safe_line(view.needle)}: {where}")
        self.query_one("#log-title", Static).update(Text(" · ".join(parts), style="bold"))

    # -- keys ---------------------------------------------------------------------------
    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.display = False
            self.view.focus()
            return
        self.app.pop_screen()

    def action_follow(self) -> None:
        self.following = not self.following
        self.view.follow = self.following
        if self.following:
            self.view.go_bottom()
        self._show_title()

    def action_wrap(self) -> None:
        top = int(self.view.scroll_y)
        self.view.set_wrap(not self.view.wrap)
        if self.following:
            self.view.go_bottom()
        else:
            self.view.scroll_to(y=min(top, self.view.bottom_line()), animate=False, immediate=True)
        self._show_title()

    def action_top(self) -> None:
        self.following = self.view.follow = False
        self.view.go_top()
        self._show_title()

    def action_bottom(self) -> None:
        self.view.go_bottom()
        self._show_title()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.value = self.view.needle
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.display = False
        self.view.focus()
        self.view.needle = event.value
        self.view.match = None
        self._find(int(self.view.scroll_y), backwards=False)

    def action_next_match(self) -> None:
        start = self.view.match + 1 if self.view.match is not None else int(self.view.scroll_y)
        self._find(start, backwards=False)

    def action_previous_match(self) -> None:
        start = self.view.match - 1 if self.view.match is not None else int(self.view.scroll_y)
        self._find(start, backwards=True)

    def _find(self, start: int, *, backwards: bool) -> None:
        view = self.view
        if not view.needle:
            return
        found = view.source.find(start, view.needle, backwards=backwards)
        if found is None:
            self.notify(f"no more matches for {safe_line(view.needle)!r}", severity="warning")
        else:
            self.following = view.follow = False
            view.match = found
            view.go_line(found)
        view.changed()
        self._show_title()

    async def action_attempt(self, step: int) -> None:
        source = self.view.source
        if source.task_id is None or source.attempt is None:
            self.notify("every task's log: open a task's (l in the job's detail) to switch attempt")
            return
        attempts = source.attempts
        at = attempts.index(source.attempt) if source.attempt in attempts else len(attempts) - 1
        if not 0 <= at + step < len(attempts):
            self.notify("no other attempt that way", severity="warning")
            return
        source.attempt = attempts[at + step]
        source.refs = []
        self.following = None
        await self.reload_now()
