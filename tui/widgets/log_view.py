"""A log of any length on screen, read on demand: Textual's Line API over the chunks of
``engine.store.log_store``.

``LogSource`` holds the index of a log (every chunk's id, stream and line count, not
its text: a few hundred rows for a million lines) and reads the text of the chunks
the screen shows, keeping the last ``CACHE_CHUNKS`` of them. ``LogView`` draws only the
rows in view, from ``scroll_y`` (a line number): opening a million-line log costs one
index read and the chunks of one screen. Wrapped, a row of the view is a piece of a
line, laid out from the top line down (and, for the bottom, from the last line up).

Every line is made safe for the terminal: ANSI colour becomes colour (``Text.from_ansi``)
and every other control character is shown escaped (``engine.core.safe_text``).
"""

from __future__ import annotations

import bisect
import re
from collections import OrderedDict
from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.core.safe_text import safe_line
from engine.flows import logs as log_reads
from engine.flows.logs import ChunkRef
from engine.store import log_store

CACHE_CHUNKS = 64
STREAM_STYLES = {"err": "red", "cut": "bold reverse"}


# ANSI colour and style (SGR): the one escape sequence a log line may keep, as colour.
_SGR = re.compile(r"(\x1b\[[0-9;]*m)")


def line_text(text: str) -> Text:
    """One line of a log for the screen: ANSI colour as colour, every other control
    character (another escape sequence, a bell) shown escaped, never dropped."""
    if "\x1b[" not in text:
        return Text(safe_line(text))
    parts = _SGR.split(text)
    return Text.from_ansi("".join(p if n % 2 else safe_line(p) for n, p in enumerate(parts)))


class LogSource:
    """One log: a task's attempt, or every task of a job (``task_id`` None), its lines
    prefixed with the task's name."""

    def __init__(self, store: Any, job_id: int, task_id: int | None, attempt: int | None) -> None:
        self.store = store
        self.job_id = job_id
        self.task_id = task_id
        self.attempt = attempt
        self.refs: list[ChunkRef] = []
        self.starts: list[int] = []  # each chunk's first line
        self.total = 0
        self.names: dict[int, tuple[str, str, int]] = {}
        self.attempts: list[int] = []
        self._cache: OrderedDict[int, list[str]] = OrderedDict()

    @property
    def running(self) -> bool:
        """Whether more lines may come (the task, or a task of the job, not ended)."""
        ended = ("didnt_run", "canceled", "aborted", "ended", "error")
        if self.task_id is not None:
            name = self.names.get(self.task_id)
            return name is not None and name[1] not in ended and name[2] == self.attempt
        return any(status not in ended for _n, status, _a in self.names.values())

    def reload(self) -> bool:
        """Read the index again; True if it changed."""
        with self.store.reading() as sql:
            self.names = log_reads.task_refs(sql, self.job_id)
            if self.task_id is None:
                refs = log_reads.job_index(sql, self.job_id)
            else:
                self.attempts = log_reads.attempts(sql, self.task_id)
                current = self.names.get(self.task_id, ("", "", 1))[2]
                if current not in self.attempts:
                    self.attempts.append(current)
                if self.attempt is None:
                    self.attempt = self.attempts[-1]
                refs = log_reads.run_index(sql, self.task_id, self.attempt)
        if refs == self.refs:
            return False
        self.refs = refs
        self.starts = []
        total = 0
        for r in refs:
            self.starts.append(total)
            total += r.lines
        self.total = total
        kept = {r.id for r in refs}
        for gone in [i for i in self._cache if i not in kept]:
            del self._cache[gone]
        return True

    def chunk_of(self, line: int) -> int:
        return max(0, bisect.bisect_right(self.starts, line) - 1)

    def lines_of(self, index: int) -> list[str]:
        ref = self.refs[index]
        got = self._cache.get(ref.id)
        if got is None:
            # The chunks around it too: scrolling reads a few rows, not one per chunk.
            wanted = [r.id for r in self.refs[index : index + 4] if r.id not in self._cache]
            with self.store.reading() as sql:
                texts = log_reads.texts(sql, wanted)
            for cid, text in texts.items():
                self._cache[cid] = text.split("\n")
            while len(self._cache) > CACHE_CHUNKS:
                self._cache.popitem(last=False)
            got = self._cache.get(ref.id, [""] * ref.lines)
        self._cache.move_to_end(ref.id)
        return got

    def line(self, n: int) -> tuple[ChunkRef, str]:
        index = self.chunk_of(n)
        lines = self.lines_of(index)
        at = n - self.starts[index]
        return self.refs[index], lines[at] if at < len(lines) else ""

    def prefix(self, ref: ChunkRef) -> str:
        if self.task_id is not None:
            return ""
        name = self.names.get(ref.task_id, (str(ref.task_id),))[0]
        return f"{name}{'#' + str(ref.attempt) if ref.attempt > 1 else ''} | "

    def find(self, start: int, needle: str, *, backwards: bool = False) -> int | None:
        """The first line from ``start`` (forward, or backward) holding ``needle`` (any
        case): the database finds the chunk, this finds the line in it."""
        if not self.refs or not needle:
            return None
        low = needle.lower()
        index = self.chunk_of(min(max(start, 0), self.total - 1))
        step = -1 if backwards else 1
        while 0 <= index < len(self.refs):
            with self.store.read() as conn:
                found = log_store.find(conn, self.refs, index, needle, backwards=backwards)
            if found is None:
                return None
            lines = self.lines_of(found)
            base = self.starts[found]
            order = range(len(lines) - 1, -1, -1) if backwards else range(len(lines))
            for i in order:
                n = base + i
                if (n <= start if backwards else n >= start) and low in lines[i].lower():
                    return n
            index = found + step
            start = self.starts[index] + self.refs[index].lines - 1 if backwards else -1
            if backwards and index < 0:
                return None
        return None


class LogView(ScrollView, can_focus=True):
    """The lines of a ``LogSource``, only those in view drawn."""

    DEFAULT_CSS = """
    LogView { height: 1fr; }
    """

    def __init__(self, source: LogSource, **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        self.wrap = False
        self.follow = False  # kept at the end, whatever the size becomes
        self.needle = ""
        self.match: int | None = None
        self._widest = 0
        self._rows: tuple[tuple[int, int, int], list[Strip]] | None = None

    # -- size and position ------------------------------------------------------------
    def update_size(self) -> None:
        width = max(self.scrollable_content_region.width, 1)
        wide = width if self.wrap else max(width, self._widest)
        self.virtual_size = Size(wide, self.source.total)
        self._rows = None
        self.refresh()
        if self.follow:
            # Once laid out: a scrollbar that appears takes a row from the view.
            self.call_after_refresh(self.go_bottom)

    def set_wrap(self, wrap: bool) -> None:
        self.wrap = wrap
        self.scroll_x = 0
        self.update_size()

    def go_top(self) -> None:
        self.scroll_to(y=0, animate=False, immediate=True)

    def go_bottom(self) -> None:
        self.scroll_to(y=self.bottom_line(), animate=False, immediate=True)

    def go_line(self, n: int) -> None:
        """Put line ``n`` in view, a third of the way down."""
        top = max(0, n - max(1, self.scrollable_content_region.height // 3))
        self.scroll_to(y=min(top, self.bottom_line()), animate=False, immediate=True)

    def bottom_line(self) -> int:
        """The top line that shows the log's end."""
        height = max(self.scrollable_content_region.height, 1)
        if not self.wrap:
            return max(0, self.source.total - height)
        rows, n = 0, self.source.total
        while n > 0:
            rows += len(self._wrapped(n - 1))
            if rows > height:
                break
            n -= 1
        return n

    # -- drawing ------------------------------------------------------------------------
    def styled(self, n: int) -> Text:
        ref, text = self.source.line(n)
        if ref.stream == "cut":
            body = Text(text, style=STREAM_STYLES["cut"])
        else:
            body = line_text(text)
            if ref.stream == "err":  # stderr reads apart from stdout
                body.stylize(STREAM_STYLES["err"])
        prefix = self.source.prefix(ref)
        if prefix:
            body = Text(safe_line(prefix), style="dim") + body
        if self.needle:
            body.highlight_words([self.needle], "reverse", case_sensitive=False)
            if n == self.match:
                body.stylize("bold")
        self._widest = max(self._widest, body.cell_len)
        return body

    def _wrapped(self, n: int) -> list[Strip]:
        width = max(self.scrollable_content_region.width, 1)
        lines = self.styled(n).wrap(self.app.console, width, overflow="fold") or [Text("")]
        return [Strip(list(line.render(self.app.console))) for line in lines]

    def render_line(self, y: int) -> Strip:
        width = max(self.scrollable_content_region.width, 1)
        top = int(self.scroll_y)
        base = self.rich_style
        if self.wrap:
            key = (top, width, self.scrollable_content_region.height)
            if self._rows is None or self._rows[0] != key:
                rows: list[Strip] = []
                n = top
                while len(rows) < self.scrollable_content_region.height and n < self.source.total:
                    rows.extend(self._wrapped(n))
                    n += 1
                self._rows = (key, rows)
            rows = self._rows[1]
            strip = rows[y] if y < len(rows) else Strip.blank(width)
            return strip.crop_extend(0, width, base)
        n = top + y
        if n >= self.source.total:
            return Strip.blank(width, base)
        text = self.styled(n)
        segments = list(text.render(self.app.console))
        if self._widest > self.virtual_size.width:
            self.call_later(self.update_size)
        x = int(self.scroll_x)
        return Strip(segments).crop_extend(x, x + width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._rows = None

    def changed(self) -> None:
        """The source was read again: redraw what is in view."""
        self.update_size()
