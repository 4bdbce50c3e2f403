"""The server processes of a ``Supervisor``: starting them, their slots, noticing one die,
and the restart (drain, then a new process)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import uuid
from typing import Any

from engine.core.dburl import parse_db
from engine.runtime import tick as batch
from engine.runtime.runs import Runner
from engine.runtime.server_handle import ServerProcess
from engine.store.db import is_postgresql

HOST = socket.gethostname()
RESTART_GRACE_S = 2.0
# A server whose process keeps dying at start is given up after this many tries in a row.
MAX_START_FAILURES = 5
# The exit status of a server process whose lease ran out (engine.server_proc).
LEASE_EXIT = 75


class ServerPool:
    """A part of ``engine.runtime.supervisor.Supervisor``: its methods share the
    supervisor's state."""

    @property
    def _run_prefix(self) -> str:
        # Server processes of this database carry it in their marker, whatever engine
        # started them: a recovery finds a dead engine's leftovers by it.
        # A URL: a hash of it without its password, which has no business in every
        # process's environment, and no "|" of its own to confuse the marker.
        if is_postgresql(self.db_path):
            identity = parse_db(self.db_path).identity()
            return f"pg:{hashlib.sha256(identity.encode()).hexdigest()[:16]}|"
        return f"{os.path.realpath(self.db_path)}|"

    def _spawn(self, name: str) -> ServerProcess:
        sp = ServerProcess(name, self._on_messages, self._on_server_exit, self._server_stderr)
        sp.marker = f"{self._run_prefix}{name}|{uuid.uuid4().hex}"
        return sp

    async def _start_server(self, name: str) -> ServerProcess | None:
        """A fresh server process, ready for work; None if it would not start."""
        for _ in range(MAX_START_FAILURES):
            if name not in self.servers or self._stopping:
                return None  # lost meanwhile, or stopping: nothing to serve
            sp = self._spawn(name)
            await sp.start()
            if await sp.wait_ready():
                self.procs[name] = sp
                sp.send([{"op": "lease", "valid_for": self._lease_valid_for(0.0)}])
                await self._written(batch.note_server_process, name, self.owner, sp.pid, HOST)
                return sp
            sp.ending = True
            await sp.end(graceful=False)
            self.note(f"server {name}: process exited at start ({sp.returncode}); trying again")
            await asyncio.sleep(0.2)
        self.note(f"server {name}: process would not start; not serving it")
        return None

    def _lose(self, name: str) -> None:
        """Another engine took this server (we stalled past the lease): stop serving it.

        Its recovery has already put our running tasks back to Ready, so running them on
        here too would run them twice: they are killed without writing anything.
        """
        if name not in self.servers:
            return  # already given up
        self.note(
            f"lease on {name} taken by another engine; stopped serving it and killed its tasks"
        )
        self.servers.pop(name, None)
        if not self.servers:
            self.nothing_to_serve.set()
        for r in [r for r in self._runners.values() if r.server == name]:
            r.detached = True
            self._cancel_calls(r)
            del self._runners[r.task_id]
        sp = self.procs.pop(name, None)
        if sp is not None:
            self._own(sp.end(graceful=False), f"lose-{name}")
        self._own(
            self._db(self._write, batch.note_lease_lost, name, self.owner, at=self.clock()),
            f"lost-{name}",
        )

    def _free_slots(self) -> dict[str, int]:
        """Called by the tick in the writer thread while the loop runs on: it reads
        copies (``list`` of a dict is taken whole under the GIL), never the live dicts."""
        if self._stopping or self._taking_over:
            return {}
        servers = list(self.servers.items())
        used: dict[str, int] = {}
        for r in list(self._runners.values()):
            if not r.waiting_child:
                used[r.server] = used.get(r.server, 0) + 1
        free = {}
        for name, slots in servers:
            status = self._server_state.get(name, ("online",))[0]
            sp = self.procs.get(name)
            if sp is None or not sp.ready.is_set() or sp.exited.is_set():
                continue
            if status == "online" and name not in self._restarting:
                free[name] = slots - used.get(name, 0)
        return free

    def _on_server_exit(self, sp: ServerProcess) -> None:
        if self._stopping or self.procs.get(sp.name) is not sp:
            return
        self._restarting.add(sp.name)
        self._own(self._server_died(sp), f"died-{sp.name}")

    @staticmethod
    def _death_cause(rc: int | None) -> str:
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = "?"
            return f"signal {-rc} ({name})"
        return f"exit status {rc}"

    async def _restart_begin(self, name: str, why: str) -> bool:
        """Mark the server Restarting; False if another engine holds it now (then we
        stop serving it: nothing of it is ours to write)."""
        held = await self._written(batch.restart_begin, name, self.owner, at=self.clock(), why=why)
        if not held:
            self._lose(name)
        return held

    async def _restart_end(
        self, name: str, victims: list[Runner], outcomes: list[batch.Outcome]
    ) -> None:
        """Start a fresh process, then write what happened to the old one's runs and
        bring the server back Online (only once the new process is ready)."""
        progress = [self._dirty.pop(r.task_id) for r in victims if r.task_id in self._dirty]
        fresh = await self._start_server(name)

        def end(conn: Any) -> None:
            at = self.clock()
            batch.write_runs(conn, outcomes, progress, at=at)  # fenced by claim tokens
            if fresh is not None:
                batch.restart_end(conn, name, self.owner, at=at)

        await self._written(end)

    async def _server_died(self, sp: ServerProcess) -> None:
        """Its code is gone; so must be everything it started. Then say what happened to
        each of its runs, and start a fresh process.

        The dead process is forgotten first, before any write: a write that fails (the
        database locked, full or gone) must not leave the engine counting on a process
        that is not there. The writes are then tried until the database takes them."""
        name = sp.name
        self.stats.crashes += 1
        if self.procs.get(name) is sp:
            self.procs.pop(name, None)
        victims = [r for r in self._runners.values() if r.server == name]
        for r in victims:
            del self._runners[r.task_id]
            self._cancel_calls(r)
        try:
            left = await sp.sweep()
            if left:
                self.note(f"server {name}: pids {left} still alive after SIGKILL")
            cause, outcomes = self._death_outcomes(sp, victims)
            self.note(f"server {name}: {cause}")
            if not await self._restart_begin(name, cause):
                return
            await self._restart_end(name, victims, outcomes)
        except Exception as exc:  # noqa: BLE001 - given up (see _written): serve nothing, say so
            if self.given_up is None and not self._stopping:
                self._give_up(f"server {name} could not be restarted: {exc}")
        finally:
            self._restarting.discard(name)
            self._server_state[name] = ("online", None, None)
            self._wake.set()

    def _death_outcomes(
        self, sp: ServerProcess, victims: list[Runner]
    ) -> tuple[str, list[batch.Outcome]]:
        """Why the process died, and what each of its runs became."""
        cause = f"server process died: {self._death_cause(sp.returncode)}"
        if sp.returncode == LEASE_EXIT:
            # The lease we vouched for ran out: our own failure to reach the database (or
            # a stall), never a task's. Every run goes back to Ready with the true cause.
            why = self._unreachable_cause()
            cause = f"its lease ran out: {why.removeprefix('interrupted: ')}"
            return cause, [
                batch.Outcome(
                    r.task_id, "interrupted", reason=why, requeue_always=True, token=r.claim.token
                )
                for r in victims
                if not r.detached
            ]
        culprits: dict[int, str] = {
            t: f"task code exited with status {code}" for t, code in sp.exit_blame.items()
        }
        if not culprits and len(victims) == 1:
            culprits = {victims[0].task_id: cause}
        outcomes = []
        for r in victims:
            if r.detached:
                continue
            token = r.claim.token
            if r.task_id in culprits:
                outcomes.append(batch.Outcome(r.task_id, "error", culprits[r.task_id], token=token))
            elif culprits:
                outcomes.append(
                    batch.Outcome(
                        r.task_id,
                        "interrupted",
                        reason="interrupted: another task's code ended the server process",
                        requeue_always=True,
                        token=token,
                    )
                )
            else:
                # Nobody to blame: each runs again while it has attempts left.
                outcomes.append(
                    batch.Outcome(
                        r.task_id, "interrupted", reason=f"interrupted: {cause}", token=token
                    )
                )
        return cause, outcomes

    async def _restart(self, name: str, why: str) -> None:
        """Enhanced abort: end the server process and everything it started, then report
        its runs (Aborted, or back to Ready for other jobs) and bring it back Online."""
        try:
            if not await self._restart_begin(name, why):
                return
            sp = self.procs.pop(name, None)
            if sp is None:
                return
            left = await sp.end(graceful=False, grace=RESTART_GRACE_S)
            if left:
                self.note(f"server {name}: pids {left} still alive after SIGKILL")
            victims = [r for r in self._runners.values() if r.server == name]
            outcomes = []
            for r in victims:
                del self._runners[r.task_id]
                self._cancel_calls(r)
                if not r.detached:
                    outcomes.append(
                        batch.Outcome(
                            r.task_id,
                            "interrupted",
                            reason="interrupted by server restart",
                            requeue_always=True,
                            token=r.claim.token,
                        )
                    )
            await self._restart_end(name, victims, outcomes)
            self.stats.restarts += 1
        finally:
            self._restarting.discard(name)
            self._server_state[name] = ("online", None, None)
            self._wake.set()
