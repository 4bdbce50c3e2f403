"""The job list: a virtual table on Textual's Line API.

It never holds more than a window of rows: ``render_line(y)`` draws from a page that
``Reader.list_jobs(offset, limit)`` returned for the visible rows plus a margin, and
scrolling past the page fetches another. With 100,000 jobs it opens as fast as with
ten. The selection is a job id, not a row position: after every refresh the job is
found again, wherever it moved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import WorkerCancelled, WorkerFailed

from engine.core.format import clock, duration, label, percent
from engine.core.views import JobView
from tui.data import Database, JobQuery, join, user_name
from tui.keys import scope_bindings
from tui.styles import status_style

MARGIN_MIN = 20  # rows fetched above and below the viewport, at least
MARK = "✓"  # a marked row (space), in the first column
STUCK = "STUCK"  # next to the status of a stuck job: a word, not only a colour


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    align: str = "left"


STATUS_COLUMN = Column("status", "Status", 0)
NAME_MIN = 20  # the name keeps this much before the extra columns keep theirs
STATUS_MIN, STATUS_MAX = 9, 21  # "Executing" .. "Executing · no engine"


def layout(width: int, id_width: int = 6, status_width: int = 15) -> list[Column]:
    """Columns for a given width, by priority: the status as wide as the widest shown
    (``status_width``), then the name at least NAME_MIN, then the extras, dropped one by
    one (by, started, servers, duration, progress) until the name has its room; what is
    left over goes to the name."""
    wide = width >= 110
    status_width = max(STATUS_MIN, min(STATUS_MAX, status_width))
    cols = [
        Column("mark", MARK, 1),
        Column("id", "ID", max(2, id_width), "right"),
        Column("name", "Name", 0),
        Column("status", "Status", status_width),
        Column("progress", "Tasks", 12 if wide else 5),
        Column("servers", "Server", 17 if wide else 8),
        Column("started", "Started", 16 if wide else 8),
        Column("duration", "Duration", 8, "right"),
        Column("by", "By", 14 if wide else 8),
    ]
    for drop in ("by", "started", "servers", "duration", "progress"):
        fixed = sum(c.width for c in cols if c.key != "name") + len(cols)  # 1 gap each
        if width - 1 - fixed >= NAME_MIN:  # 1 for the cursor marker
            break
        cols = [c for c in cols if c.key != drop]
    fixed = sum(c.width for c in cols if c.key != "name") + len(cols)
    name_w = max(4, width - 1 - fixed)
    return [Column(c.key, c.title, name_w, c.align) if c.key == "name" else c for c in cols]


def fit(text: str, width: int, align: str = "left") -> str:
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else "…"
    if align == "right":
        return " " * (width - cell_len(text)) + text
    return set_cell_size(text, width)


NO_ENGINE = "· no engine"


def status_words(job: JobView, no_engine: bool) -> str:
    """ "Executing · no engine": an Executing job with nothing running and no engine
    serving the database waits for one (its tasks went back to Ready when it stopped)."""
    if no_engine and job.status == "executing" and not job.tasks_running:
        return f"{label(job.status)} {NO_ENGINE}"
    return label(job.status)


def progress_cell(job: JobView, width: int) -> str:
    if not job.tasks_total:
        return "-"
    text = f"{job.tasks_done}/{job.tasks_total}"
    room = width - len(text) - 1
    if room >= 4:
        bar_w = min(5, room)
        pct = percent(job.tasks_done, job.tasks_total) or 0.0
        filled = round(pct * bar_w)
        text = f"{text} {'█' * filled}{'░' * (bar_w - filled)}"
    return text


def started_cell(at: float | None, now: float, width: int) -> str:
    text = clock(at, now)
    if len(text) > width and at is not None:
        import time

        text = time.strftime("%b %d", time.localtime(at))
    return text


class JobTable(ScrollView, can_focus=True):
    """A window onto the job list; the cursor is a job id."""

    COMPONENT_CLASSES = {
        "jobtable--header",
        "jobtable--cursor",
        "jobtable--placeholder",
        "jobtable--empty",
    }

    BINDINGS = scope_bindings("table")

    class Loaded(Message):
        """A page arrived: the list has ``total`` jobs."""

        def __init__(self, total: int) -> None:
            super().__init__()
            self.total = total

    class Opened(Message):
        """The operator clicked a row twice."""

        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    # The position of the cursor, the query shown and how many jobs it matches: a change
    # repaints (reactive); a new query starts again at the top (watch_query_spec).
    cursor: reactive[int] = reactive(0)
    total: reactive[int] = reactive(0)
    query_spec: reactive[JobQuery] = reactive(JobQuery, init=False)
    selected_id: reactive[int | None] = reactive(None)  # the cursor is drawn on this job

    def __init__(
        self, data: Database, clock: Callable[[], float], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.data = data
        self.clock = clock
        self.loaded = False
        self._cache_start = 0
        self._cache: list[JobView] = []
        self._id_width = 2  # grows with the largest id seen, never shrinks (no jitter)
        # Marked jobs, by id (never by row: they survive a refresh, a sort, a filter).
        self.marks: set[int] = set()

    # -- data ---------------------------------------------------------------------------
    @property
    def visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def row_at(self, index: int) -> JobView | None:
        i = index - self._cache_start
        if 0 <= i < len(self._cache):
            return self._cache[i]
        return None

    def watch_query_spec(self, query: JobQuery) -> None:
        """A new filter or order: start again at the top. The fetch started here cancels
        one still reading for the old query (exclusive), so its page is never shown."""
        self.cursor = 0
        self.selected_id = None
        self._cache = []
        self._cache_start = 0
        self.set_scroll(None, 0)
        self.fetch()

    def watch_total(self, total: int) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, total + 1)

    async def reload(self) -> None:
        """Read the window again (after a change in the database), and wait for it. A
        fetch cancelled by a newer one (a new query, a scroll) is not an error: the newer
        one reads what is wanted now."""
        try:
            await self.fetch().wait()
        except WorkerCancelled:
            pass
        except WorkerFailed as exc:
            raise exc.error from None  # the screen says it, as any failed refresh

    @work(exclusive=True, group="jobtable-fetch", exit_on_error=False)
    async def fetch(self) -> None:
        """Read the page around the viewport. Exclusive: a newer fetch cancels this one,
        which then writes nothing (cancellation lands on an await, before any write)."""
        query = self.query_spec
        for _ in range(3):  # a moved selection can need one more page
            h = self.visible_rows
            margin = max(MARGIN_MIN, 2 * h)  # two pages each way: see _want_window
            top = int(self.scroll_y)
            start = max(0, top - margin)
            page = await self.data.list_jobs(start, h + 2 * margin, query)
            self._cache_start, self._cache = start, page.rows
            self.total = page.total
            if page.rows:
                widest = len(str(max(r.id for r in page.rows)))
                self._id_width = max(self._id_width, widest)
            if not await self._refind(start, len(page.rows), query):
                break
        self.loaded = True
        self.refresh()
        self.post_message(self.Loaded(self.total))

    async def _refind(self, start: int, count: int, query: JobQuery) -> bool:
        """Put the cursor back on the selected job; True if another page is needed."""
        self.cursor = max(0, min(self.cursor, self.total - 1))
        if self.selected_id is None:
            row = self.row_at(self.cursor)
            self.selected_id = row.id if row else None
            return False
        for i, row in enumerate(self._cache):
            if row.id == self.selected_id:
                moved = start + i != self.cursor
                self.cursor = start + i
                if moved:
                    return self._scroll_to_cursor()
                return False
        if not start <= self.cursor < start + max(count, 1):
            return False  # the operator scrolled away from the cursor: leave it be
        pos = None
        if self.total > count or start > 0:
            selected = self.selected_id
            pos = await self.data.position(selected, query)
            if selected != self.selected_id:
                return False  # moved while we looked: leave the cursor to the newer state
        if pos is None:  # the job left the list (filtered out): select what is there now
            row = self.row_at(self.cursor)
            self.selected_id = row.id if row else None
            return False
        self.cursor = pos
        self._scroll_to_cursor()
        return True

    def _want_window(self) -> None:
        """Fetch if the viewport is outside the cached page (a newer fetch wins), or,
        ahead of time, if one more page up or down would be: the next page is read while
        this one is shown, so a page key finds its rows loaded."""
        if not self.loaded:
            return
        top = int(self.scroll_y)
        h = self.visible_rows
        have_end = self._cache_start + len(self._cache)
        if top < self._cache_start or min(self.total, top + h) > have_end:
            self.fetch()  # rows on screen are missing: now
        elif max(0, top - h) < self._cache_start or min(self.total, top + 2 * h) > have_end:
            if not self._fetching():  # the next page: one read at a time is enough
                self.fetch()

    def _fetching(self) -> bool:
        return any(w.group == "jobtable-fetch" and not w.is_finished for w in self.workers)

    # -- cursor -------------------------------------------------------------------------
    def _scroll_to_cursor(self) -> bool:
        """Scroll so the cursor is visible; True if the scroll position changed."""
        top = int(self.scroll_y)
        h = self.visible_rows
        new = top
        if self.cursor < top:
            new = self.cursor
        elif self.cursor >= top + h:
            new = self.cursor - h + 1
        if new != top:
            self.set_scroll(None, max(0, min(new, max(0, self.total + 1 - h - 1))))
            return True
        return False

    def move_cursor(self, index: int) -> None:
        if self.total == 0:
            return
        index = max(0, min(index, self.total - 1))
        row = self.row_at(index)
        self.selected_id = row.id if row else None
        self.cursor = index  # reactive: repaints
        self._scroll_to_cursor()
        self._want_window()

    # -- marks ----------------------------------------------------------------------------
    def toggle_mark(self, job_id: int) -> bool:
        """Mark or unmark a job; True if it is marked now."""
        if job_id in self.marks:
            self.marks.discard(job_id)
        else:
            self.marks.add(job_id)
        self.refresh()
        return job_id in self.marks

    def set_marks(self, job_ids: set[int]) -> None:
        self.marks = set(job_ids)
        self.refresh()

    def select_id(self, job_id: int) -> None:
        """Select a job by id (it is found on the next reload)."""
        self.selected_id = job_id

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - self.visible_rows)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + self.visible_rows)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(self.total - 1)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._want_window()

    def on_resize(self, event: events.Resize) -> None:
        self.watch_total(self.total)
        self._want_window()

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = int(self.scroll_y) + event.y - 1
        if 0 <= index < self.total:
            self.move_cursor(index)
            if event.chain >= 2 and self.selected_id is not None:
                self.post_message(self.Opened(self.selected_id))

    # -- drawing ------------------------------------------------------------------------
    def _status_width(self, no_engine: bool) -> int:
        """The widest status the rows read now hold: no padding for words not shown."""
        return max(
            (len(self._cell(r, STATUS_COLUMN, 0.0, no_engine=no_engine)[0]) for r in self._cache),
            default=STATUS_MIN,
        )

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        no_engine = getattr(self.app, "engines_alive", None) is False
        cols = layout(width, self._id_width, self._status_width(no_engine))
        if y == 0:
            style = base + self.get_component_rich_style("jobtable--header")
            text = " " + " ".join(fit(c.title, c.width, c.align) for c in cols)
            return Strip([Segment(fit(text, width), style)], width)
        index = int(self.scroll_y) + y - 1
        if index >= self.total:
            if self.total == 0 and y == 1 and self.loaded:
                style = base + self.get_component_rich_style("jobtable--empty")
                return Strip([Segment(fit("  no jobs match", width), style)], width)
            return Strip.blank(width, base)
        row = self.row_at(index)
        if row is None:
            style = base + self.get_component_rich_style("jobtable--placeholder")
            return Strip([Segment(fit("  …", width), style)], width)
        on_cursor = index == self.cursor and row.id == self.selected_id
        row_style = base + self.get_component_rich_style("jobtable--cursor") if on_cursor else base
        segments = [Segment("▶" if on_cursor else " ", row_style)]
        now = self.clock()
        for c in cols:
            text, style = self._cell(row, c, now, row.id in self.marks, no_engine)
            cell_style = row_style if on_cursor or style is None else row_style + style
            segments.append(Segment(fit(text, c.width, c.align), cell_style))
            segments.append(Segment(" ", row_style))
        return Strip(segments).adjust_cell_length(width, row_style)

    @staticmethod
    def _cell(
        row: JobView, col: Column, now: float, marked: bool = False, no_engine: bool = False
    ) -> tuple[str, Style | None]:
        k = col.key
        if k == "mark":
            return (MARK if marked else ""), None
        if k == "id":
            return str(row.id), None
        if k == "name":
            return ("[sys] " if row.system else "") + row.name, None
        if k == "status":
            if row.stuck_for is not None:
                return f"{label(row.status)} {STUCK}", status_style(row.status) + Style(bold=True)
            return status_words(row, no_engine), status_style(row.status)
        if k == "progress":
            return progress_cell(row, col.width), None
        if k == "servers":
            return join(row.servers, col.width), None
        if k == "started":
            return started_cell(row.started_at, now, col.width), None
        if k == "duration":
            return duration(row.duration(now)), None
        if k == "by":
            return user_name(row.submitted_by), None
        return "", None
