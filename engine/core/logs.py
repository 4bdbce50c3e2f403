"""A run's log as its server process keeps it: lines cut into chunks, bounded in size.

Every line a task writes (a command's stdout and stderr, ``ctx.log``) goes through a
``LogBuffer`` in the server process, which cuts the bytes into chunks of whole lines
(at most ``CHUNK_BYTES``: each travels as one small message, ``engine.runtime.wire``) and
keeps the log within ``log_max_bytes``: the first half as it came, then the last half
in a ring. Once the ring overflows, what falls out of it is dropped and counted; the
supervisor writes a ``cut`` chunk saying how much, between the first and the last
parts. A runaway task thus costs the database at most ``log_max_bytes`` per attempt
kept, and ``LIVE_TAIL_BYTES`` a second of writes while it runs: chunks that fall out
of the ring before they are sent are never sent (nor decoded) at all.

Work per byte is C (``bytes.rfind``, ``count``): a task printing 200 MB costs its
server process a few thousand cuts, not a Python loop per line.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

CHUNK_BYTES = 8192
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MIN_MAX_BYTES = 1024
# A ring that drops (a runaway task) is sent once a ``TAIL_FLUSH_S``, and only its
# newest ``LIVE_TAIL_BYTES`` (what a follower reads): a runaway task costs the database
# that much a second, whatever it prints. The whole ring goes when the run ends.
TAIL_FLUSH_S = 1.0
LIVE_TAIL_BYTES = 256 * 1024
STREAMS = ("out", "err", "log", "cut")


@dataclass
class Chunk:
    seq: int
    stream: str
    lines: int
    raw: bytes  # as written, whole lines (the last one's newline included)
    sent: bool = False

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def text(self) -> str:
        """Decoded only when sent: most of a runaway task's chunks never are."""
        text = self.raw.decode("utf-8", "replace")
        return text[:-1] if text.endswith("\n") else text


def cut_text(dropped_bytes: int, dropped_lines: int) -> str:
    """The line that stands where the middle of a log was dropped."""
    return (
        f"[... {dropped_lines:,} lines ({dropped_bytes:,} bytes) dropped here: "
        "log_max_bytes keeps the first and last parts ...]"
    )


def _char_boundary(buf: bytearray, cut: int, start: int = 0) -> int:
    """``cut`` moved back to the start of a UTF-8 character (never to ``start``)."""
    at = cut
    while at > start and at < len(buf) and (buf[at] & 0xC0) == 0x80:
        at -= 1
    return at if at > start else cut


class LogBuffer:
    """One attempt's log, cut into chunks; ``take()`` hands over what is ready to send.
    Thread-safe: a sync task feeds it from its own thread while the server takes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, clock: Any = time.monotonic):
        max_bytes = max(MIN_MAX_BYTES, int(max_bytes))
        self.head_budget = max_bytes // 2
        self.tail_budget = max_bytes - self.head_budget
        # Several chunks per half even for a small limit: the ring drops whole chunks.
        self.chunk_bytes = max(64, min(CHUNK_BYTES, max_bytes // 8))
        self._clock = clock
        self._pending: dict[str, bytearray] = {}
        self._ready: list[Chunk] = []  # head chunks not yet taken
        self._seq = 0
        self._head_bytes = 0
        self.cut_seq: int | None = None  # the marker's place, once the head is full
        self._ring: deque[Chunk] = deque()
        self._ring_bytes = 0
        self.dropped_bytes = 0
        self.dropped_lines = 0
        self._cut_sent = (0, 0)
        self._last_ring_send = clock()
        self._lock = threading.Lock()

    # -- input --------------------------------------------------------------------
    def feed(self, stream: str, data: bytes) -> None:
        """Bytes of ``stream``; full chunks are cut at once, a partial line waits."""
        with self._lock:
            self._feed(stream, data)

    def _feed(self, stream: str, data: bytes) -> None:
        for other, waiting in self._pending.items():
            if other != stream and waiting:
                # Another stream's whole lines go first: the log keeps the order of lines.
                self._drain(other, waiting, "lines")
        buf = self._pending.setdefault(stream, bytearray())
        buf += data
        if self.cut_seq is not None and len(buf) > 2 * self.tail_budget + self.chunk_bytes:
            self._skip(buf)
        if len(buf) > self.chunk_bytes:
            self._drain(stream, buf, "full")

    def _skip(self, buf: bytearray) -> None:
        """Past the head, a write longer than the whole tail: only its last part can be
        kept, so the rest is counted as dropped, never cut into chunks (a task printing
        in big writes, or a small limit, costs a few C calls a write, not a chunk each
        few hundred bytes). The ring goes too: everything in it is older."""
        keep_from = len(buf) - self.tail_budget
        newline = buf.find(b"\n", keep_from)
        if 0 <= newline < len(buf) - 1:
            keep_from = newline + 1  # from a line's start
        for old in self._ring:
            self.dropped_bytes += old.size
            self.dropped_lines += old.lines
        self._ring.clear()
        self._ring_bytes = 0
        self.dropped_bytes += keep_from
        self.dropped_lines += buf.count(b"\n", 0, keep_from)
        del buf[:keep_from]

    def line(self, stream: str, text: str) -> None:
        """One whole line (``ctx.log``)."""
        self.feed(stream, text.encode("utf-8", "replace") + b"\n")

    def _limit(self) -> int:
        if self.cut_seq is None:
            return min(self.chunk_bytes, self.head_budget - self._head_bytes)
        return self.chunk_bytes

    def _end_head(self) -> None:
        self._seq += 1
        self.cut_seq = self._seq

    def _drain(self, stream: str, buf: bytearray, mode: str) -> None:
        """Cut ``buf`` into chunks. ``mode``: ``full`` only chunks of a full size,
        ``lines`` up to the last newline, ``all`` everything (the stream has ended).
        The bytes cut are removed from ``buf`` once, at the end."""
        start, end = 0, len(buf)
        while start < end:
            limit = self._limit()
            if limit <= 0:
                self._end_head()
                continue
            if end - start <= limit:
                if mode == "full":
                    break
                if mode == "all":
                    cut = end
                else:
                    newline = buf.rfind(b"\n", start, end)
                    if newline < 0:
                        break
                    cut = newline + 1
            else:
                newline = buf.rfind(b"\n", start, start + limit)
                if newline >= 0:
                    cut = newline + 1
                elif self.cut_seq is None and limit < self.chunk_bytes:
                    self._end_head()  # a line longer than what is left of the head
                    continue
                else:
                    cut = _char_boundary(buf, start + limit, start)  # a very long line
            self._add(stream, bytes(buf[start:cut]))
            start = cut
        if start:
            del buf[:start]

    def _add(self, stream: str, piece: bytes) -> None:
        self._seq += 1
        lines = piece.count(b"\n") + (0 if piece.endswith(b"\n") else 1)
        chunk = Chunk(self._seq, stream, lines, piece)
        if self.cut_seq is None:
            self._head_bytes += chunk.size
            self._ready.append(chunk)
            return
        self._ring.append(chunk)
        self._ring_bytes += chunk.size
        while self._ring_bytes > self.tail_budget and len(self._ring) > 1:
            old = self._ring.popleft()
            self._ring_bytes -= old.size
            self.dropped_bytes += old.size
            self.dropped_lines += old.lines

    # -- output -------------------------------------------------------------------
    def take(self, *, final: bool = False) -> tuple[list[Chunk], tuple[int, int, int, int] | None]:
        """The chunks to send now, and the cut to write after them: (its seq, the first
        kept seq after it, bytes dropped, lines dropped), or None when unchanged.

        Whole lines waiting are cut first (``final``: the partial ones too). A ring
        that drops is sent at most every ``TAIL_FLUSH_S``, its newest
        ``LIVE_TAIL_BYTES`` only; ``final``: all of it."""
        with self._lock:
            return self._take(final)

    def _take(self, final: bool) -> tuple[list[Chunk], tuple[int, int, int, int] | None]:
        for stream, buf in self._pending.items():
            self._drain(stream, buf, "all" if final else "lines")
        out, self._ready = self._ready, []
        cut = None
        if self._ring:
            now = self._clock()
            if final or not self.dropped_bytes:
                send = [c for c in self._ring if not c.sent]
            elif now - self._last_ring_send >= TAIL_FLUSH_S:
                send = self._newest(LIVE_TAIL_BYTES)
            else:
                return out, None
            self._last_ring_send = now
            for c in send:
                c.sent = True
            out.extend(send)
            dropped = (self.dropped_bytes, self.dropped_lines)
            if self.dropped_bytes and dropped != self._cut_sent:
                self._cut_sent = dropped
                assert self.cut_seq is not None
                cut = (self.cut_seq, self._ring[0].seq, *dropped)
        return out, cut

    def _newest(self, budget: int) -> list[Chunk]:
        """The ring's unsent chunks among its newest ``budget`` bytes, in order."""
        picked: list[Chunk] = []
        for c in reversed(self._ring):
            if budget <= 0:
                break
            budget -= c.size
            if not c.sent:
                picked.append(c)
        picked.reverse()
        return picked


def log_messages(
    task_id: int, chunks: list[Chunk], cut: tuple[int, int, int, int] | None
) -> list[dict[str, Any]]:
    """The ``log`` messages for a server to send: one chunk each, so that no message
    grows past a few KiB; the cut rides on the last."""
    msgs: list[dict[str, Any]] = [
        {"op": "log", "task": task_id, "chunk": [c.seq, c.stream, c.lines, c.text]} for c in chunks
    ]
    if cut is not None:
        if msgs:
            msgs[-1]["cut"] = list(cut)
        else:
            msgs.append({"op": "log", "task": task_id, "cut": list(cut)})
    return msgs
