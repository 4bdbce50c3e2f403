"""The frame every confirmation shares: a bordered dialog, a scrolling list, buttons."""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Button

DIALOG_CSS = """
{name} {{
    align: center middle;
    background: $background 60%;
}}
{name} > #dialog {{
    width: 78;
    max-width: 100%;
    height: auto;
    max-height: 100%;
    border: thick $warning;
    background: $surface;
    padding: 0 1;
}}
{name} .dialog-title {{
    text-style: bold;
    width: 100%;
}}
{name} .warning {{
    color: $text-error;
    text-style: bold;
}}
{name} .dialog-list {{
    height: auto;
    max-height: 10;
    padding: 0 0 0 2;
    margin-bottom: 1;
}}
{name} .buttons {{
    height: auto;
    width: 100%;
    align-horizontal: right;
}}
{name} .buttons Button {{
    margin-left: 2;
}}
"""


class YesNoModal(ModalScreen[bool]):
    """Yes / No, with y and n bound; Escape (and No) dismiss with False."""

    BINDINGS = [
        Binding("y", "yes", "Yes"),
        Binding("n", "no", "No"),
        Binding("escape", "no", "Back"),
    ]
    AUTO_FOCUS = "#no"

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")
