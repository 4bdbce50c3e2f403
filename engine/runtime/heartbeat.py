"""The leases of a ``Supervisor``: the beat that renews them, what its servers are told of
them while the database is out of reach, and the recovery of a peer engine's runs once
its lease expired."""

from __future__ import annotations

import asyncio
import contextlib
import time

from engine.core.db_outage import outage_of
from engine.core.procs import RUN_MARKER, kill_all
from engine.runtime.leases import beat, note_outage, peer_leases, take_over


class Heartbeat:
    """A part of ``engine.runtime.supervisor.Supervisor``: its methods share the
    supervisor's state."""

    def _lease_valid_for(self, elapsed: float) -> float:
        # The servers must have stopped before another engine may take the lease over:
        # a margin below the lease, less what has passed since the beat was taken.
        return max(0.1, self._lease_s - elapsed - min(1.0, self._lease_s * 0.2))

    async def _heartbeat(self) -> None:
        t0 = time.monotonic()
        while True:
            # Beats keep their cadence from when each began: after one the database held
            # up, the next goes at once, before what that one vouched for runs out.
            await asyncio.sleep(max(0.0, t0 + self.heartbeat_interval - time.monotonic()))
            at = self.clock()
            began = time.perf_counter()
            t0 = self._beat_started = time.monotonic()
            note = self.outage.note() if self.outage.down else None
            # A server whose process is gone and whose restart is not yet written does
            # not go on saying Online.
            down = [n for n in self.servers if n in self._restarting and n not in self.procs]
            try:
                lost = await self._db(
                    self._write, beat, list(self.servers), self.owner, at=at, down=down
                )
            except Exception as exc:  # noqa: BLE001 - a locked database: try next beat
                self._wrote("heartbeat", False, began)
                if outage_of(exc) is None:
                    self.note(f"heartbeat: {exc}")
                self._held_up(t0)
                continue
            finally:
                self._beat_started = None
            self._wrote("heartbeat", True, began)
            took = time.monotonic() - t0
            if note != self._outage_noted:
                # Its own transaction, best effort: a longer row may not fit a full disk,
                # and the lease must not wait on it.
                with contextlib.suppress(Exception):
                    await self._db(self._write, note_outage, list(self.servers), self.owner, note)
                    self._outage_noted = note
            if took > self.heartbeat_interval / 2:
                self._held_up(t0)  # it went through, late: the database held everyone up
            else:
                self._stall_since = None
            for name in lost:
                self._lose(name)
            self._vouch(t0 + self._lease_valid_for(0.0), always=True)
            try:
                await self._recover_peers(at)
            except Exception as exc:  # noqa: BLE001 - try again next beat
                if outage_of(exc) is None:
                    self.note(f"recovery of other engines' servers: {exc}")

    def _held_up(self, started: float) -> None:
        """Our beat failed or was held up by the database: peers' clocks start again (the
        database was out of their reach too), and on SQLite our servers' lease counts
        from here (see ``_vouch_while_held_up``)."""
        self._peers.forget()
        if self._stall_since is None:
            self._stall_since = started

    def _vouch(self, until: float, *, always: bool = False) -> None:
        """Tell our servers their lease runs until ``until`` (monotonic): after a beat,
        ``always``; while held up, only if later than what they were told."""
        if until <= self._vouched_until and not always:
            return
        self._vouched_until = until
        msg = [{"op": "lease", "valid_for": max(0.1, until - time.monotonic())}]
        for sp in self.procs.values():
            sp.send(msg)

    async def _vouch_while_held_up(self) -> None:
        """SQLite: while our beat is held up by the database (another process's write
        lock, a full disk), the lease our servers run on counts from when it began.
        Sound because the one file is out of every engine's reach alike, and a peer
        counts our lease only over time its own beats went through (``PeerLeases``): so
        an outage shorter than the lease costs the running tasks nothing.
        PostgreSQL: one host may lose the database while others reach it; there the
        lease counts from the last beat that went through."""
        if self.store is None or self.store.is_postgresql:
            return
        while True:
            await asyncio.sleep(0.05)
            started = self._beat_started
            if started is not None and time.monotonic() - started > self.heartbeat_interval / 2:
                if self._stall_since is None:
                    self._stall_since = started
            if self._stall_since is not None:
                self._vouch(self._stall_since + self._lease_valid_for(0.0))

    def _unreachable_cause(self) -> str:
        """Why our runs were stopped when our servers' lease ran out."""
        now = time.monotonic()
        since = [t for t in (self._stall_since, self._beat_started) if t is not None]
        if not since and not self.outage.down:
            return "interrupted: the engine stalled past its lease"  # SIGSTOP, say
        took = max([self.outage.seconds()] + [now - t for t in since])
        return f"interrupted: the engine could not reach its database for {took:.0f} s"

    async def _recover_peers(self, at: float) -> None:
        """Another engine let its lease expire (its host died): recover its tasks here
        now, not at the next engine start. One small read per beat. The lease is judged
        by our monotonic clock (``PeerLeases``), taken over only if unchanged in the
        transaction that takes it, and what ran there is killed after that, not before."""
        rows = await self._db(self._read, peer_leases, self.owner)
        expired = self._peers.expired(rows, time.monotonic())
        if not expired:
            return
        self._taking_over = True
        try:
            taken, changed = await self._db(self._write, take_over, self.owner, expired, at=at)
            if not taken:
                return
            # Its server processes, if on this host, die before anything of theirs is
            # claimed again: nothing runs twice.
            await kill_all(markers=[(RUN_MARKER, f"{self._run_prefix}{n}|") for n in taken])
        finally:
            self._taking_over = False
        self.note(
            f"recovered {len(changed)} task(s) of expired server(s) {', '.join(taken)}",
            error=False,
        )
        self._wake.set()
