"""Confirm quitting while the embedded engine still runs tasks."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui.modals.base import YesNoModal


class ConfirmQuit(YesNoModal):
    def __init__(self, running: int | None) -> None:
        """``running``: tasks running in the engine, or None when it could not be read."""
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        n = self.running
        if n is None:
            what = "Tasks may be running in this console's engine"
        else:
            what = f"{n} task{'s are' if n != 1 else ' is'} running in this console's engine"
        with Vertical(id="dialog"):
            yield Static("Quit and stop the embedded engine?", classes="dialog-title")
            yield Static(
                f"{what}: quitting interrupts them and they run again when an engine starts. "
                "To keep jobs running after you leave, run `batchdeck serve` and attach "
                "the console to it."
            )
            with Horizontal(classes="buttons"):
                yield self.yes_button("Yes, quit", "error")
                yield self.no_button()
