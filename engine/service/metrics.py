"""Prometheus metrics of a serving engine (``batchdeck serve --metrics HOST:PORT``).

Read in the HTTP server's thread (never on the engine's loop), through the engine's own
Store (SQLite or PostgreSQL alike), at most once a second (``PAGE_EVERY_S``: scrapes in
between get the same page):

- ``batchdeck_jobs{status}``, ``batchdeck_tasks{status}``: how many now (gauges; the
  two GROUP BYs are read at most every ``COUNTS_EVERY_S``, so a scrape every 100 ms
  does not scan the task table ten times a second);
- ``batchdeck_tasks_ended_total{status}``: tasks that reached a final status since this
  engine started, by that status (counter, from the event rows past the last one seen);
- ``batchdeck_cancel_latency_seconds`` (a cancel request to the job Canceled) and
  ``batchdeck_abort_latency_seconds`` (an abort request to each task Aborted), from the
  same event rows (histograms);
- ``batchdeck_stuck_jobs``; per server ``batchdeck_server_slots``,
  ``batchdeck_server_slots_in_use``, ``batchdeck_server_lease_age_seconds``;
- ``batchdeck_tick_duration_seconds`` (histogram) and
  ``batchdeck_database_write_errors_total``, from ``Engine.write_hooks``;
- ``batchdeck_up`` (1 while a database write has succeeded within the lease) and
  ``batchdeck_build_info{version}``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import bindparam, func, select

from engine.core.statuses import TASK_TERMINAL, JobStatus, TaskStatus
from engine.service.options import version
from engine.service.pulse import Pulse
from engine.store.tables import event, job, task

# The ``_created`` series of each counter and histogram: a second series per metric that
# says when this process started, which ``batchdeck_build_info`` and ``up`` say already.
disable_created_metrics()

COUNTS_EVERY_S = 5.0
# The page is made at most this often; scrapes in between get the same bytes. A scrape
# every 100 ms then costs the engine's process an HTTP exchange (~0.3 ms), not the
# reads and the formatting (~1.5-2 ms, holding the GIL the engine's loop needs).
PAGE_EVERY_S = 1.0
# Event rows read per statement while catching up (a long pause between scrapes).
EVENT_BATCH = 5000
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

_JOB_COUNTS = select(job.c.status, func.count()).group_by(job.c.status)
_TASK_COUNTS = select(task.c.status, func.count()).group_by(task.c.status)
# The newest event written before the engine started (read from the newest back: few
# were written since).
_LAST_EVENT = (
    select(event.c.id).where(event.c.at < bindparam("since")).order_by(event.c.id.desc()).limit(1)
)
_FINAL = sorted(TASK_TERMINAL | {"canceled"})


# Status events past ``:last`` into a final status, with their job's request times.
# Built once: SQLAlchemy compiles it once and reuses that at every scrape.
_ENDED_SINCE = (
    select(
        event.c.id,
        event.c.task_id,
        event.c.to_status,
        event.c.at,
        job.c.canceled_at,
        job.c.aborted_at,
    )
    .select_from(event.join(job, job.c.id == event.c.job_id))
    .where(
        event.c.id > bindparam("last"),
        event.c.kind == "status",
        event.c.to_status.in_(_FINAL),
    )
    .order_by(event.c.id)
    .limit(EVENT_BATCH)
)


class EngineMetrics(Collector):
    """The collector for one engine; ``hook`` goes into ``Engine.write_hooks``."""

    def __init__(self, engine: Any, pulse: Pulse, *, lease_s: float) -> None:
        self.engine = engine
        self.pulse = pulse
        self.lease_s = lease_s
        self._lock = threading.Lock()  # scrapes may come on several threads at once
        self._counts: tuple[float, list[Metric]] = (0.0, [])
        self._last_event: int | None = None
        self._reader: Any = None  # an inline Reader, used under the lock
        self.tick = Histogram(
            "batchdeck_tick_duration_seconds",
            "Time of each engine tick's database write",
            buckets=TICK_BUCKETS,
            registry=None,
        )
        self.write_errors = Counter(
            "batchdeck_database_write_errors",
            "Engine database writes (ticks, heartbeats) that failed",
            registry=None,
        )
        self.ended = Counter(
            "batchdeck_tasks_ended",
            "Tasks that reached a final status since the engine started, by that status",
            ["status"],
            registry=None,
        )
        self.cancel_latency = Histogram(
            "batchdeck_cancel_latency_seconds",
            "From a job's cancel request to the job Canceled",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.abort_latency = Histogram(
            "batchdeck_abort_latency_seconds",
            "From a job's abort request to each of its tasks Aborted",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        for status in sorted(TASK_TERMINAL):
            self.ended.labels(status)  # every final status shows, at 0 until one ends

    def hook(self, kind: str, ok: bool, seconds: float) -> None:
        if not ok:
            self.write_errors.inc()
        elif kind == "tick":
            self.tick.observe(seconds)

    def start(self, since: float = 0.0) -> None:
        """Count the events written from ``since`` (when the engine started: a task it
        ended before the metrics were served counts too)."""
        with self.engine.store.read() as conn:
            self._last_event = conn.execute(_LAST_EVENT, {"since": since}).scalar() or 0

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "batchdeck_up", "1 while the engine serves and its database writes succeed"
        )
        up.add_metric([], 1.0 if self.pulse.fresh(self.lease_s) else 0.0)
        yield up
        info = InfoMetricFamily("batchdeck_build", "The batchdeck version serving")
        info.add_metric([], {"version": version()})
        yield info
        with self._lock:
            # A read that fails (the database gone) leaves out what it would have read;
            # the write-error counter and batchdeck_up say why.
            with contextlib.suppress(Exception):
                self._read_events()
            read: list[Metric] = []
            with contextlib.suppress(Exception):
                read = self._read_now()
            yield from read
            with contextlib.suppress(Exception):
                yield from self._counted()
        for metric in (self.tick, self.write_errors, self.ended):
            yield from metric.collect()
        yield from self.cancel_latency.collect()
        yield from self.abort_latency.collect()

    def _read_events(self) -> None:
        if self._last_event is None:
            self.start()
        while True:
            with self.engine.store.read() as conn:
                rows = conn.execute(_ENDED_SINCE, {"last": self._last_event}).all()
            for r in rows:
                if r.task_id is None:  # the job's own event
                    if r.to_status == "canceled" and r.canceled_at is not None:
                        self.cancel_latency.observe(max(0.0, r.at - r.canceled_at))
                    continue
                if r.to_status in TASK_TERMINAL:
                    self.ended.labels(r.to_status).inc()
                if r.to_status == "aborted" and r.aborted_at is not None:
                    self.abort_latency.observe(max(0.0, r.at - r.aborted_at))
            if rows:
                self._last_event = rows[-1].id
            if len(rows) < EVENT_BATCH:
                return

    def _read_now(self) -> list[Metric]:
        """Stuck jobs and servers, read at every scrape (small reads, on indexes)."""
        from engine.cli.main import _complete
        from engine.reader.reader import Reader

        now = time.time()
        if self._reader is None:
            self._reader = Reader(self.engine.db_path, inline=True)
        stuck = _complete(self._reader.stuck_ages(now))
        servers = _complete(self._reader.servers(now))
        out: list[Metric] = []
        g = GaugeMetricFamily(
            "batchdeck_stuck_jobs",
            "Jobs with a task Canceling or Aborting for longer than stuck_seconds",
        )
        g.add_metric([], float(len(stuck)))
        out.append(g)
        slots = GaugeMetricFamily("batchdeck_server_slots", "Task slots", labels=["server"])
        used = GaugeMetricFamily(
            "batchdeck_server_slots_in_use", "Slots running a task", labels=["server"]
        )
        age = GaugeMetricFamily(
            "batchdeck_server_lease_age_seconds",
            "Seconds since the server's lease was last renewed",
            labels=["server"],
        )
        for s in servers:
            slots.add_metric([s.name], float(s.slots))
            used.add_metric([s.name], float(s.in_use))
            lease_age = s.lease_age(now)
            if s.lease_owner and lease_age is not None:
                age.add_metric([s.name], lease_age)
        out += [slots, used, age]
        return out

    def close(self) -> None:
        from engine.cli.main import _complete

        with self._lock:
            if self._reader is not None:
                _complete(self._reader.close())
                self._reader = None

    def _counted(self) -> list[Metric]:
        """Jobs and tasks by status: two GROUP BYs, read at most every COUNTS_EVERY_S."""
        at, cached = self._counts
        if cached and time.monotonic() - at < COUNTS_EVERY_S:
            return cached
        jobs = GaugeMetricFamily("batchdeck_jobs", "Jobs by status", labels=["status"])
        tasks = GaugeMetricFamily("batchdeck_tasks", "Tasks by status", labels=["status"])
        with self.engine.store.read() as conn:
            # Every status shows, at 0 when no row has it: a series that comes and goes
            # breaks rate() and alerts.
            job_n = {str(s): 0 for s in JobStatus} | dict(conn.execute(_JOB_COUNTS).all())
            task_n = {str(s): 0 for s in TaskStatus} | dict(conn.execute(_TASK_COUNTS).all())
        for status, n in job_n.items():
            jobs.add_metric([status], float(n))
        for status, n in task_n.items():
            tasks.add_metric([status], float(n))
        self._counts = (time.monotonic(), [jobs, tasks])
        return [jobs, tasks]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if urlsplit(self.path).path not in ("/metrics", "/"):
            self.send_error(404, "only /metrics here")
            return
        body = self.server.page()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a scrape every few seconds is not news for the engine's log


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        # IPv4 or IPv6, as the host is written.
        self.address_family = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0][0]
        self.registry = registry
        self._page = (-PAGE_EVERY_S, b"")
        self._page_lock = threading.Lock()
        super().__init__(address, _Handler)

    def page(self) -> bytes:
        with self._page_lock:
            at, body = self._page
            if time.monotonic() - at >= PAGE_EVERY_S:
                body = generate_latest(self.registry)
                self._page = (time.monotonic(), body)
            return body


class MetricsServer:
    """``/metrics`` over HTTP on ``host:port``, in a thread of its own."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # Bound now: a port in use is refused before the engine takes any lease.
        self._server = _Server((host, port), self.registry)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="batchdeck-metrics", daemon=True
        )
        self._thread.start()
        bound = self._server.server_address
        self.port = bound[1]
        where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{where}:{self.port}/metrics"
        self._metrics: EngineMetrics | None = None

    def serve(
        self, engine: Any, pulse: Pulse, *, lease_s: float, since: float = 0.0
    ) -> EngineMetrics:
        metrics = EngineMetrics(engine, pulse, lease_s=lease_s)
        metrics.start(since)
        engine.write_hooks.append(metrics.hook)
        self.registry.register(metrics)
        self._metrics = metrics
        return metrics

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._metrics is not None:
            self._metrics.close()
