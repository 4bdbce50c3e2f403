"""One job: its fields, its task table, its child jobs and its event log."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Header, Static
from textual.widgets.data_table import RowDoesNotExist

from engine.core.format import clock, duration, label, progress, stamp
from engine.core.views import JobDetail, JobView, TaskView
from engine.reader.text import event_text
from tui.data import join
from tui.keys import bindings
from tui.screens.base import JOB_BINDINGS, JobKeysMixin, LiveScreen
from tui.styles import status_text
from tui.widgets.cells import RowCells
from tui.widgets.column_fit import fit_columns
from tui.widgets.footer import KeyFooter
from tui.widgets.job_table import NO_ENGINE, status_words

TASK_COLUMNS = (
    ("task", "Task"),
    ("status", "Status"),
    ("server", "Server"),
    ("try", "Try"),
    ("progress", "Progress"),
    ("started", "Started"),
    ("duration", "Duration"),
    ("stops", "On cancel"),  # how a cancel stops it (running tasks): tui item "how each stops"
    ("message", "Message"),
)
TASK_TITLES = dict(TASK_COLUMNS)
ALL_TASK_KEYS = [k for k, _ in TASK_COLUMNS]
# Least needed first: they drop while the table is wider than the screen; then the
# message is cut down to 24, then the progress drops (the message often says it too).
TASK_DROPS = ("started", "try", "server", "duration")
TABLE_MARGIN = 4  # the table's margins and the body's scroll bar
ASSUMED = {"status": 10, "try": 3, "progress": 17, "started": 8, "duration": 8, "message": 30}


def _width(cell: object) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def task_columns(
    width: int, keys: list[str], rows: list[dict[str, object]]
) -> tuple[tuple[str, int | None], ...]:
    """The task table's columns for ``width`` cells (tui.widgets.column_fit)."""
    # Measured: what changes only when tasks start or stop. Assumed: what changes with
    # every progress report or tick, so that a report does not rebuild the table.
    natural = {
        k: ASSUMED.get(k) or max([len(TASK_TITLES[k]), *(_width(r[k]) for r in rows)]) for k in keys
    }
    return fit_columns(width, natural, keys, TASK_DROPS, "message", late_drops=("progress",))


def cut(cell: object, width: int | None) -> object:
    """A cell cut to a fixed column width, with an ellipsis (None: as it is)."""
    if width is None or _width(cell) <= width:
        return cell
    return shorten(str(cell), width)


CHILD_COLUMNS = (
    ("id", "ID"),
    ("name", "Name"),
    ("status", "Status"),
    ("mode", "Mode"),
    ("tasks", "Tasks"),
    ("note", "Note"),
)
OUTPUT_LINES = 12
EVENT_LINES = 200
MESSAGE_WIDTH = 60
NAME_WIDTH = 40  # task and child names longer than this are shortened in the tables


def waiting_approval(t: TaskView) -> bool:
    return t.action == "approval" and t.status in ("executing", "canceling") and not t.approval


def task_message(t: TaskView) -> str:
    if waiting_approval(t):
        return "waiting for approval: y / n"
    text = t.error or t.message or ""
    if t.approval and t.approval_by and t.action == "approval" and not text:
        text = f"{t.approval} by {t.approval_by}"
    return shorten(" ".join(text.split()), MESSAGE_WIDTH)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


LABEL_WIDTH = 18


def tasks_done_text(j: JobView) -> str:
    """ "0/2 done · 2 didn't run": done is what Ended."""
    text = f"{j.tasks_done}/{j.tasks_total} done"
    if j.tasks_didnt_run:
        text += f" · {j.tasks_didnt_run} didn't run"
    return text


def _interesting(tasks: list[TaskView]) -> int | None:
    """Where the task cursor starts: a waiting approval, else a running task."""
    for test in (waiting_approval, lambda t: t.status in ("executing", "canceling", "aborting")):
        for t in tasks:
            if test(t):
                return t.id
    return None


def fields_renderable(d: JobDetail, now: float, no_engine: bool = False) -> Group:
    """Short fields two to a line, long ones (who, when, why) one to a line."""
    j = d.job
    short = Table.grid(padding=(0, 1), expand=True)
    short.add_column(style="bold", no_wrap=True, min_width=LABEL_WIDTH)
    short.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    short.add_column(style="bold", no_wrap=True, min_width=8)
    short.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    status = status_text(j.status)
    if no_engine and status_words(j, no_engine) != label(j.status):
        status.append(f" {NO_ENGINE}")
    if j.system:
        status.append(" (system job)", style="dim")
    short.add_row("Job", Text(f"{j.id} {j.name}"), "Status", status)
    short.add_row("Started", stamp(j.started_at), "Ended", stamp(j.ended_at))
    short.add_row("Duration", duration(j.duration(now)), "Tasks", tasks_done_text(j))
    long = Table.grid(padding=(0, 1), expand=True)
    long.add_column(style="bold", no_wrap=True, min_width=LABEL_WIDTH)
    long.add_column(ratio=1)
    long.add_row("Servers", join(j.servers, 60))
    long.add_row("Submitted", f"{stamp(j.submitted_at)} by {j.submitted_by}")
    if j.rerun_of:
        long.add_row("Rerun of", f"job {j.rerun_of}")
    if j.parent_id:
        parent = f"job {j.parent_id} ({j.call_mode or 'call'})"
        if j.orphaned:
            parent += " — orphaned: the calling task was aborted; this job runs on"
        long.add_row("Parent", parent)
    if j.cancel_reason:
        long.add_row("Reason for cancel", j.cancel_reason)
    if j.canceled_by:
        long.add_row("Canceled", f"{stamp(j.canceled_at)} by {j.canceled_by}")
    if j.aborted_by:
        long.add_row("Aborted", f"{stamp(j.aborted_at)} by {j.aborted_by}")
    if j.error:
        long.add_row("Error", Text(j.error, style="red"))
    return Group(short, long)


class JobDetailScreen(JobKeysMixin, LiveScreen):
    BINDINGS = [*bindings("detail-back"), *JOB_BINDINGS]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.detail: JobDetail | None = None
        self._task_ids: list[int] = []
        self._child_ids: list[int] = []
        # The task table's columns: "On cancel" only while a task of the job is running.
        self._task_columns: tuple[tuple[str, int | None], ...] = ()  # (key, cut width)
        self.task_cells = RowCells([])
        self._child_cells = RowCells([key for key, _ in CHILD_COLUMNS])
        self._event_ids: list[int] | None = None  # what the event log shows

    def _no_engine(self) -> bool:
        return getattr(self.app, "engines_alive", None) is False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="body"):
            yield Static(id="banner", classes="-hidden")  # a stuck job: its next step
            yield Static(id="fields")
            yield Static("Tasks", classes="section")
            yield DataTable(id="tasks", cursor_type="row")
            yield Static(id="output", classes="-hidden")
            yield Static("Child jobs", classes="section -hidden", id="children-title")
            children: DataTable[object] = DataTable(
                id="children", cursor_type="row", classes="-hidden"
            )
            for key, title in CHILD_COLUMNS:
                children.add_column(title, key=key)
            yield children
            yield Static("Events", classes="section")
            yield Static(id="events")
        yield KeyFooter()

    def on_mount(self) -> None:  # LiveScreen.on_mount runs too
        self.title = f"Job {self.job_id}"
        self.query_one("#tasks", DataTable).focus()

    # -- the selected job and task ------------------------------------------------------
    def selected_job_id(self) -> int | None:
        return self.job_id

    def selected_task_id(self) -> int | None:
        table = self.query_one("#tasks", DataTable)
        if not self._task_ids or table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no cursor yet
            return None
        return int(key.value) if key.value is not None else None

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- loading ------------------------------------------------------------------------
    async def tick(self) -> None:
        """A second passed and nothing changed in the database: move the durations, from
        what was loaded (only the cells whose text changes are written)."""
        d = self.detail
        if d is None or d.job.terminal:
            return  # nothing moves on a finished job
        if any(t.status in ("canceling", "aborting") for t in d.tasks):
            self.request_reload()  # a job turns stuck with time alone: read the banner again
            return
        now = self.bd.clock()
        self.query_one("#fields", Static).update(fields_renderable(d, now, self._no_engine()))
        self._fill_tasks(d, now)

    async def load(self) -> None:
        detail = await self.bd.data.reader.job_detail(self.job_id, event_limit=EVENT_LINES + 1)
        self.detail = detail
        if detail is None:
            self.query_one("#fields", Static).update(
                Text(f"Job {self.job_id} does not exist", style="bold red")
            )
            return
        now = self.bd.clock()
        stuck = await self.bd.data.reader.stuck_job(self.job_id, now=now)
        banner = self.query_one("#banner", Static)
        banner.set_class(stuck is None, "-hidden")
        banner.update(Text(f"STUCK · {stuck.banner}") if stuck is not None else "")
        self.title = f"Job {detail.job.id} {detail.job.name}"
        self.query_one("#fields", Static).update(fields_renderable(detail, now, self._no_engine()))
        self._fill_tasks(detail, now)
        self._fill_children(detail)
        self._fill_events(detail, now)
        self._show_output()

    def _fill_tasks(self, d: JobDetail, now: float) -> None:
        table: DataTable[object] = self.query_one("#tasks", DataTable)
        ids = [t.id for t in d.tasks]
        running = any(t.stops_by is not None for t in d.tasks)
        keys = [k for k, _ in TASK_COLUMNS if running or k != "stops"]
        every = {
            str(t.id): dict(zip(ALL_TASK_KEYS, self._task_cells(t, now), strict=True))
            for t in d.tasks
        }
        columns = task_columns(self.app.size.width - TABLE_MARGIN, keys, list(every.values()))
        previous = self.selected_task_id() if self._task_ids else None
        if columns != self._task_columns:  # a task started or stopped, the width changed
            table.clear(columns=True)
            for key, width in columns:
                table.add_column(TASK_TITLES[key], key=key, width=width)
            self._task_columns = columns
            self.task_cells = RowCells([key for key, _ in columns])
            self._task_ids = []
        rows = {
            tid: tuple(cut(cells[k], width) for k, width in columns) for tid, cells in every.items()
        }
        if ids == self._task_ids:
            self.task_cells.sync(table, rows)
            return
        selected = previous if previous is not None else _interesting(d.tasks)
        self.task_cells.rebuild(table, rows)
        self._task_ids = ids
        if selected is not None:
            try:
                table.move_cursor(row=table.get_row_index(str(selected)))
            except RowDoesNotExist:
                pass

    def on_resize(self) -> None:
        if self.detail is not None:  # the task table's columns fit the new width
            self._fill_tasks(self.detail, self.bd.clock())

    @staticmethod
    def _task_cells(t: TaskView, now: float) -> tuple[object, ...]:
        return (
            shorten(t.name, NAME_WIDTH),
            status_text(t.status),
            t.server or "-",
            f"{t.attempt}/{t.max_attempts}",
            progress(t.progress_done, t.progress_total, t.progress_unit) or "-",
            clock(t.started_at, now),
            duration(t.duration(now)),
            t.stops_by.cancel if t.stops_by is not None else "",
            task_message(t),
        )

    def _fill_children(self, d: JobDetail) -> None:
        table: DataTable[object] = self.query_one("#children", DataTable)
        title = self.query_one("#children-title", Static)
        hidden = not d.children
        table.set_class(hidden, "-hidden")
        title.set_class(hidden, "-hidden")
        ids = [c.id for c in d.children]
        rows = {
            str(c.id): (
                str(c.id),
                shorten(c.name, NAME_WIDTH),
                status_text(c.status),
                c.call_mode or "-",
                f"{c.tasks_done}/{c.tasks_total}",
                "orphaned" if c.orphaned else "",
            )
            for c in d.children
        }
        if ids == self._child_ids:
            self._child_cells.sync(table, rows)
            return
        self._child_cells.rebuild(table, rows)
        self._child_ids = ids

    def _fill_events(self, d: JobDetail, now: float) -> None:
        ids = [e.id for e in d.events]
        if ids == self._event_ids:
            return  # the same events: nothing to redraw
        self._event_ids = ids
        names = {t.id: t.name for t in d.tasks}
        events = d.events[-EVENT_LINES:]  # one more was read: were there earlier ones?
        text = Text()
        if len(d.events) > len(events):
            text.append("(earlier events not shown)\n", "dim")
        for i, e in enumerate(events):
            if i:
                text.append("\n")
            text.append(clock(e.at, now), style="dim")
            text.append("  ")
            text.append(event_text(e, names))
        self.query_one("#events", Static).update(text or Text("no events", style="dim"))

    def _show_output(self) -> None:
        box = self.query_one("#output", Static)
        task = self._selected_task()
        if task is None or task.action != "shell":
            box.add_class("-hidden")
            return
        lines = (task.output or "").rstrip("\n").splitlines()[-OUTPUT_LINES:]
        text = Text()
        text.append(f"Output of {task.name} (last {OUTPUT_LINES} lines)\n", style="bold")
        text.append("\n".join(lines) if lines else "no output yet", style="" if lines else "dim")
        box.update(text)
        box.remove_class("-hidden")

    def _selected_task(self) -> TaskView | None:
        tid = self.selected_task_id()
        if self.detail is None or tid is None:
            return None
        return next((t for t in self.detail.tasks if t.id == tid), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "tasks":
            self._show_output()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key is None:
            return
        if event.data_table.id == "children":
            self.bd.open_job(int(key))
        elif event.data_table.id == "tasks" and self.detail is not None:
            task = next((t for t in self.detail.tasks if t.id == int(key)), None)
            if task is not None and task.child_job_id:
                self.bd.open_job(task.child_job_id)
            elif task is not None:
                self.notify(
                    f"Task {task.name}: {label(task.status)}"
                    + (f" — {task_message(task)}" if task_message(task) else ""),
                    timeout=4,
                )
