"""The first screen: every job, a window at a time, with counts by status."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Header, Input, Static

from engine.core.format import label
from engine.core.statuses import LABELS
from tui.data import JobQuery
from tui.keys import bindings
from tui.screens.base import JOB_BINDINGS, JobKeysMixin, LiveScreen
from tui.styles import status_style
from tui.widgets.footer import KeyFooter
from tui.widgets.job_table import JobTable

COUNT_ORDER = ("executing", "canceling", "waiting", "withhold", "error", "canceled", "ended")


def counts_text(counts: dict[str, int], shown: int, description: str, marked: int = 0) -> Text:
    text = Text()
    total = sum(counts.values())
    text.append(f"{total:,} job{'s' if total != 1 else ''}", style="bold")
    for status in COUNT_ORDER:
        n = counts.get(status, 0)
        if n:
            text.append("  ")
            text.append(f"{label(status)} {n:,}", style=status_style(status))
    for status, n in counts.items():  # anything not in the usual order
        if status not in COUNT_ORDER and n:
            text.append(f"  {LABELS.get(status, status)} {n:,}")
    text.append("\n")
    text.append(f"showing {shown:,} · {description}", style="dim")
    if marked:
        text.append(f" · {marked:,} marked: c, a, A act on them", style="bold")
    return text


class JobListScreen(JobKeysMixin, LiveScreen):
    BINDINGS = [
        *bindings("open"),
        *JOB_BINDINGS,
        *bindings("filter", "status-filter", "sort", "reverse", "clear", "mark", "mark-all"),
    ]
    # Job keys that act on the marked jobs when there are marks (tui.keys ids -> bulk kind).
    BULK_KEYS = {"cancel-job": "cancel", "abort-job": "abort", "enhanced-abort": "enhanced_abort"}

    def __init__(self) -> None:
        super().__init__(id="jobs-screen")
        self._counts: dict[str, int] = {}
        self._first_loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="counts")
        box = Input(
            placeholder="Filter: id, name, user or status — enter applies, escape clears",
            id="filter",
        )
        box.cursor_blink = self.bd.live  # a still cursor keeps screenshots stable
        yield box
        yield JobTable(self.bd.data, self.bd.clock, id="jobs")
        yield KeyFooter()

    @property
    def table(self) -> JobTable:
        return self.query_one(JobTable)

    def on_mount(self) -> None:  # LiveScreen.on_mount runs too (Textual walks the MRO)
        self.table.focus()

    async def load(self) -> None:
        await self.table.reload()
        self._counts = await self.bd.data.reader.status_counts()
        self._show_counts()

    async def reload_now(self) -> None:
        await super().reload_now()
        if not self._first_loaded:  # painted or failed: either way, the rest may start
            self._first_loaded = True
            self.call_after_refresh(self.bd.after_first_list)

    async def tick(self) -> None:
        self.table.refresh()  # durations move; nothing to read

    def _show_counts(self) -> None:
        table = self.table
        self.query_one("#counts", Static).update(
            counts_text(self._counts, table.total, table.query_spec.describe(), len(table.marks))
        )

    def on_job_table_loaded(self, event: JobTable.Loaded) -> None:
        self._show_counts()

    def on_job_table_opened(self, event: JobTable.Opened) -> None:
        self.bd.open_job(event.job_id)

    # -- the selected job -------------------------------------------------------------
    def selected_job_id(self) -> int | None:
        return self.table.selected_id

    # -- marks ------------------------------------------------------------------------
    @property
    def marks(self) -> set[int]:
        return self.table.marks

    def action_mark(self) -> None:
        if (job_id := self._selected_or_say()) is None:
            return
        self.table.toggle_mark(job_id)
        self._show_counts()
        self.table.move_cursor(self.table.cursor + 1)  # on to the next row, as file managers do

    def action_mark_all(self) -> None:
        """Mark every job the filter shows (read by id, in one query: not the painted
        rows); when they are all marked already, clear the marks."""
        self._mark_all()

    @work(exclusive=True, group="mark-all")
    async def _mark_all(self) -> None:
        ids = set(await self.bd.data.job_ids(self.table.query_spec))
        if ids and ids <= self.marks:
            self.table.set_marks(self.marks - ids)
            self.notify(f"Unmarked {len(ids):,} jobs", timeout=3)
        else:
            self.table.set_marks(self.marks | ids)
            self.notify(f"Marked {len(ids):,} jobs ({len(self.marks):,} in all)", timeout=3)
        self._show_counts()

    def clear_marks(self) -> None:
        self.table.set_marks(set())
        self._show_counts()

    def action_job(self, key_id: str) -> None:
        """With marks, cancel / abort / enhanced abort act on the marked jobs."""
        kind = self.BULK_KEYS.get(key_id)
        if kind is not None and self.marks:
            if not self.bd.refuse_if_busy():
                self.bd.flow_bulk(kind, sorted(self.marks))
            return
        super().action_job(key_id)

    def action_open(self) -> None:
        if (job_id := self._selected_or_say()) is not None:  # reading is never blocked
            self.bd.open_job(job_id)

    # -- filter and order -------------------------------------------------------------
    def _set_query(self, query: JobQuery) -> None:
        self.table.query_spec = query  # the table starts again at the top, and reads
        self._show_counts()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-visible")
        box.value = self.table.query_spec.text
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("-visible")
        self.table.focus()
        self._set_query(replace(self.table.query_spec, text=event.value.strip()))

    def action_status_filter(self) -> None:
        self._set_query(self.table.query_spec.next_status())
        self.notify(f"Showing {self.table.query_spec.status_label} jobs", timeout=2)

    def action_sort(self) -> None:
        self._set_query(self.table.query_spec.next_sort())

    def action_reverse(self) -> None:
        q = self.table.query_spec
        self._set_query(replace(q, descending=not q.descending))

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        q = self.table.query_spec
        if box.has_class("-visible"):
            box.value = ""
            box.remove_class("-visible")
            self.table.focus()
            if q.text:
                self._set_query(replace(q, text=""))
            return
        if q.text or q.status_filter:
            self._set_query(replace(q, text="", status_filter=0))
