"""The task runs of a ``Supervisor``: starting claimed tasks on their servers, what the
servers say of them, the stops told to them, child jobs and approvals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from engine.actions.context import ActionError
from engine.core.db_outage import outage_of
from engine.runtime import tick as batch
from engine.runtime.limits import OUTAGE_RETRY_S
from engine.runtime.server_handle import ServerProcess
from engine.store.log_store import LogItem, write_logs

MAX_CALL_DEPTH = 20
# Log chunks written per transaction of their own, between ticks: a tick waits for at
# most one such write (a few ms), whatever a task prints.
LOG_BATCH_BYTES = 256 * 1024


@dataclass
class Runner:
    """One run of a task on a server process, as the supervisor tracks it."""

    claim: batch.Claimed
    server: str
    cancel_sent: bool = False
    abort_sent: bool = False
    detached: bool = False  # its result is not written (settled elsewhere, lease lost)
    # Waiting for a child job (a sync call_job): its slot is free meanwhile, or callers
    # as many as the slots (or a chain deeper than them) wait for ever on children that
    # need a slot.
    waiting_child: int = 0
    calls: dict[int, asyncio.Task[Any]] = field(default_factory=dict)

    @property
    def task_id(self) -> int:
        return self.claim.task_id


class TaskRuns:
    """A part of ``engine.runtime.supervisor.Supervisor``: its methods share the
    supervisor's state."""

    def _take_outcomes(self) -> list[batch.Outcome]:
        out, self._outcomes = self._outcomes, []
        return out

    def _tell_servers(self, task_state: dict[int, tuple[str, Any, Any]]) -> None:
        """Stop our runs that an operator asked to stop (once each), and those settled
        elsewhere; hand an approval decided to the run waiting for it."""
        sends: dict[str, list[dict[str, Any]]] = {}
        for tid, (status, approval, by) in task_state.items():
            r = self._runners.get(tid)
            if r is None or r.detached:
                continue
            if status == "canceling" and not r.cancel_sent:
                r.cancel_sent = True
                sends.setdefault(r.server, []).append({"op": "cancel", "task": tid})
            elif status == "aborting" and not r.abort_sent:
                r.abort_sent = True
                sends.setdefault(r.server, []).append({"op": "abort", "task": tid})
            elif status not in ("executing", "canceling", "aborting"):
                # Someone else settled it (recovery by another engine): stop our copy,
                # and write nothing of it. Its slot is free once its code has stopped.
                r.detached = True
                sends.setdefault(r.server, []).append({"op": "abort", "task": tid})
            if approval and tid in self._approval_waiters:
                fut = self._approval_waiters.pop(tid)
                if not fut.done():
                    fut.set_result((approval, by or "?"))
        for name, msgs in sends.items():
            sp = self.procs.get(name)
            if sp is not None:
                sp.send(msgs)

    def _start(self, claimed: list[batch.Claimed]) -> None:
        sends: dict[str, list[dict[str, Any]]] = {}
        for c in claimed:
            self._runners[c.task_id] = Runner(claim=c, server=c.server)
            sends.setdefault(c.server, []).append(
                {
                    "op": "run",
                    "task": c.task_id,
                    "token": c.token,
                    "job": c.job_id,
                    "name": c.name,
                    "action": c.action,
                    "params_json": c.params_json,
                    "attempt": c.attempt,
                    "recipe_path": c.recipe_path,
                    "child": c.child_job_id,
                    "remote_job": c.remote_job,
                    "log_max": self._log_max,
                }
            )
            self.stats.started += 1
        for name, msgs in sends.items():
            sp = self.procs.get(name)
            if sp is not None:
                sp.send(msgs)

    def _on_messages(self, sp: ServerProcess, msgs: list[dict[str, Any]]) -> None:
        if self.procs.get(sp.name) is not sp:
            return  # a process we have already replaced or given up
        wake = False
        for m in msgs:
            op = m["op"]
            r = self._runners.get(m["task"]) if "task" in m else None
            if r is not None and r.server != sp.name:
                r = None
            if op == "progress" and r is not None and not r.detached:
                self._dirty[r.task_id] = self._progress(r, m["progress"])
            elif op == "log" and r is not None and not r.detached:
                c = r.claim
                self.logs.add(
                    LogItem(c.task_id, c.job_id, c.attempt, c.token, m.get("chunk"), m.get("cut"))
                )
                self._logs_waiting.set()
            elif op == "done":
                if r is None:
                    continue
                del self._runners[r.task_id]
                sp.forget(r.task_id)
                self._cancel_calls(r)
                self.stats.finished += 1
                wake = True
                if r.detached:
                    continue
                outcome, message = m["outcome"], m.get("message")
                why = "interrupted: engine stopped" if self._stopping else None
                self._outcomes.append(
                    batch.Outcome(
                        r.task_id,
                        outcome,
                        message,
                        reason=(
                            f"aborted by request; {message}"
                            if outcome == "aborted" and message
                            else why
                        ),
                        requeue_always=outcome == "interrupted",
                        token=r.claim.token,
                    )
                )
                # The final progress rides with the outcome in the same batch.
                self._dirty[r.task_id] = self._progress(r, m["progress"])
            elif op == "call" and r is not None:
                r.calls[m["id"]] = self._own(self._answer(sp, r, m), f"call-{r.task_id}-{m['fn']}")
            elif op == "uncall":
                for run in self._runners.values():
                    t = run.calls.pop(m["id"], None)
                    if t is not None:
                        t.cancel()
        if wake:
            self._wake.set()

    @staticmethod
    def _progress(r: Runner, p: dict[str, Any]) -> batch.Progress:
        return batch.Progress(
            r.task_id,
            p["done"],
            p["total"],
            p["unit"],
            p["message"],
            p["output"],
            p.get("child"),
            token=r.claim.token,
        )

    async def _write_logs(self) -> None:
        """Log chunks, in transactions of their own between the ticks (the writer thread
        takes them in turn): what a task prints never makes a tick wait for more than
        one batch. A run's outcome waits for its last chunks (``_tick``)."""
        while True:
            await self._logs_waiting.wait()
            self._logs_waiting.clear()
            while self.logs.items:
                items = self.logs.take(LOG_BATCH_BYTES)
                try:
                    await self._db(self._write_own, write_logs, items, at=self.clock())
                except Exception as exc:  # noqa: BLE001 - a locked database: try again
                    self.logs.put_back(items)
                    if outage_of(exc) is None:  # an outage is said once, by its watch
                        self.note(f"writing task logs: {exc}")
                    await asyncio.sleep(max(self.poll_interval, OUTAGE_RETRY_S))
                if self._outcomes:
                    self._wake.set()  # outcomes held for their lines may go now

    def _cancel_calls(self, r: Runner) -> None:
        for t in r.calls.values():
            t.cancel()
        r.calls.clear()

    async def _answer(self, sp: ServerProcess, r: Runner, m: dict[str, Any]) -> None:
        """Do what task code asked of the engine (a child job, a wait) and reply."""
        fn, args = m["fn"], m["args"]
        reply: dict[str, Any] = {"op": "reply", "id": m["id"]}
        try:
            if fn == "submit_child":
                reply["value"] = await self._submit_child(r, *args)
            elif fn == "record_remote_job":
                reply["value"] = await self._record_remote_job(r, str(args[0]))
            elif fn == "wait_job":
                r.waiting_child += 1
                self._wake.set()  # its slot is free: the child may take it at once
                try:
                    reply["value"] = await self.wait_job(int(args[0]))
                finally:
                    r.waiting_child -= 1
            elif fn == "wait_approval":
                reply["value"] = list(await self._wait_approval(r.task_id))
            else:
                reply["error"] = f"unknown request {fn!r}"
        except ActionError as exc:
            reply["error"] = str(exc)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - the task fails with it, not the engine
            reply["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            r.calls.pop(m["id"], None)
        sp.send([reply])

    async def _submit_child(self, r: Runner, recipe_path: str, mode: str) -> int:
        from engine.flows.base import insert_job
        from engine.recipes import RecipeError, load_recipe
        from engine.store.flow_statements import flow_sql

        try:
            recipe = await asyncio.to_thread(load_recipe, recipe_path)
        except RecipeError as exc:
            raise ActionError(str(exc)) from None
        c = r.claim

        def insert(conn: Any) -> int:
            depth = conn.execute(batch.call_depth(c.job_id)).scalar_one()
            if depth >= MAX_CALL_DEPTH:
                # A recipe that ends up calling itself would otherwise fill the database.
                raise ActionError(
                    f"call depth {depth} reached (at most {MAX_CALL_DEPTH} "
                    "nested jobs): does the recipe call itself?"
                )
            if not batch.holds_claim(conn, c.task_id, c.token):
                raise ActionError("this run no longer holds its task: nothing started")
            job_id = insert_job(
                flow_sql(conn),
                recipe,
                actor=self.actor,
                at=self.clock(),
                parent_id=c.job_id,
                parent_task_id=c.task_id,
                call_mode=mode,
            )
            # Recorded at once, so that a retry of this task finds the child.
            batch.record_child(conn, c.task_id, c.token, job_id)
            return job_id

        return await self._db(self._write, insert)

    async def _record_remote_job(self, r: Runner, remote_job: str) -> None:
        c = r.claim
        if not await self._db(self._write, batch.record_remote_job, c.task_id, c.token, remote_job):
            raise ActionError("this run no longer holds its task: the remote job was not recorded")

    async def wait_job(self, job_id: int) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._job_waiters.setdefault(job_id, []).append(fut)
        self._wake.set()
        try:
            return await fut
        finally:
            waiters = self._job_waiters.get(job_id, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._job_waiters.pop(job_id, None)

    async def _wait_approval(self, task_id: int) -> tuple[str, str]:
        fut: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._approval_waiters[task_id] = fut
        self._wake.set()
        try:
            return await fut
        finally:
            self._approval_waiters.pop(task_id, None)
