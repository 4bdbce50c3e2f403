"""Following a job that runs on a remote service, whatever the service: start it (or
find it again), follow its counts, and carry a cancel or an abort over to it.

- The remote job's id is recorded on the task (fenced by the run's claim) the moment
  the remote returns it; a later attempt of the task follows that job instead of
  starting another, and its outcome is that job's.
- Cancel: the remote is asked to abort, and followed, within ``cancel_wait_s``, until
  it says the job stopped: the task is Canceled with the remote's own counts. A remote
  that does not confirm in time fails the task with words that say so.
- Abort: the same remote abort, bounded by ``abort_wait_s``, then the task stops; its
  message says whether the remote confirmed, or that the job may still run (its id).
- An engine stopping (or a server restart) leaves the remote job alone: the next
  attempt follows it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from engine.actions.context import ActionError, TaskCanceled, TaskContext
from engine.actions.remote.client import CancelSeen, RemoteError, wait_or

# While waiting for an abort to be confirmed, look this often (or the poll, if shorter).
_CONFIRM_POLL_S = 0.25


@dataclass(frozen=True)
class RemoteState:
    """What the remote says of its job, read once."""

    state: str
    done: int
    total: int | None
    failed: int = 0
    final: bool = False
    succeeded: bool = False
    aborted: bool = False  # final because it was aborted/canceled
    error: str | None = None  # the remote's own words about a failure


class RemoteJob(Protocol):
    """One kind of remote job (``salesforce``, ``http_job``): its requests."""

    unit: str  # what the counts count ("records")

    async def create(self) -> str:
        """Start the job on the remote; its id. Never retried after a lost answer."""
        ...

    async def prepare(self, job_id: str, seen: RemoteState | None) -> None:
        """What follows creation (upload, close); ``seen``: a later attempt's first look."""
        ...

    async def status(
        self, job_id: str, *, stop_on_cancel: bool = False, deadline: float | None = None
    ) -> RemoteState: ...

    async def abort(self, job_id: str, *, deadline: float) -> None: ...

    async def outcome(self, job_id: str, st: RemoteState) -> str:
        """The message of a job that ended on the remote; raises ActionError if it
        failed there."""
        ...


def counts(st: RemoteState, unit: str) -> str:
    total = f" of {st.total:,}" if st.total is not None else ""
    return f"{st.done:,}{total} {unit}; {st.failed:,} failed"


@dataclass
class Timing:
    poll_s: float
    cancel_wait_s: float
    abort_wait_s: float


class Follower:
    """One run of a remote long action."""

    def __init__(self, ctx: TaskContext, job: RemoteJob, timing: Timing) -> None:
        self.ctx = ctx
        self.job = job
        self.timing = timing
        self.job_id: str | None = ctx.remote_job
        self.last: RemoteState | None = None

    async def run(self) -> str:
        try:
            try:
                return await self._follow()
            except CancelSeen:
                return await self._cancel()
        except asyncio.CancelledError:
            if self.job_id is not None and self.ctx.abort_requested:
                # A task of its own: this one is being cancelled, and a second abort
                # must not cut the remote abort short either.
                with_remote = asyncio.ensure_future(self._abort())
                try:
                    await asyncio.shield(with_remote)
                except asyncio.CancelledError:
                    pass
            raise

    # -- following -------------------------------------------------------------------
    async def _follow(self) -> str:
        ctx = self.ctx
        if self.job_id is None:
            ctx.checkpoint("canceled before the remote job was created")
            self.job_id = await self.job.create()
            await self._record(self.job_id)
            ctx.log(f"remote job {self.job_id} created")
            await self.job.prepare(self.job_id, None)
        else:
            ctx.log(f"following remote job {self.job_id} again (attempt {ctx.attempt})")
            await self.job.prepare(self.job_id, await self.job.status(self.job_id))
        job_id = self.job_id
        while True:
            if ctx.cancel_requested:
                return await self._cancel()
            st = await self.job.status(job_id, stop_on_cancel=True)
            self._report(st)
            if st.final:
                return await self.job.outcome(job_id, st)
            await wait_or(ctx.wait_cancel, self.timing.poll_s)

    async def _record(self, job_id: str) -> None:
        try:
            await self.ctx.record_remote_job(job_id)
        except ActionError as exc:
            # Nobody could follow it: take it back rather than leave it running unseen.
            deadline = time.monotonic() + self.timing.abort_wait_s
            try:
                await self.job.abort(job_id, deadline=deadline)
            except RemoteError:
                pass
            raise ActionError(f"{exc}; remote job {job_id} was asked to abort") from None

    def _report(self, st: RemoteState) -> None:
        self.last = st
        self.ctx.progress(st.done, st.total, self.job.unit)
        if not st.final:
            self.ctx.log(f"remote job {self.job_id} {st.state}: {counts(st, self.job.unit)}")

    async def _abort_remote(self, job_id: str, wait_s: float, poll_s: float) -> RemoteState:
        """Ask the remote to abort ``job_id``, then look until it says the job ended or
        ``wait_s`` has passed: the last state seen, final or not. RemoteError if the
        remote could not be reached within that time."""
        deadline = time.monotonic() + wait_s
        try:
            await self.job.abort(job_id, deadline=deadline)
        except RemoteError:
            # Refused, perhaps because it has ended (or an earlier abort landed): a
            # remote may answer an abort of a stopped job with a 4xx.
            st = await self.job.status(job_id, deadline=deadline)
            if not st.final:
                raise
            self._report(st)
            return st
        while True:
            st = await self.job.status(job_id, deadline=deadline)
            self._report(st)
            left = deadline - time.monotonic()
            if st.final or left <= 0:
                return st
            self.ctx.log(
                f"waiting for the remote to confirm the abort of job {job_id} "
                f"(still {st.state}; {counts(st, self.job.unit)})"
            )
            await asyncio.sleep(min(poll_s, left))

    # -- cancel: abort on the remote, wait (bounded) for it to say so -------------------------
    async def _cancel(self) -> str:
        job_id, unit = self.job_id, self.job.unit
        if job_id is None:
            raise TaskCanceled("canceled before the remote job was created")
        wait_s = self.timing.cancel_wait_s
        self.ctx.log(f"asking the remote to abort job {job_id}")
        try:
            st = await self._abort_remote(job_id, wait_s, min(self.timing.poll_s, _CONFIRM_POLL_S))
        except RemoteError as exc:
            raise ActionError(
                f"could not abort remote job {job_id}: {exc}; it may still be running"
            ) from None
        if not st.final:
            raise ActionError(
                f"the remote ignored the abort: job {job_id} still {st.state} "
                f"{wait_s:g} s after it was asked to abort, and may still be running "
                f"({counts(st, unit)})"
            )
        if st.aborted:
            raise TaskCanceled(f"aborted on the remote after {counts(st, unit)} (job {job_id})")
        # It ended on its own before the abort landed: that is its outcome.
        return await self.job.outcome(job_id, st)

    # -- abort: the same, with a short bound, then stop -------------------------------------
    async def _abort(self) -> None:
        ctx, unit = self.ctx, self.job.unit
        job_id = self.job_id
        assert job_id is not None
        wait_s = self.timing.abort_wait_s
        st: RemoteState | None
        try:
            st = await self._abort_remote(job_id, wait_s, _CONFIRM_POLL_S)
        except RemoteError as exc:
            ctx.log(f"the remote abort of job {job_id} failed ({exc}): it may still be running")
            return
        except asyncio.CancelledError:
            st = None  # stopped while waiting: what the remote did is not known
        if st is not None and st.aborted:
            ctx.log(f"the remote confirmed: job {job_id} {st.state} after {counts(st, unit)}")
        elif st is not None and st.final:
            ctx.log(f"remote job {job_id} had already ended ({st.state}; {counts(st, unit)})")
        else:
            seen = f" (still {st.state}; {counts(st, unit)})" if st is not None else ""
            ctx.log(
                f"the remote did not confirm the abort within {wait_s:g} s: "
                f"job {job_id} may still be running{seen}"
            )
