"""Confirm a graceful cancel; the operator may add their own words to the reason."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from engine.core.format import label
from engine.core.safe_text import safe_line
from engine.core.views import JobView, TaskView
from tui.modals.base import Dialog, DialogList


def cancel_task_lines(tasks: Sequence[TaskView]) -> Text:
    """How a cancel stops each running task, as the task table's On cancel column."""
    text = Text()
    text.append(f"Running tasks wind down ({len(tasks)}):", style="bold")
    for t in tasks:
        how = t.stops_by.cancel if t.stops_by is not None else "finishes first"
        text.append("\n• " + safe_line(f"{t.name} on {t.server or '-'}: {how}"))
    return text


def only_abort_stops(tasks: Sequence[TaskView]) -> str | None:
    """A warning when a cancel cannot stop some task: it would stay Canceling (stuck)."""
    walled = [t.name for t in tasks if t.stops_by is not None and t.stops_by.key == "restart"]
    if not walled:
        return None
    names = safe_line(", ".join(walled))
    return (
        f"A cancel does not stop {names}: only a server restart does. The job would stay "
        "Canceling (stuck) until an enhanced abort (A) restarts its server."
    )


class ConfirmCancel(Dialog[str | None]):
    """Dismisses with the reason typed ("" for none), or None: nothing is done."""

    BINDINGS = [Binding("escape", "back", "Back")]
    AUTO_FOCUS = "#reason"

    def __init__(self, job: JobView, tasks: Sequence[TaskView] = ()) -> None:
        super().__init__()
        self.job = job
        self.tasks = list(tasks)  # its running tasks, each with how a cancel stops it

    def compose(self) -> ComposeResult:
        j = self.job
        with Vertical(id="dialog"):
            yield Static(f"Cancel job {j.id} {j.name}?", classes="dialog-title")
            yield Static(
                f"It is {label(j.status)}. No new task of it starts. Tasks not started "
                "become Didn't run."
            )
            if self.tasks:
                with DialogList(classes="dialog-list"):
                    yield Static(cancel_task_lines(self.tasks))
            walled = only_abort_stops(self.tasks)
            if walled:
                yield Static(walled, classes="warning", id="only-abort")
            body = Text()
            body.append("Reason for cancel: ", style="bold")
            body.append(f"“Job canceled by {self.app_actor()}” followed by your words:")
            yield Static(body)
            box = Input(placeholder="Reason (optional) — enter cancels the job", id="reason")
            box.cursor_blink = bool(getattr(self.app, "live", True))
            yield box
            with Horizontal(classes="buttons"):
                yield Button("Cancel job", variant="error", id="yes")
                yield Button("Back", id="no")

    def app_actor(self) -> str:
        return str(getattr(self.app, "actor", "you"))

    def _reason(self) -> str:
        return self.query_one("#reason", Input).value.strip()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self._reason())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self._reason() if event.button.id == "yes" else None)

    def action_back(self) -> None:
        self.dismiss(None)
