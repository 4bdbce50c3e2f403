"""Confirm an abort (or an enhanced abort): unsafe, so it lists what it stops; No is the default."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.core.format import duration, label
from engine.core.safe_text import safe_line
from engine.flows.abort import AbortPlan
from engine.flows.bulk import BulkPlan
from engine.reader.text import plan_task_line
from tui.modals.base import DialogList, YesNoModal


def abort_title(plan: AbortPlan) -> str:
    j = plan.job
    what = "Enhanced abort" if plan.enhanced else "Abort"
    if plan.cancel_first:
        return safe_line(f"Cancel and {what.lower()} job {j.id} {j.name} in one step?")
    return safe_line(f"{what} job {j.id} {j.name}?")


def abort_lines(plan: AbortPlan, now: float) -> Text:
    text = Text()
    j = plan.job
    if plan.cancel_first:
        text.append(
            f"Job {j.id} is {label(j.status)}: it will be canceled and aborted in one "
            "step. Tasks not started become Didn't run.\n"
        )
    text.append(f"Tasks force-stopped now ({len(plan.tasks)}):", style="bold")
    for t in plan.tasks:
        text.append(f"\n• {plan_task_line(t, now)}")
        if t.stops_by is not None:  # how each stops: cancel, abort or enhanced abort?
            how = safe_line(f"on cancel: {t.stops_by.cancel}; on abort: {t.stops_by.abort}")
            text.append("\n  " + how, style="dim")
    if not plan.tasks:
        text.append("\n• none running: the job is only canceled")
    if plan.enhanced:
        restart_text(text, plan)
    return text


def restart_text(text: Text, plan: AbortPlan | BulkPlan) -> None:
    """An enhanced abort's reach, one job's or the marked jobs': the servers it restarts
    and every other job they run (D365: the confirmation lists the disrupted jobs)."""
    servers = safe_line(", ".join(plan.servers)) or "none"
    text.append(f"\n\nServers that restart: {servers}", style="bold")
    text.append(
        f" (they drain first, for at most {duration(plan.drain_seconds)}; "
        "every task still on them is then force-stopped)"
    )
    text.append(f"\nOther jobs disrupted ({len(plan.disrupted)}):", style="bold")
    for d in plan.disrupted:
        text.append("\n• " + safe_line(f"job {d.id} {d.name}: {', '.join(d.tasks)}"))
    if plan.disrupted:
        text.append("\n  (their interrupted tasks go back to Ready and run again)", "dim")
    else:
        text.append("\n• none")


class ConfirmAbort(YesNoModal):
    def __init__(self, plan: AbortPlan, now: float) -> None:
        super().__init__()
        self.plan = plan
        self.now = now

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(abort_title(self.plan), classes="dialog-title")
            yield Static(
                "Aborting is unsafe: it can leave orphaned or incomplete data.", classes="warning"
            )
            with DialogList(classes="dialog-list"):
                yield Static(abort_lines(self.plan, self.now))
            with Horizontal(classes="buttons"):
                yield self.yes_button("Yes, abort", "error")
                yield self.no_button()
