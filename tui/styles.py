"""How statuses look: a colour AND the text label, so a status reads without colour.

With NO_COLOR, Textual turns colours to greys, and some (red on dark) become hard to
read; statuses then use text attributes only (bold, italic, underline, dim).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from engine.core.format import label

STATUS_STYLES: dict[str, str] = {
    "waiting": "dim",
    "withhold": "yellow",
    "ready": "",
    "executing": "bold cyan",
    "canceling": "bold yellow",
    "canceled": "magenta",
    "didnt_run": "dim",
    "aborting": "bold red",
    "aborted": "red",
    "ended": "green",
    "error": "bold red",
    # servers
    "online": "green",
    "draining": "bold yellow",
    "restarting": "bold red",
    "offline": "dim",
}

PLAIN_STYLES: dict[str, str] = {
    "waiting": "dim",
    "withhold": "italic",
    "executing": "bold",
    "canceling": "bold italic",
    "didnt_run": "dim",
    "aborting": "bold underline",
    "aborted": "underline",
    "error": "bold underline",
    "draining": "bold italic",
    "restarting": "bold underline",
    "offline": "dim",
}

_plain = False


def set_plain(plain: bool) -> None:
    """No colours (NO_COLOR): the app sets this once, from ``App.no_color``."""
    global _plain
    _plain = plain


def status_style(status: str) -> Style:
    table = PLAIN_STYLES if _plain else STATUS_STYLES
    return Style.parse(table.get(status, "") or "none")


def server_label(status: str) -> str:
    return status.capitalize()


def status_text(status: str, *, server: bool = False) -> Text:
    """The status as styled text: the label is always there, the colour is extra."""
    words = server_label(status) if server else label(status)
    return Text(words, style=status_style(status))
