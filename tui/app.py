"""The console application: screens, the embedded engine's lifetime, and the flows that
turn a key press into a confirmation and a control request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen

from engine import control
from engine.identity import current_actor
from engine.safe_text import safe_block
from tui.data import Data, one_line, owner_pid
from tui.screens.base import JobKeysMixin, LiveScreen
from tui.screens.detail import waiting_approval
from tui.styles import set_plain


def attached_label(live: dict[str, list[str]]) -> str:
    """ "attached to engine on batch-01, batch-02 (pid 123)" from Reader.live_engines()."""
    if not live:
        return "no engine running: control requests wait for one"
    parts = []
    for owner, servers in live.items():
        parts.append(f"{', '.join(sorted(servers))} (pid {owner_pid(owner)})")
    return "attached to engine on " + "; ".join(parts)


def embedded_label(servers: Iterable[str]) -> str:
    return f"embedded engine: {', '.join(servers)}"


def read_only_label(mode: str) -> str:
    """The header of a console on a database this user may not write."""
    from engine.identity import os_user

    if mode.startswith("no engine running"):
        mode = "no engine running"  # "control requests wait for one": there are none here
    return f"READ-ONLY for you (user {os_user()}) · {mode}"


def nothing_to(refusal: str, verb: str) -> str:
    """ "Job 42 already Ended" -> "Job 42 already Ended — nothing to cancel"."""
    if " already " in refusal and "nothing" not in refusal:
        return f"{refusal} — nothing to {verb}"
    return refusal


class BatchdeckApp(App[int]):
    """``engine``: an Engine started with the app and stopped when it quits (embedded),
    or None (attached: control goes through the database; jobs outlive the console).

    When the terminal goes away (``hangup``) an embedded engine is not stopped: the app
    exits and leaves it in ``handed_off``, for ``tui.launch`` to run headless until its
    work is done. SIGTERM (``request_exit``) is a normal quit: the engine stops."""

    TITLE = "batchdeck"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("s", "servers", "Servers"),
    ]

    def __init__(
        self,
        db_path: str,
        *,
        mode_label: str,
        engine: Any = None,
        clock: Callable[[], float] = time.time,
        actor: str | None = None,
        live: bool = True,
        watch_tty: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        set_plain(self.no_color)
        self.db_path = db_path
        self.data = Data(db_path)
        self.mode_label = mode_label
        self.engine = engine
        self.clock = clock
        self.actor = actor or current_actor()
        self.live = live
        self.messages: list[tuple[str, str]] = []  # every notification (tests read it)
        self.engine_running = False
        self.handed_off: Any = None  # the running engine, when the terminal went away
        self.exit_requested = False  # SIGTERM / SIGINT: quit, stopping the engine
        self._hangup_requested = False
        self._watch_tty = watch_tty
        self.on_tty_lost: Callable[[], None] | None = None  # set by tui.launch
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self._engine_start: asyncio.Task[None] | None = None
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------
    def on_mount(self) -> None:
        from tui.screens.jobs import JobListScreen

        self.event_loop = asyncio.get_running_loop()
        if self.data.read_only:
            self.mode_label = read_only_label(self.mode_label)
        self.sub_title = self.mode_label
        self.push_screen(JobListScreen())
        if self.engine is not None:
            # A plain task, not a worker: Textual cancels workers when it exits, and a
            # start cancelled after its leases were written would leave them behind.
            self._engine_start = asyncio.create_task(
                self._start_engine(), name="batchdeck-engine-start"
            )
        if self._watch_tty is not None:
            self.set_timer(2.0, self._check_tty)
        if self.exit_requested:  # a signal came before the loop was known
            self.exit(0)
        elif self._hangup_requested:
            self.hangup()

    async def _start_engine(self) -> None:
        from engine.batch import LeaseRefused

        engine = self.engine
        try:
            await engine.start()
        except Exception as exc:  # noqa: BLE001 - LeaseRefused or a broken database
            self.engine = None  # start() has closed what it opened
            with contextlib.suppress(Exception):
                live = await self.data.reader.live_engines(time.time())
                self._set_mode(attached_label(live))
            if isinstance(exc, LeaseRefused):
                why = str(exc).removesuffix("; stop it first")
                self.notify(
                    f"Attached to the running engine ({why})", severity="warning", timeout=8
                )
            else:
                self.notify(
                    f"The engine did not start: {one_line(exc)}", severity="error", timeout=10
                )
            return
        self.engine_running = True
        self.notify(f"Engine started: {', '.join(engine.servers)}", timeout=3)

    async def _engine_started(self) -> None:
        """Until a start in progress has finished (successfully or not)."""
        task = self._engine_start
        if task is not None and not task.done():
            await asyncio.wait([task])

    def _set_mode(self, label: str) -> None:
        self.mode_label = label
        self.sub_title = label

    async def stop_engine(self) -> None:
        """Stop the embedded engine; one still starting is let finish first, then stopped."""
        await self._engine_started()
        engine, self.engine = self.engine, None
        if engine is not None and self.engine_running:
            self.engine_running = False
            await engine.stop()

    async def on_unmount(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            await self.stop_engine()
        with contextlib.suppress(Exception):
            await self.data.close()

    # -- signals and a lost terminal (tui.launch calls these, from any thread) -----------
    def _soon(self, fn: Callable[[], None]) -> None:
        loop = self.event_loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.call_later, fn)

    def request_exit(self) -> None:
        """SIGTERM / SIGINT: exit normally (the terminal is restored, the engine stops)."""
        self.exit_requested = True
        self._soon(partial(self.exit, 0))

    def request_hangup(self) -> None:
        """The terminal is gone (SIGHUP, or the periodic check): see ``hangup``."""
        self._hangup_requested = True
        self._soon(self.hangup)

    def hangup(self) -> None:
        """Exit without stopping an embedded engine: ``handed_off`` keeps it for tui.launch,
        which runs it headless until its work is done. Attached: just exit."""
        self.run_worker(self._hangup(), group="hangup", exclusive=True, exit_on_error=False)

    async def _hangup(self) -> None:
        try:
            await self._engine_started()
            if self.engine is not None and self.engine_running and not self.exit_requested:
                self.handed_off = self.engine
                self.engine, self.engine_running = None, False
        finally:
            self.exit(0)

    def _check_tty(self) -> None:
        if self._watch_tty is not None and not self._watch_tty():
            if self.on_tty_lost is not None:
                self.on_tty_lost()
            else:
                self.hangup()
            return
        self.set_timer(2.0, self._check_tty)

    # -- notifications --------------------------------------------------------------------
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        message = safe_block(message)  # may quote a job or task name
        self.messages.append((message, severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def busy_say(self) -> bool:
        """True (and says so) while another request is being prepared or confirmed."""
        if self.flow_busy():
            self.notify("Another request is in progress", severity="warning", timeout=3)
            return True
        return False

    # -- navigation -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("servers", "help", "quit") and isinstance(self.screen, ModalScreen):
            return False  # a confirmation is open: answer it first
        return True

    def open_job(self, job_id: int) -> None:
        from tui.screens.detail import JobDetailScreen

        self.push_screen(JobDetailScreen(job_id))

    def action_servers(self) -> None:
        from tui.screens.servers import ServersScreen

        if not isinstance(self.screen, ServersScreen):
            self.push_screen(ServersScreen())

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if not self.busy_say():
            self.flow_quit()

    @work(group="flows")
    async def flow_quit(self) -> None:
        from tui.modals.quit import ConfirmQuit

        if self.engine is not None and self.engine_running:
            names = set(self.engine.servers)
            running: int | None
            try:
                servers = await self.data.reader.servers(time.time())
                running = sum(s.in_use for s in servers if s.name in names)
            except Exception:  # noqa: BLE001 - cannot tell: ask
                running = None
            if running != 0 and not await self.push_screen_wait(ConfirmQuit(running)):
                return
            self.notify("Stopping the engine…", timeout=5)
            await self.stop_engine()
        self.exit(0)

    def flow_busy(self) -> bool:
        return any(w.group == "flows" and not w.is_finished for w in self.workers)

    def reload_screens(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, LiveScreen):
                screen.request_reload()

    # -- control flows (workers: push_screen_wait needs one) --------------------------
    def _now(self) -> float:
        return self.clock()

    @contextlib.contextmanager
    def _reported(self, verb: str, *, nothing: bool = False) -> Iterator[None]:
        """A flow's reads and its request: a refusal or an error ends the flow with a
        notification (never a traceback: the console and its engine keep running)."""
        try:
            yield
        except control.Refused as exc:
            text = str(exc)
            self.notify(nothing_to(text, verb) if nothing else text, severity="warning")
        except Exception as exc:  # noqa: BLE001 - shown to the operator, not swallowed
            self.notify(f"Could not {verb}: {one_line(exc)}", severity="error", timeout=10)

    async def _control(self, fn: Callable[..., str], *args: Any, **kw: Any) -> str:
        """The request itself; a refusal or error propagates to ``_reported``."""
        if self.data.read_only:
            raise control.Refused("The database is read-only for you: nothing changed")
        text = await self.data.control(fn, *args, **kw)
        self.notify(text)
        self.reload_screens()
        return text

    @work(group="flows")
    async def flow_cancel(self, job_id: int) -> None:
        from tui.modals.cancel import ConfirmCancel

        with self._reported("cancel", nothing=True):
            refusal = await self.data.control(control.cancel_refusal, job_id)
            if refusal:
                self.notify(nothing_to(refusal, "cancel"), severity="warning")
                return
            job = await self.data.reader.job(job_id)
            if job is None:
                self.notify(f"Job {job_id} does not exist", severity="warning")
                return
            reason = await self.push_screen_wait(ConfirmCancel(job))
            if reason is None:
                return
            await self._control(
                control.cancel, job_id, actor=self.actor, reason=reason or None, now=self._now()
            )

    @work(group="flows")
    async def flow_abort(self, job_id: int, *, enhanced: bool) -> None:
        from tui.modals.abort import ConfirmAbort

        with self._reported("abort", nothing=True):
            plan = await self.data.control(control.abort_preview, job_id, enhanced=enhanced)
            if not await self.push_screen_wait(ConfirmAbort(plan, self._now())):
                return
            # Refused if the plan grew since the operator read it (more tasks, servers or
            # disrupted jobs): they decide on what they saw.
            await self._control(
                control.abort,
                job_id,
                actor=self.actor,
                enhanced=enhanced,
                confirmed=plan,
                now=self._now(),
            )

    @work(group="flows")
    async def flow_cancel_tree(self, job_id: int) -> None:
        from tui.modals.cancel_tree import ConfirmCancelTree

        with self._reported("cancel with children"):
            tree = await self.data.control(control.cancel_tree_preview, job_id)
            if all(skip is not None for _, skip in tree):
                # Nothing to confirm: the job's own refusal says why (its children's are
                # listed by `batchdeck cancel --with-children` and in the detail screen).
                root = nothing_to(str(tree[0][1]), "cancel")
                more = "; no job it called can be canceled either" if len(tree) > 1 else ""
                self.notify(root + more, severity="warning")
                return
            if not await self.push_screen_wait(ConfirmCancelTree(job_id, tree)):
                return
            await self._control(
                control.cancel_with_children, job_id, actor=self.actor, now=self._now()
            )

    @work(group="flows")
    async def flow_hold_release(self, job_id: int) -> None:
        with self._reported("hold or release"):
            job = await self.data.reader.job(job_id)
            if job is None:
                self.notify(f"Job {job_id} does not exist", severity="warning")
                return
            fn = control.release if job.status == "withhold" else control.hold
            await self._control(fn, job_id, actor=self.actor, now=self._now())

    @work(group="flows")
    async def flow_approval(self, job_id: int, task_id: int | None, *, approve: bool) -> None:
        from tui.modals.approval import ConfirmApproval

        with self._reported("approve" if approve else "reject", nothing=True):
            detail = await self.data.reader.job_detail(job_id, event_limit=0)
            if detail is None:
                self.notify(f"Job {job_id} does not exist", severity="warning")
                return
            waiting = [t for t in detail.tasks if waiting_approval(t)]
            task = next((t for t in waiting if t.id == task_id), None) or (
                waiting[0] if waiting else None
            )
            if task is None:
                self.notify(f"No approval task is waiting in job {job_id}", severity="warning")
                return
            if not await self.push_screen_wait(ConfirmApproval(detail.job, task, approve=approve)):
                return
            await self._control(
                control.decide_approval,
                job_id,
                task.id,
                approve=approve,
                actor=self.actor,
                now=self._now(),
            )

    # -- command palette ------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, JobKeysMixin) and not self.data.read_only:
            job_id = screen.selected_job_id()
            if job_id is not None:
                for action, title, what in (
                    ("cancel_job", f"Cancel job {job_id}", "Graceful: running tasks wind down"),
                    (
                        "abort_job",
                        f"Abort job {job_id}",
                        "Force-stop its Canceling tasks (asks first)",
                    ),
                    (
                        "enhanced_abort",
                        f"Enhanced abort of job {job_id}",
                        "Abort and restart the servers running it (asks first)",
                    ),
                    (
                        "cancel_tree",
                        f"Cancel job {job_id} with children",
                        "Cancel the job and every job it called (asks first)",
                    ),
                    (
                        "hold_release",
                        f"Hold or release job {job_id}",
                        "Hold a Waiting job, or release a held one",
                    ),
                    ("approve", f"Approve in job {job_id}", "Approve its waiting approval task"),
                    ("reject", f"Reject in job {job_id}", "Reject its waiting approval task"),
                ):
                    yield SystemCommand(title, what, partial(screen.run_action, action))
        if hasattr(screen, "action_open"):
            yield SystemCommand(
                "Open the selected job",
                "Its tasks, children and events",
                partial(screen.run_action, "open"),
            )
        for action, title, what in (
            ("filter", "Filter jobs by text", "Id, name, user or status"),
            ("status_filter", "Next status filter", "all, running, waiting, failed, ended"),
            ("sort", "Next sort order", "id, name, status, started"),
        ):
            if hasattr(screen, f"action_{action}"):
                yield SystemCommand(title, what, partial(screen.run_action, action))
        yield SystemCommand("Servers", "Slots, engines, drain deadlines", self.action_servers)
        yield SystemCommand("Help", "Every key", self.action_help)
        yield from super().get_system_commands(screen)


__all__ = ["BatchdeckApp", "attached_label", "embedded_label"]
