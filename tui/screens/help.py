"""The help screen (`?`): every key, where it works, what it does."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import KEYS, effective_key

# Keys that are not in the registry: Textual's own, and the table and modal keys.
EXTRA: dict[str, list[tuple[str, str]]] = {
    "Everywhere": [("ctrl+p", "Command palette"), ("ctrl+q", "Quit (same as q)")],
    "Job detail": [
        ("enter", "Open the child job (child row, or a call_job task)"),
        ("tab", "Next table"),
    ],
    "In a confirmation": [
        ("y", "Yes (abort, cancel with children, approve, reject)"),
        ("n", "No"),
        ("tab", "Next button"),
        ("escape", "Back out: nothing is done"),
    ],
}
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Everywhere", ("app",)),
    ("On a job (list and detail)", ("job",)),
    ("Job list", ("list", "table")),
    ("Job detail", ("detail",)),
    ("Servers", ("servers",)),
    ("Logs", ("logs",)),
    ("In a confirmation", ()),
)


def help_renderable(keymap: Mapping[str, str] | None = None) -> Group:
    """Every key from the registry (as remapped by ``keymap``), by where it works."""
    keymap = keymap or {}
    parts: list[Text | Table] = []
    for i, (title, scopes) in enumerate(SECTIONS):
        parts.append(Text(("\n" if i else "") + title, style="bold underline"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True, width=10)
        grid.add_column()
        for scope in scopes:
            for key in KEYS:
                if key.scope == scope:
                    grid.add_row(effective_key(key, keymap), key.help)
        for keys, words in EXTRA.get(title, []):
            grid.add_row(keys, words)
        parts.append(grid)
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("batchdeck keys — escape closes", id="help-title")
            yield Static(help_renderable(getattr(self.app, "keymap", None)), id="help-body")

    def action_close(self) -> None:
        self.dismiss(None)
