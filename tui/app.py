"""The console application: its screens, and the flows that turn a key press into a
confirmation and a control request. The embedded engine, signals and the terminal's
fate are tui.host's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual import work
from textual.app import App, SystemCommand
from textual.content import Content
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen

from engine.core.db_outage import NOTE_PREFIX
from engine.core.identity import current_actor
from engine.core.safe_text import safe_block
from tui.data import Database, one_line, owner_pid
from tui.keys import KEYS, scope_bindings
from tui.screens.base import JobKeysMixin, LiveScreen
from tui.screens.jobs import JobListScreen
from tui.styles import set_plain

# The first paint needs only the job list. Everything else (the other screens, the
# confirmations, the control and rerun requests) is imported when first used: see
# the lazy imports in the flows below, and ``_after_first_paint``.
if TYPE_CHECKING:
    from engine.core.manager_rule import Who


def attached_label(live: dict[str, list[str]]) -> str:
    """ "attached to 1 engine: host-a" from Reader.live_engines() (owner -> servers): the
    engines alive now, by host (with the pid where one host runs two)."""
    if not live:
        return NO_ENGINE
    hosts = [owner.split(":")[0] for owner in live]
    names = sorted(
        f"{host} (pid {owner_pid(owner)})" if hosts.count(host) > 1 else host
        for host, owner in zip(hosts, live, strict=True)
    )
    n = len(names)
    return f"attached to {n} engine{'s' if n != 1 else ''}: {', '.join(names)}"


NO_ENGINE = "no engine running: control requests wait for one"


def watches_engines(mode: str) -> bool:
    """Whether a header in this mode follows the engines serving the database (attached,
    or none yet): an embedded engine's is the console's own."""
    return any(w in mode for w in ("attached", "no engine running", "engine gone"))


def embedded_label(servers: Iterable[str]) -> str:
    return f"embedded engine: {', '.join(servers)}"


def read_only_label(mode: str) -> str:
    """The header of a console on a database this user may not write."""
    from engine.core.identity import os_user

    if mode.startswith("no engine running"):
        mode = "no engine running"  # "control requests wait for one": there are none here
    return f"READ-ONLY for you (user {os_user()}) · {mode}"


HEALTH_S = 1.0  # how often the header looks at the engine's health and who you are
ERROR_WIDTH = 60


def who_label(who: Who) -> str:
    """ "alice (manager)" / "bob (not a manager)": the header's user."""
    return f"{who.user} ({'manager' if who.manager else 'not a manager'})"


def header_label(
    mode: str, who: Who | None = None, gone: str | None = None, error: str | None = None
) -> str:
    """The header's words: the mode ("engine gone since ..." instead of "attached" when the
    serving engine's lease went stale), the user, and an engine error until it clears."""
    if gone is not None:
        mode = mode.replace(mode_head(mode), gone, 1)
    parts = [mode]
    if who is not None:
        parts.append(who_label(who))
    if error is not None:
        text = " ".join(error.split())
        if len(text) > ERROR_WIDTH:
            text = text[: ERROR_WIDTH - 1] + "…"
        parts.append(f"ENGINE ERROR: {text}")
    return " · ".join(parts)


HEADER_CHROME = 20  # the header's icon and its margins, around the title


def fit_header(sub_title: str, room: int, keep: str | None) -> str:
    """The header's words in ``room`` cells, ``keep`` (who you are: manager or not)
    whole: the other parts are cut instead, so that a narrow terminal still says it."""
    if len(sub_title) <= room or not keep or keep not in sub_title:
        return sub_title
    before, _, after = sub_title.partition(keep)
    left = room - len(keep)
    if left <= 1:
        return keep

    def cut(text: str, width: int) -> str:
        return text if len(text) <= width else text[: max(0, width - 1)] + "…"

    after = cut(after, max(0, left // 2) if len(before) > left // 2 else left - len(before))
    before = cut(before.removesuffix(" · "), left - len(after) - 3) + " · " if before else ""
    return before + keep + after


def mode_head(mode: str) -> str:
    """The part of a mode label saying "attached ..." (up to the next " · ")."""
    start = max(mode.find("attached"), mode.find("no engine running"))
    if start < 0:
        return mode
    end = mode.find(" · ", start)
    return mode[start:] if end < 0 else mode[start:end]


class Host(Protocol):
    """What the console asks of what runs beside it (tui.host.EngineHost)."""

    running: bool  # an embedded engine is running
    engine: Any  # the embedded engine (None: attached, or its start failed)

    @property
    def servers(self) -> list[str]: ...
    @property
    def stats(self) -> Any: ...  # the running embedded engine's EngineStats, or None
    def attach(self, console: Any) -> None: ...
    def start(self) -> None: ...
    async def stop_engine(self) -> None: ...
    async def detach(self) -> None: ...


def nothing_to(refusal: str, verb: str) -> str:
    """ "Job 42 already Ended" -> "Job 42 already Ended — nothing to cancel"."""
    if " already " in refusal and "nothing" not in refusal:
        return f"{refusal} — nothing to {verb}"
    return refusal


class BatchdeckApp(App[int]):
    """The console: screens, and the flows that turn a key into a confirmation and a
    request. What runs beside it (an embedded engine, signals, the terminal) belongs to
    ``host`` (tui.host.EngineHost, made by tui.launch); without one, the console only
    reads and writes the database."""

    TITLE = "batchdeck"
    ENABLE_COMMAND_PALETTE = True
    # Every style of the console, in one file (absolute: subclasses live elsewhere).
    CSS_PATH = Path(__file__).with_name("batchdeck.tcss")

    BINDINGS = scope_bindings("app")

    def __init__(
        self,
        db_path: str,
        *,
        mode_label: str,
        host: Host | None = None,
        clock: Callable[[], float] = time.time,
        actor: str | None = None,
        live: bool = True,
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        set_plain(self.no_color)
        self.db_path = db_path
        self.data = Database(db_path)
        self.mode_label = mode_label
        self.host = host
        self.clock = clock
        self.actor = actor or current_actor()
        self.live = live
        self.keymap = dict(keymap or {})  # binding id -> key (tui.keys), already checked
        self._stopped = False
        self.who: Who | None = None  # who you are (whoami): the header, the hidden keys
        self.engine_gone: str | None = None  # "engine gone since 12:04:31" (attached)
        self.engine_error: str | None = None  # the embedded engine's last failed batch
        # Whether any engine serves the database (None: not known yet). False: the list
        # says which Executing jobs wait for one ("Executing · no engine").
        self.engines_alive: bool | None = None
        self._errors_seen = 0
        self._error_ticks = 0
        self._started_beside = False  # after_first_list ran

    # -- lifecycle ----------------------------------------------------------------------
    def on_mount(self) -> None:
        self.set_keymap(self.keymap)
        if self.data.read_only:
            self.mode_label = read_only_label(self.mode_label)
        self.sub_title = self.mode_label
        self.push_screen(JobListScreen())
        if self.host is not None:
            self.host.attach(self)  # signals reach the console from now on
        # Only the list is needed for the first paint: the engine, the terminal watch and
        # the health checks start once it is painted (JobListScreen calls back).

    def after_first_list(self) -> None:
        """The job list's first window is painted: start what runs beside it."""
        if self._started_beside:
            return
        self._started_beside = True
        self.open_data()
        if self.host is not None:
            self.host.start()
        self.check_health()
        if self.live:
            self.set_interval(HEALTH_S, self.check_health, name="health")

    @work(group="open-data", exit_on_error=False)
    async def open_data(self) -> None:
        """The Store and the change watch: live refresh and writes need them, the first
        list does not (a failure here shows when a write or a refresh needs it)."""
        await self.data.open()

    def set_mode(self, label: str) -> None:
        self.mode_label = label
        self._show_header()

    def _show_header(self) -> None:
        self.sub_title = header_label(
            self.mode_label, self.who, self.engine_gone, self.engine_error
        )

    @work(exclusive=True, group="health", exit_on_error=False)
    async def check_health(self) -> None:
        """Who you are (the ``managers`` setting can change), an embedded engine's failed
        batch (shown until a batch succeeds), an attached engine gone: into the header."""
        from engine.flows.base import who as whoami

        try:
            who = await self.data.reading(whoami, self.actor)
        except Exception:  # noqa: BLE001 - keep what the header said
            who = self.who
        if who != self.who:
            self.who = who
            self.screen.refresh_bindings()  # keys the user may not use are hidden
        stats = self.host.stats if self.host is not None else None
        alive = self.engines_alive
        if stats is not None:
            self.engines_alive = True
            errors = list(stats.errors)
            if len(errors) > self._errors_seen:
                self._errors_seen = len(errors)
                self.engine_error = errors[-1]
                self._error_ticks = stats.ticks
            elif self.engine_error is not None and stats.ticks > self._error_ticks:
                self.engine_error = None  # a batch went through since: cleared
            if getattr(stats, "outage", None):
                self.engine_error = stats.outage  # said until the database is back
        elif watches_engines(self.mode_label) and (self.host is None or self.host.engine is None):
            try:
                await self._follow_engines()
            except Exception:  # noqa: BLE001 - the next look tries again
                pass
        self._show_header()
        if (self.engines_alive is False) != (alive is False) and isinstance(
            self.screen, LiveScreen
        ):  # Executing jobs say whether an engine is there to run them (not under a dialog)
            self.screen.request_reload()

    async def _follow_engines(self) -> None:
        """The header names the engines alive now (one dies, another starts: it follows),
        or, with none alive, since when the last one is gone."""
        now = self._now()
        servers = await self.data.reader.servers(now)
        live: dict[str, list[str]] = {}
        for s in servers:
            if s.live and s.lease_owner:
                live.setdefault(s.lease_owner, []).append(s.name)
        mode = attached_label(live)
        self.mode_label = read_only_label(mode) if self.data.read_only else mode
        self.engine_gone = None
        self.engines_alive = bool(live)
        # An engine that cannot write its database says so on its servers' rows while it
        # can (a full disk): the header says it too, until the note goes.
        outage = [s.note for s in servers if s.live and (s.note or "").startswith(NOTE_PREFIX)]
        self.engine_error = outage[0] if outage else None
        if not live:
            health = await self.data.reader.engine_health(now=now)
            self.engine_gone = health.text(now) if health.state == "gone" else None

    async def live_engines(self) -> dict[str, list[str]]:
        return await self.data.reader.live_engines(time.time())

    async def on_unmount(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.host is not None:
            with contextlib.suppress(Exception):
                await self.host.detach()
        with contextlib.suppress(Exception):
            await self.data.close()

    def format_title(self, title: str, sub_title: str) -> Content:
        """The header's line: on a narrow terminal, who you are is kept whole."""
        room = self.size.width - HEADER_CHROME - len(title) - 3
        keep = who_label(self.who) if self.who is not None else None
        return super().format_title(title, fit_header(sub_title, room, keep))

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
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def refuse_if_busy(self) -> bool:
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

    def open_logs(self, job_id: int, task_id: int | None) -> None:
        from tui.screens.logs import LogScreen

        self.push_screen(LogScreen(job_id, task_id))

    def action_servers(self) -> None:
        from tui.screens.servers import ServersScreen

        if not isinstance(self.screen, ServersScreen):
            self.push_screen(ServersScreen())

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if not self.refuse_if_busy():
            self.flow_quit()

    @work(group="flows")
    async def flow_quit(self) -> None:
        from tui.modals.quit import ConfirmQuit

        host = self.host
        if host is not None and host.running:
            names = set(host.servers)
            running: int | None
            try:
                servers = await self.data.reader.servers(time.time())
                running = sum(s.in_use for s in servers if s.name in names)
            except Exception:  # noqa: BLE001 - cannot tell: ask
                running = None
            if running != 0 and not await self.push_screen_wait(ConfirmQuit(running)):
                return
            self.notify("Stopping the engine…", timeout=5)
            await host.stop_engine()
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
        from engine.core.refusal import Refusal

        try:
            yield
        except Refusal as exc:
            text = str(exc)
            self.notify(nothing_to(text, verb) if nothing else text, severity="warning")
        except Exception as exc:  # noqa: BLE001 - shown to the operator, not swallowed
            self.notify(f"Could not {verb}: {one_line(exc)}", severity="error", timeout=10)

    def _writable(self) -> None:
        """A Refusal (``read_only``) when the database is read-only for this user."""
        from engine.core.refusal import Refusal

        if self.data.read_only:
            raise Refusal("read_only", "The database is read-only for you: nothing changed")

    async def _request(self, flow: Callable[..., str], *args: Any, **kw: Any) -> str:
        """The request itself (``Database.request``); a refusal or error propagates to
        ``_reported``."""
        self._writable()
        text = await self.data.request(flow, *args, **kw)
        self.notify(text)
        self.reload_screens()
        return text

    @work(group="flows")
    async def flow_cancel(self, job_id: int) -> None:
        from engine.flows import base as flows
        from tui.modals.cancel import ConfirmCancel

        with self._reported("cancel", nothing=True):
            preview = await self.data.reading(flows.cancel_preview, job_id)
            if preview.refusal is not None or preview.job is None:
                self.notify(nothing_to(str(preview.refusal), "cancel"), severity="warning")
                return
            reason = await self.push_screen_wait(ConfirmCancel(preview.job, preview.tasks))
            if reason is None:
                return
            await self._request(
                flows.cancel, job_id, actor=self.actor, words=reason or None, at=self._now()
            )

    @work(group="flows")
    async def flow_abort(self, job_id: int, *, enhanced: bool) -> None:
        from engine.flows import abort as abort_flow
        from tui.modals.abort import ConfirmAbort

        with self._reported("abort", nothing=True):
            plan = await self.data.reading(abort_flow.preview, job_id, enhanced=enhanced)
            if not await self.push_screen_wait(ConfirmAbort(plan, self._now())):
                return
            # Refused if the plan grew since the operator read it (more tasks, servers or
            # disrupted jobs): they decide on what they saw.
            await self._request(
                abort_flow.abort,
                job_id,
                actor=self.actor,
                enhanced=enhanced,
                confirmed=plan,
                at=self._now(),
            )

    @work(group="flows")
    async def flow_cancel_tree(self, job_id: int) -> None:
        from engine.flows import base as flows
        from tui.modals.cancel_tree import ConfirmCancelTree

        with self._reported("cancel with children"):
            tree = await self.data.reading(flows.cancel_dry_run, job_id, tree=True)
            if all(skip is not None for _, skip in tree):
                # Nothing to confirm: the job's own refusal says why (its children's are
                # listed by `batchdeck cancel --with-children` and in the detail screen).
                root = nothing_to(str(tree[0][1]), "cancel")
                more = "; no job it called can be canceled either" if len(tree) > 1 else ""
                self.notify(root + more, severity="warning")
                return
            if not await self.push_screen_wait(ConfirmCancelTree(job_id, tree)):
                return
            await self._request(flows.cancel_tree, job_id, actor=self.actor, at=self._now())

    @work(group="flows")
    async def flow_hold_release(self, job_id: int) -> None:
        from engine.flows import requests

        with self._reported("hold or release"):
            job = await self.data.reader.job(job_id)
            if job is None:
                self.notify(f"Job {job_id} does not exist", severity="warning")
                return
            flow = requests.release if job.status == "withhold" else requests.hold
            await self._request(flow, job_id, actor=self.actor, at=self._now())

    @work(group="flows")
    async def flow_approval(self, job_id: int, task_id: int | None, *, approve: bool) -> None:
        from engine.flows import requests
        from tui.modals.approval import ConfirmApproval
        from tui.screens.detail import waiting_approval

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
            await self._request(
                requests.decide_approval,
                job_id,
                task.id,
                approve=approve,
                actor=self.actor,
                at=self._now(),
            )

    @work(group="flows")
    async def flow_bulk(self, kind: str, job_ids: list[int]) -> None:
        """Cancel, abort or enhanced abort the marked jobs, through one confirmation."""
        from engine.flows import bulk
        from tui.modals.bulk import ConfirmBulk, refusal_line

        verb = {"cancel": "cancel", "abort": "abort"}.get(kind, "enhanced abort")
        with self._reported(verb):
            self._writable()
            plan = await self.data.reading(bulk.plan, kind, actor=self.actor, job_ids=job_ids)
            if not plan.act:
                why = "; ".join(refusal_line(j) for j in plan.refused[:3])
                why = why or "they no longer exist"
                self.notify(
                    f"Nothing to {verb} in the {len(job_ids)} marked: {why}", severity="warning"
                )
                return
            reason = await self.push_screen_wait(ConfirmBulk(plan))
            if reason is None:
                return
            results = await self.data.request(
                bulk.apply, plan, actor=self.actor, reason=reason or None, at=self._now()
            )
            done = sum(1 for r in results if r.done)
            refused = [r for r in results if not r.done]
            text = f"{verb.capitalize()}: {done} done, {len(refused) + len(plan.missing)} refused"
            if refused:
                text += " — " + "; ".join(r.text for r in refused[:3])
                if len(refused) > 3:
                    text += f"; and {len(refused) - 3} more"
            self.notify(text, severity="warning" if refused else "information", timeout=8)
            for screen in self.screen_stack:
                if isinstance(screen, JobListScreen):
                    screen.clear_marks()
            self.reload_screens()

    @work(group="flows")
    async def flow_rerun(self, job_id: int) -> None:
        from engine.flows import rerun
        from tui.modals.rerun import ConfirmRerun

        with self._reported("rerun"):
            self._writable()
            plan = await self.data.reading(rerun.preview, job_id)
            if not await self.push_screen_wait(ConfirmRerun(plan)):
                return
            new_id = await self.data.request(rerun.rerun, job_id, actor=self.actor, at=self._now())
            self.notify(f"Job {new_id} submitted: rerun of job {job_id}")
            self.reload_screens()

    # -- command palette ------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The registry's keys that work here (tui.keys), then Textual's own commands."""
        job_id = screen.selected_job_id() if isinstance(screen, JobKeysMixin) else None
        for key in KEYS:
            if key.palette is None:
                continue
            if key.scope == "job":
                allowed = screen.check_action(key.action.split("(")[0], (key.id,))
                if job_id is not None and allowed:
                    title = key.palette.format(job=job_id)
                    yield SystemCommand(title, key.help, partial(screen.run_action, key.action))
            elif key.scope == "app":
                yield SystemCommand(key.palette, key.help, partial(self.run_action, key.action))
            elif hasattr(screen, f"action_{key.action}"):
                yield SystemCommand(key.palette, key.help, partial(screen.run_action, key.action))
        yield from super().get_system_commands(screen)


__all__ = ["BatchdeckApp", "attached_label", "embedded_label"]
