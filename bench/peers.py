"""batchdeck beside pgqueuer (PostgreSQL) and huey (SQLite), in one run. One figure a line.

    python bench/peers.py [--rounds 3] [--tasks 20000] [--tasks-4 5000] [--cancels 7]
                          [--jobs 10000] [--pg URL] [--only batchdeck]
                          [--pgqueuer-driver asyncpg|psycopg]

The peers come with the ``bench`` extra (``pip install -e '.[bench]'``), never with the
product. pgqueuer runs on asyncpg, the driver its own examples use (``--pgqueuer-driver
psycopg``: its PsycopgDriver, 2-5x slower here).

Each round measures every figure once, batchdeck first, then its peer (A, B, A, B …),
so both see the same machine; a figure is the median of its rounds (each round's value
goes to stderr), a ratio is batchdeck's median ÷ the peer's. Every figure gets a
fresh database: a SQLite file, or a new database on the PostgreSQL server, which is
this script's own ``pgserver`` (PostgreSQL 16) unless ``--pg URL`` names one.

No-op throughput, tasks/s (batchdeck: ``engine_throughput.throughput``, its submit
included, until the engine has the job Ended):
- pg_4_slots_*: ``--tasks-4`` tasks, one server of 4 slots; pgqueuer: one worker
  process, ``max_concurrent_tasks=4``, ``batch_size=2`` (it needs the cap to be twice
  the batch), from its bulk enqueue (one statement) until its queue table is empty;
- pg_uncapped_tasks_per_s_pgqueuer: the same tasks, one worker as pgqueuer comes (no
  ``max_concurrent_tasks``, ``batch_size=10``): it starts every job it dequeues, so it is
  not held to 4 at once; capped at 4, a full worker waits for its completions' flush
  (every ``batch_size`` of them or 0.1 s) and its next poll (0.1 s);
- pg_2x64_slots_*: ``--tasks`` tasks, two servers of 64 slots; pgqueuer: two worker
  processes of ``max_concurrent_tasks=64``, ``batch_size=10`` (its default);
- pg_2x64_slots_<tasks/10>_task_job_tasks_per_s_batchdeck: the same on a job a tenth the
  size, for ratio_pg_<tasks>_to_<tasks/10>_task_job_batchdeck (cost per task whatever the
  job's size);
- sqlite_4_slots_*: ``--tasks-4`` tasks; huey: ``SqliteHuey``, the tasks enqueued by
  its ``enqueue`` (a commit each: it has no bulk enqueue), then a consumer of 4 worker
  threads in this process, until the last task's ``complete`` signal: from the first
  enqueue (``tasks_per_s``, as the others count) and from the consumer's start
  (``run_only``). ``huey_default``: SqliteHuey as it comes (``fsync=None``: SQLite's
  default, synchronous=FULL in WAL); ``huey_normal``: synchronous=NORMAL, batchdeck's
  setting, a storage that sets the pragma (SqliteHuey's ``fsync`` offers FULL or OFF).
A running task sees a cancel made from another process (median of ``--cancels`` per
round, all rounds pooled), ms from the cancel call until the task itself tells this
process (a datagram; bench/peers_probe.py):
- batchdeck: a ``batchdeck serve`` process (4 slots) runs a ``python`` task that awaits
  ``ctx.wait_cancel()``; this process cancels the job (``engine.flows.base.cancel``, its
  commit included);
- pgqueuer: a worker process runs a job that sleeps inside its context's
  ``cancellation`` scope; this process calls ``Queries.mark_job_as_cancelled([id])``
  (its log row and its NOTIFY).
Cancel of ``--jobs`` pending one-task jobs, s:
- batchdeck: ``batchdeck cancel --all --yes``, the whole process (bench/bulk_cancel.py);
- pgqueuer: ``Queries.mark_job_as_cancelled(ids)`` of the queued jobs' ids, 500 a call
  (its NOTIFY carries the ids; PostgreSQL refuses a payload over 8,000 bytes), in this
  process, connection open (it deletes them from the queue and logs them canceled): the
  calls alone, no process start.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import bulk_cancel  # noqa: E402
from engine_throughput import serving, throughput  # noqa: E402
from peers_probe import pgqueuer_connect  # noqa: E402

from engine.flows import base as flows  # noqa: E402
from engine.runtime.server_names import parse_servers  # noqa: E402
from engine.runtime.supervisor import freeze_heap  # noqa: E402

PROBE = BENCH / "peers_probe.py"
# mark_job_as_cancelled's NOTIFY carries the ids, and PostgreSQL refuses a payload over
# 8,000 bytes ("payload string too long" at 10,000 ids): its calls take 500 ids each.
PGQ_CANCEL_CHUNK = 500
WAIT_S = 60.0  # for a datagram or an empty queue: past it the run failed, not slowed


class Figures:
    """Each figure's values over the rounds, in the order first measured."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, *values: float) -> None:
        self.values[name].extend(values)
        shown = " ".join(f"{v:.4g}" for v in values)
        print(f"  {name} {shown}", file=sys.stderr, flush=True)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])


class Databases:
    """A fresh database per figure: a SQLite file in ``tmp``, or a new database on the
    PostgreSQL server of ``base``."""

    def __init__(self, tmp: str, base: str) -> None:
        self.tmp, self.base, self._n = tmp, base, count()

    def sqlite(self) -> str:
        return f"{self.tmp}/s{next(self._n)}.db"

    def pg(self) -> str:
        return bulk_cancel.fresh_pg(self.base, f"peers_{next(self._n)}")


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """The PostgreSQL server's URL: ``url``, or a ``pgserver`` of our own for the run.
    As root, pgserver opens the directories above its data to its own user: under /tmp."""
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tempfile.mkdtemp(prefix="peers-pg-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


class Datagrams:
    """The probes' words (bench/peers_probe.py), on a UDP socket of this process."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT_S)
        self.port = self.sock.getsockname()[1]

    def expect(self, word: str, job: object) -> None:
        """Block until ``<word> <job>`` arrives; others (a former run's) are dropped."""
        want = f"{word} {job}".encode()
        try:
            while self.sock.recv(200) != want:
                pass
        except TimeoutError:
            raise SystemExit(f"peers: no '{word} {job}' from the probe in {WAIT_S:.0f} s") from None

    def close(self) -> None:
        self.sock.close()


# -- batchdeck -------------------------------------------------------------------


def batchdeck_throughput(url: str, n: int, servers: list[str] | None) -> float:
    rate, _ticks = asyncio.run(throughput(url, n, parse_servers(servers)))
    return rate


def _cancel_probe_recipe(tmp: str, port: int) -> object:
    from engine.recipes import load_recipe

    where = Path(tmp, "probe")
    where.mkdir(exist_ok=True)
    shutil.copy(PROBE, where / "peers_probe.py")  # found beside the recipe
    path = where / "probe.toml"
    path.write_text(
        'name = "cancel-probe"\n\n[[task]]\nname = "probe"\naction = "python"\n'
        f'function = "peers_probe:watch_cancel"\nport = {port}\n'
    )
    return load_recipe(path)


def batchdeck_cancel_seen_ms(url: str, tmp: str, runs: int) -> list[float]:
    """ms from ``flows.cancel`` until the running task has seen it, ``runs`` times,
    the task run by a ``batchdeck serve`` process."""
    from engine.store.db import Store

    dgrams = Datagrams()
    recipe = _cancel_probe_recipe(tmp, dgrams.port)
    store = Store(url)
    try:
        with serving(url, tmp):
            times = []
            for _ in range(runs):
                job = flows.submit(store.transaction, recipe, actor="bench")
                dgrams.expect("started", job)
                t0 = time.perf_counter()
                flows.cancel(store.transaction, job, actor="bench")
                dgrams.expect("seen", job)
                times.append((time.perf_counter() - t0) * 1000)
            return times
    finally:
        store.dispose()
        dgrams.close()


def batchdeck_bulk_cancel_s(url: str, jobs: int) -> float:
    bulk_cancel.make_jobs(url, jobs)
    return bulk_cancel.timed_cancel_all(url)


# -- pgqueuer --------------------------------------------------------------------


async def _pgq(url: str, driver: str, install: bool = False):  # -> (connection, Queries)
    conn, queries = await pgqueuer_connect(url, driver)
    if install:
        await queries.install()
    return conn, queries


@contextmanager
def pgqueuer_workers(
    url: str, tmp: str, workers: list[tuple[int, int]], driver: str, port: int = 0
) -> Iterator[None]:
    """Worker processes (slots, batch size each), started and ready to dequeue."""
    procs = []
    try:
        for i, (slots, batch) in enumerate(workers):
            err = Path(tmp, f"pgq-{i}.err").open("w")
            procs.append(
                (
                    subprocess.Popen(
                        [sys.executable, str(PROBE), url, str(slots), str(batch), str(port)]
                        + [driver],
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    ),
                    err,
                )
            )
        for proc, err in procs:
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"peers: a pgqueuer worker did not start: {err.name}")
        yield
    finally:
        for proc, _err in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, err in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            err.close()


def pgqueuer_throughput(
    url: str, tmp: str, n: int, workers: list[tuple[int, int]], driver: str
) -> float:
    """Tasks a second: from the bulk enqueue of ``n`` no-op jobs until the queue table is
    empty (a job leaves it when its completion is written)."""

    async def install() -> str:
        conn, queries = await _pgq(url, driver, install=True)
        await conn.close()
        return queries.qbe.settings.queue_table

    table = asyncio.run(install())
    with pgqueuer_workers(url, tmp, workers, driver):

        async def run() -> float:
            conn, queries = await _pgq(url, driver)
            t0 = time.perf_counter()
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
            deadline = time.monotonic() + WAIT_S + n / 100
            while await queries.driver.fetch(f"SELECT 1 FROM {table} LIMIT 1"):
                if time.monotonic() > deadline:
                    raise SystemExit("peers: pgqueuer did not empty its queue")
                await asyncio.sleep(0.005)
            dt = time.perf_counter() - t0
            await conn.close()
            return n / dt

        return asyncio.run(run())


def pgqueuer_cancel_seen_ms(url: str, tmp: str, runs: int, driver: str) -> list[float]:
    dgrams = Datagrams()

    async def setup() -> None:
        conn, _ = await _pgq(url, driver, install=True)
        await conn.close()

    asyncio.run(setup())
    try:
        with pgqueuer_workers(url, tmp, [(4, 2)], driver, dgrams.port):

            async def run() -> list[float]:
                conn, queries = await _pgq(url, driver)
                times = []
                for _ in range(runs):
                    (job,) = await queries.enqueue("probe", None)
                    dgrams.expect("started", job)  # blocks the loop: nothing else runs in it
                    t0 = time.perf_counter()
                    await queries.mark_job_as_cancelled([job])
                    dgrams.expect("seen", job)
                    times.append((time.perf_counter() - t0) * 1000)
                await conn.close()
                return times

            return asyncio.run(run())
    finally:
        dgrams.close()


def pgqueuer_bulk_cancel_s(url: str, jobs: int, driver: str) -> float:
    async def run() -> float:
        conn, queries = await _pgq(url, driver, install=True)
        ids = await queries.enqueue(["noop"] * jobs, [None] * jobs, [0] * jobs)
        t0 = time.perf_counter()
        for i in range(0, len(ids), PGQ_CANCEL_CHUNK):
            await queries.mark_job_as_cancelled(ids[i : i + PGQ_CANCEL_CHUNK])
        took = time.perf_counter() - t0
        table = queries.qbe.settings.queue_table
        (row,) = await queries.driver.fetch(f"SELECT count(*) AS n FROM {table}")
        left = row["n"]
        await conn.close()
        if left:
            raise SystemExit(f"peers: pgqueuer left {left} of {jobs} jobs queued")
        return took

    return asyncio.run(run())


# -- huey ------------------------------------------------------------------------


def huey_throughput(
    path: str, n: int, workers: int, synchronous: str | None
) -> tuple[float, float]:
    """Tasks a second of SqliteHuey: ``n`` no-op tasks enqueued by its ``enqueue`` (a
    commit each: it has no bulk enqueue), then run by a consumer of ``workers`` threads
    until the last one's ``complete`` signal; from the first enqueue, and from the
    consumer's start. Enqueued first, so no worker sleeps in its poll's back-off on an
    empty queue. ``synchronous``: None for SqliteHuey as it comes, else the pragma set on
    each of its connections (its ``fsync`` offers only FULL or OFF)."""
    import sqlite3

    from huey import SqliteHuey
    from huey.signals import SIGNAL_COMPLETE
    from huey.storage import SqliteStorage

    class Storage(SqliteStorage):
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()
            conn.execute(f"PRAGMA synchronous={synchronous}")
            return conn

    huey = SqliteHuey("bench", filename=path, storage_class=Storage if synchronous else None)

    @huey.task()
    def noop() -> None:
        return None

    done, lock, finished = [0], threading.Lock(), threading.Event()

    @huey.signal(SIGNAL_COMPLETE)
    def completed(signal_name: str, task: object, *args: object) -> None:
        with lock:
            done[0] += 1
            if done[0] == n:
                finished.set()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False)
    t0 = time.perf_counter()
    for _ in range(n):
        noop()  # enqueues
    t1 = time.perf_counter()
    consumer.start()
    try:
        if not finished.wait(WAIT_S + n / 100):
            raise SystemExit(f"peers: huey completed {done[0]} of {n} tasks")
        t2 = time.perf_counter()
    finally:
        consumer.stop(graceful=True)
        huey.storage.close()
        for s, handler in handlers.items():  # the consumer took them
            signal.signal(s, handler)
    return n / (t2 - t0), n / (t2 - t1)


# -- the run ---------------------------------------------------------------------


def one_round(args: argparse.Namespace, dbs: Databases, tmp: str, figs: Figures) -> None:
    peers, pgq = args.only != "batchdeck", args.pgqueuer_driver
    big, small, n4 = args.tasks, max(args.tasks // 10, 1), args.tasks_4
    wide = ["batch-01:64", "batch-02:64"]

    def pair(name: str, ours: Callable[[], float], theirs: Callable[[], float]) -> None:
        figs.add(f"{name}_batchdeck", ours())
        if peers:
            figs.add(f"{name}_pgqueuer", theirs())

    pair(
        "pg_4_slots_tasks_per_s",
        lambda: batchdeck_throughput(dbs.pg(), n4, None),
        lambda: pgqueuer_throughput(dbs.pg(), tmp, n4, [(4, 2)], pgq),
    )
    if peers:
        figs.add(
            "pg_uncapped_tasks_per_s_pgqueuer",
            pgqueuer_throughput(dbs.pg(), tmp, n4, [(0, 10)], pgq),
        )
    pair(
        "pg_2x64_slots_tasks_per_s",
        lambda: batchdeck_throughput(dbs.pg(), big, wide),
        lambda: pgqueuer_throughput(dbs.pg(), tmp, big, [(64, 10), (64, 10)], pgq),
    )
    figs.add(
        f"pg_2x64_slots_{small}_task_job_tasks_per_s_batchdeck",
        batchdeck_throughput(dbs.pg(), small, wide),
    )
    figs.add("sqlite_4_slots_tasks_per_s_batchdeck", batchdeck_throughput(dbs.sqlite(), n4, None))
    if peers:
        for name, synchronous in (("normal", "NORMAL"), ("default", None)):
            whole, run_only = huey_throughput(dbs.sqlite(), n4, 4, synchronous)
            figs.add(f"sqlite_4_slots_tasks_per_s_huey_{name}", whole)
            figs.add(f"sqlite_4_slots_run_only_tasks_per_s_huey_{name}", run_only)
    figs.add(
        "cancel_seen_by_running_task_ms_batchdeck_sqlite",
        *batchdeck_cancel_seen_ms(dbs.sqlite(), tmp, args.cancels),
    )
    figs.add(
        "cancel_seen_by_running_task_ms_batchdeck_pg",
        *batchdeck_cancel_seen_ms(dbs.pg(), tmp, args.cancels),
    )
    if peers:
        figs.add(
            "cancel_seen_by_running_task_ms_pgqueuer",
            *pgqueuer_cancel_seen_ms(dbs.pg(), tmp, args.cancels, pgq),
        )
    jobs = args.jobs
    figs.add(
        f"cancel_{jobs}_pending_jobs_s_batchdeck_sqlite",
        batchdeck_bulk_cancel_s(dbs.sqlite(), jobs),
    )
    figs.add(f"cancel_{jobs}_pending_jobs_s_batchdeck_pg", batchdeck_bulk_cancel_s(dbs.pg(), jobs))
    if peers:
        figs.add(
            f"cancel_{jobs}_pending_jobs_s_pgqueuer", pgqueuer_bulk_cancel_s(dbs.pg(), jobs, pgq)
        )


def ratios(args: argparse.Namespace, figs: Figures) -> list[tuple[str, float]]:
    m = figs.median
    small, jobs = max(args.tasks // 10, 1), args.jobs
    out = [
        (
            f"ratio_pg_{args.tasks}_to_{small}_task_job_batchdeck",
            m("pg_2x64_slots_tasks_per_s_batchdeck")
            / m(f"pg_2x64_slots_{small}_task_job_tasks_per_s_batchdeck"),
        )
    ]
    if args.only == "batchdeck":
        return out
    return [
        (
            "ratio_pg_4_slots_batchdeck_to_pgqueuer",
            m("pg_4_slots_tasks_per_s_batchdeck") / m("pg_4_slots_tasks_per_s_pgqueuer"),
        ),
        (
            "ratio_pg_4_slots_batchdeck_to_pgqueuer_uncapped",
            m("pg_4_slots_tasks_per_s_batchdeck") / m("pg_uncapped_tasks_per_s_pgqueuer"),
        ),
        (
            "ratio_pg_2x64_slots_batchdeck_to_pgqueuer",
            m("pg_2x64_slots_tasks_per_s_batchdeck") / m("pg_2x64_slots_tasks_per_s_pgqueuer"),
        ),
        *out,
        (
            "ratio_sqlite_4_slots_batchdeck_to_huey_normal",
            m("sqlite_4_slots_tasks_per_s_batchdeck") / m("sqlite_4_slots_tasks_per_s_huey_normal"),
        ),
        (
            "ratio_sqlite_4_slots_batchdeck_to_huey_default",
            m("sqlite_4_slots_tasks_per_s_batchdeck")
            / m("sqlite_4_slots_tasks_per_s_huey_default"),
        ),
        *(
            (
                f"ratio_cancel_seen_batchdeck_{db}_to_pgqueuer",
                m(f"cancel_seen_by_running_task_ms_batchdeck_{db}")
                / m("cancel_seen_by_running_task_ms_pgqueuer"),
            )
            for db in ("sqlite", "pg")
        ),
        *(
            (
                f"ratio_cancel_{jobs}_pending_jobs_batchdeck_{db}_to_pgqueuer",
                m(f"cancel_{jobs}_pending_jobs_s_batchdeck_{db}")
                / m(f"cancel_{jobs}_pending_jobs_s_pgqueuer"),
            )
            for db in ("sqlite", "pg")
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds, interleaved (default 3)")
    p.add_argument("--tasks", type=int, default=20_000, help="tasks at 2 x 64 slots")
    p.add_argument("--tasks-4", type=int, default=5_000, help="tasks at 4 slots")
    p.add_argument("--cancels", type=int, default=7, help="cancels seen, per round")
    p.add_argument("--jobs", type=int, default=10_000, help="pending jobs to cancel")
    p.add_argument("--pg", help="a PostgreSQL server's URL (default: a pgserver of our own)")
    p.add_argument("--only", choices=["batchdeck"], help="leave the peers out")
    p.add_argument(
        "--pgqueuer-driver",
        choices=["asyncpg", "psycopg"],
        default="asyncpg",
        help="pgqueuer's driver (default asyncpg, as its own examples use)",
    )
    args = p.parse_args(argv)
    for name in ("rounds", "tasks", "tasks_4", "cancels", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.only is None:
        try:
            import huey  # noqa: F401
            import pgqueuer  # noqa: F401

            if args.pgqueuer_driver == "asyncpg":
                import asyncpg  # noqa: F401
        except ImportError as exc:
            p.error(f"{exc.name} is missing: pip install -e '.[bench]', or --only batchdeck")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    freeze_heap()  # as `batchdeck serve` does once it serves
    figs = Figures()
    with tempfile.TemporaryDirectory() as tmp, postgres(args.pg) as base:
        dbs = Databases(tmp, base)
        for r in range(args.rounds):
            print(f"round {r + 1} of {args.rounds}", file=sys.stderr, flush=True)
            one_round(args, dbs, tmp, figs)
    for name in figs.values:
        value = figs.median(name)
        print(f"{name} {value:.0f}" if value >= 100 else f"{name} {value:.3g}")
    for name, value in ratios(args, figs):
        print(f"{name} {value:.2f}")


if __name__ == "__main__":
    main()
