"""The batch servers: status, host and pid of each server process, slots in use, drain
deadline, lease age, and the engine that supervises them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Header, Static

from engine.core.format import duration
from engine.core.views import ServerView
from tui.data import owner_pid
from tui.keys import bindings
from tui.screens.base import LiveScreen
from tui.styles import status_text
from tui.widgets.cells import RowCells
from tui.widgets.footer import KeyFooter

COLUMNS = (
    ("name", "Server"),
    ("status", "Status"),
    ("host", "Host"),
    ("pid", "PID"),
    ("slots", "In use"),
    ("drain", "Drain deadline"),
    ("lease", "Lease age"),
    ("engine", "Engine"),
    ("note", "Note"),
)


def drain_cell(s: ServerView, now: float) -> Text:
    if s.drain_deadline is None or s.status not in ("draining", "restarting"):
        return Text("-", style="dim")
    left = s.drain_deadline - now
    if left > 0:
        return Text(f"in {duration(left)}", style="bold yellow")
    return Text(f"due {duration(-left)} ago", style="bold red")


def server_cells(s: ServerView, now: float) -> tuple[object, ...]:
    if s.live:
        eng = Text(f"pid {owner_pid(s.lease_owner or '')}")
    else:
        eng = Text("none live", style="dim")
    note = s.note or ""
    if s.restart_job_id is not None:
        note = f"abort of job {s.restart_job_id}"
    age = s.lease_age(now)
    return (
        s.name,
        status_text(s.status, server=True),
        s.host or "-",
        str(s.pid) if s.pid else "-",
        f"{s.in_use}/{s.slots}",
        drain_cell(s, now),
        Text(f"{age:.0f} s" if age is not None else "-", style="" if s.live else "dim"),
        eng,
        note,
    )


class ServersScreen(LiveScreen):
    BINDINGS = bindings("servers-back")

    def __init__(self) -> None:
        super().__init__(id="servers-screen")
        self._names: list[str] = []
        self._cells = RowCells([key for key, _ in COLUMNS])

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[object] = DataTable(id="servers", cursor_type="row")
        for key, title in COLUMNS:
            table.add_column(title, key=key)
        yield table
        yield Static(id="servers-note")
        yield KeyFooter()

    def on_mount(self) -> None:  # LiveScreen.on_mount runs too
        self.title = "Servers"
        self.query_one(DataTable).focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    # The default tick reads the servers again: a lease turns stale with time alone (an
    # engine that died writes nothing), and there are only a few rows.
    async def load(self) -> None:
        now = self.bd.clock()
        servers = await self.bd.data.reader.servers(now)
        table: DataTable[object] = self.query_one(DataTable)
        names = [s.name for s in servers]
        rows = {s.name: server_cells(s, now) for s in servers}
        if names == self._names:
            self._cells.sync(table, rows)
        else:
            self._cells.rebuild(table, rows)
            self._names = names
        note = self.query_one("#servers-note", Static)
        if not servers:
            note.update("No server has ever been online on this database.")
        else:
            note.update(
                "A Draining server takes no new task until its running tasks "
                "finish or the deadline passes; then it Restarts and comes back Online."
            )
