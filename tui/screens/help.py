"""The help screen (`?`): every key, where it works, what it does."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {"slash": "/", "question_mark": "?"}

# Longer words than the footer has room for, by action.
DETAILS = {
    "quit": "Quit (asks first if the embedded engine is running tasks)",
    "help": "This help",
    "servers": "Servers: slots in use, engines, drain deadlines",
    "cancel_job": "Cancel gracefully: no new task starts, running ones wind down",
    "abort_job": "Abort: force-stop the Canceling tasks (cancels an Executing job first)",
    "enhanced_abort": "Enhanced abort: abort and restart the servers running it",
    "cancel_tree": "Cancel the job and every job it called",
    "hold_release": "Hold a Waiting job, or release a held one",
    "approve": "Approve the waiting approval task (asks first)",
    "reject": "Reject the waiting approval task (asks first)",
    "open": "Open the selected job",
    "filter": "Filter by text (id, name, user, status)",
    "status_filter": "Status filter: all, running, waiting, failed, ended",
    "sort": "Sort by id, name, status, started",
    "reverse": "Reverse the order",
    "clear": "Clear the filters",
    "back": "Back",
}


def _row(b: BindingType) -> tuple[str, str]:
    assert isinstance(b, Binding)
    keys = b.key_display or ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in b.key.split(","))
    return keys, DETAILS.get(b.action, b.description)


def help_renderable() -> Group:
    from tui.app import BatchdeckApp
    from tui.screens.base import JOB_BINDINGS
    from tui.screens.detail import JobDetailScreen
    from tui.screens.jobs import JobListScreen
    from tui.screens.servers import ServersScreen
    from tui.widgets.job_table import JobTable

    sections: list[tuple[str, list[BindingType]]] = [
        (
            "Everywhere",
            [
                *BatchdeckApp.BINDINGS,
                Binding("ctrl+p", "", "Command palette"),
                Binding("ctrl+q", "", "Quit (same as q)"),
            ],
        ),
        ("On a job (list and detail)", list(JOB_BINDINGS)),
        (
            "Job list",
            [b for b in JobListScreen.BINDINGS if b not in JOB_BINDINGS] + list(JobTable.BINDINGS),
        ),
        (
            "Job detail",
            [b for b in JobDetailScreen.BINDINGS if b not in JOB_BINDINGS]
            + [
                Binding("enter", "", "Open the child job (child row, or a call_job task)"),
                Binding("tab", "", "Next table"),
            ],
        ),
        ("Servers", list(ServersScreen.BINDINGS)),
        (
            "In a confirmation",
            [
                Binding("y", "", "Yes (abort, cancel with children, approve, reject)"),
                Binding("n", "", "No"),
                Binding("escape", "", "Back out: nothing is done"),
            ],
        ),
    ]
    parts: list[Text | Table] = []
    for i, (title, bindings) in enumerate(sections):
        parts.append(Text(("\n" if i else "") + title, style="bold underline"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True, width=10)
        grid.add_column()
        for b in bindings:
            grid.add_row(*_row(b))
        parts.append(grid)
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 80;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen #help-title {
        text-style: bold;
        padding-bottom: 1;
    }
    """

    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("batchdeck keys — escape closes", id="help-title")
            yield Static(help_renderable())

    def action_close(self) -> None:
        self.dismiss(None)
