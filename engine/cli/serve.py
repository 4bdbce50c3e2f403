"""``batchdeck serve`` (the engine, headless, until a signal) and ``batchdeck servers``
(the batch servers' list, or ``--forget NAME``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from engine.cli import output
from engine.cli.shared import EXIT_OK, EXIT_USAGE, Fail, actor, flow, read, usable
from engine.core.safe_text import safe_line


def cmd_serve(args: argparse.Namespace) -> int:
    """Serves until SIGINT, SIGTERM or SIGHUP, or until every server's lease is taken by
    another engine. Fail: a bad ``--server``, a ``--metrics`` port it cannot bind, a
    lease refused, the database failing; or the engine gave up (a service manager then
    restarts it)."""
    import asyncio
    import signal

    from engine.runtime.server_names import parse_servers
    from engine.runtime.supervisor import Supervisor, freeze_heap
    from engine.runtime.tick import LeaseRefused
    from engine.service.serving import Service
    from engine.store.db import DatabaseError

    try:
        servers = parse_servers(args.server)
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    path = usable(args, write=True)
    try:
        service = Service.prepare(args.metrics)
    except OSError as exc:
        raise Fail(f"--metrics {args.metrics[0]}:{args.metrics[1]}: {exc.strerror}") from None

    async def serve() -> None:
        def log(message: str) -> None:
            with contextlib.suppress(OSError):  # stderr's reader gone: serve all the same
                print(f"batchdeck serve: {message}", file=sys.stderr, flush=True)

        engine = Supervisor(
            path, servers, poll_interval=args.poll, server_stderr=sys.stderr, log=log
        )
        started = engine.clock()
        try:
            await engine.start()
        except BaseException:
            await service.close()
            raise
        await service.attach(engine, log, since=started)  # READY to systemd, metrics
        freeze_heap()  # this process serves for good: see freeze_heap
        stop = engine.nothing_to_serve
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(OSError):  # stdout's reader gone: serve all the same
            # The store's name for it: a URL without its password.
            pid = engine.owner.split(":")[1]
            print(output.serving_line(servers, engine.store.path, pid), flush=True)
        await stop.wait()
        if not engine.servers:
            log("every server's lease was taken by another engine; stopping")
        with contextlib.suppress(OSError):  # stdout's reader gone: stop all the same
            print("stopping: running tasks go back to Ready", flush=True)
        await service.stopping()
        await engine.stop()
        await service.close()
        if engine.given_up:  # a service manager restarts it: exit non-zero
            raise Fail(engine.given_up)

    try:
        asyncio.run(serve())
    except LeaseRefused as exc:
        raise Fail(str(exc)) from None
    except DatabaseError as exc:
        raise Fail(str(exc)) from None
    return EXIT_OK


def cmd_servers(args: argparse.Namespace) -> int:
    import json
    import time

    from engine.reader.servers import server_rows, servers_table

    async def rows_of(reader: Any) -> list[dict[str, Any]]:
        now = time.time()  # the Reader puts the heartbeats on this clock
        return server_rows(await reader.servers(now), await reader.lease_seconds(), now)

    if args.forget is not None:
        from engine.runtime.server_names import forget

        def go(_reading: Any, transaction: Any) -> str:
            return forget(transaction, args.forget, actor=actor(), at=time.time())

        print(safe_line(flow(args, go, write=True)))
        return EXIT_OK
    path = usable(args, write=False)  # a mistyped --db: "no such database", nothing made
    rows = read(rows_of, args, path)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(servers_table(rows))
    return EXIT_OK
