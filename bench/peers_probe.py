"""The running task of ``bench/peers.py``'s cancel figure, on each side.

Each probe tells the bench by a UDP datagram to ``127.0.0.1:PORT``: ``started <job>`` once
it runs, ``seen <job>`` the moment the cancel reaches it. A datagram, not the database,
so the figure stops where the task learns of the cancel, not where someone writes it down.

- batchdeck: ``watch_cancel`` is the ``python`` action's function; bench/peers.py copies
  this file beside the recipe it writes, so a server process imports it from there.
- pgqueuer: ``python bench/peers_probe.py URL SLOTS BATCH PORT DRIVER`` runs one worker
  (``QueueManager``, ``max_concurrent_tasks=SLOTS``, 0 for none) on DRIVER (asyncpg or
  psycopg) with two entrypoints: ``noop`` and ``probe`` (which tells PORT). It prints ``ready``
  before it starts dequeuing and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Any


def tell(port: int, word: str, job: object) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(f"{word} {job}".encode(), ("127.0.0.1", port))


async def watch_cancel(ctx: Any, port: int) -> str:
    """batchdeck's side: wait for the cancel as a long action does, then stop at the
    safe point."""
    tell(port, "started", ctx.job_id)
    await ctx.wait_cancel()
    tell(port, "seen", ctx.job_id)
    ctx.checkpoint("saw the cancel")
    return "not canceled"  # not reached: checkpoint raised


async def pgqueuer_connect(url: str, driver: str) -> tuple[Any, Any]:
    """An open connection and pgqueuer's ``Queries`` over it, on ``driver``: asyncpg
    (the driver pgqueuer's own examples use) or psycopg (autocommit, as it requires)."""
    from pgqueuer import Queries

    if driver == "asyncpg":
        import asyncpg

        conn = await asyncpg.connect(url)
        return conn, Queries.from_asyncpg_connection(conn)
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    return conn, Queries.from_psycopg_connection(conn)


async def pgqueuer_worker(url: str, slots: int, batch: int, port: int, driver: str) -> None:
    from pgqueuer import QueueManager
    from pgqueuer.models import Context, Job

    conn, queries = await pgqueuer_connect(url, driver)
    qm = QueueManager(queries)

    @qm.entrypoint("noop", accepts_context=False)
    async def noop(job: Job) -> None:
        return None

    @qm.entrypoint("probe", accepts_context=True)
    async def probe(job: Job, ctx: Context) -> None:
        # pgqueuer cancels a job through its context's CancelScope (its notification's
        # listener calls cancel()): the sleep is cancelled where it waits.
        tell(port, "started", job.id)
        with ctx.cancellation:
            await asyncio.sleep(600)
        if ctx.cancellation.cancel_called:
            tell(port, "seen", job.id)

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    print("ready", flush=True)
    await qm.run(batch_size=batch, max_concurrent_tasks=slots or None)
    await conn.close()


if __name__ == "__main__":
    url, slots, batch, port, driver = sys.argv[1:6]
    asyncio.run(pgqueuer_worker(url, int(slots), int(batch), int(port), driver))
