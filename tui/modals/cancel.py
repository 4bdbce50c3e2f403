"""Confirm a graceful cancel; the operator may add their own words to the reason."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from engine.format import label
from engine.query import JobView
from tui.modals.base import Dialog


class ConfirmCancel(Dialog[str | None]):
    """Dismisses with the reason typed ("" for none), or None: nothing is done."""

    BINDINGS = [Binding("escape", "back", "Back")]
    AUTO_FOCUS = "#reason"

    def __init__(self, job: JobView) -> None:
        super().__init__()
        self.job = job

    def compose(self) -> ComposeResult:
        j = self.job
        with Vertical(id="dialog"):
            yield Static(f"Cancel job {j.id} {j.name}?", classes="dialog-title")
            body = Text()
            body.append(f"It is {label(j.status)}. ")
            body.append(
                "No new task of it starts. Tasks not started become Didn't run; "
                "running tasks wind down and stop at their next safe point.\n"
            )
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
