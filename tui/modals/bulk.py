"""Confirm a cancel, abort or enhanced abort of the marked jobs: one dialog listing the
jobs acted on (with counts by status) and the ones refused. Above 20 jobs the operator
types the number of jobs before OK works; an enhanced abort (it restarts servers) asks
for it from two jobs. Cancel (the No button) has the focus first."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from engine.core.format import label
from engine.core.safe_text import safe_line
from engine.flows.bulk import BulkJob, BulkPlan
from tui.modals.abort import restart_text
from tui.modals.base import Dialog, DialogList

TYPED_ABOVE = 20  # more jobs than this: type their number to confirm
VERBS = {"cancel": "Cancel", "abort": "Abort", "enhanced_abort": "Enhanced abort"}


def typed_needed(kind: str, jobs: int) -> bool:
    """The riskiest bulk action asks for the most: an enhanced abort restarts servers,
    so it asks for the typed count from two jobs; cancel and abort above 20."""
    if kind == "enhanced_abort":
        return jobs > 1
    return jobs > TYPED_ABOVE


def typed_why(kind: str) -> str:
    if kind == "enhanced_abort":
        return (
            "An enhanced abort restarts servers, the riskiest bulk action: "
            "type the number of jobs to confirm."
        )
    return f"More than {TYPED_ABOVE} jobs: type the number of jobs to confirm."


def refusal_line(item: BulkJob) -> str:
    """A refused job's line, naming the job once: "Job 6 maintenance: System jobs ..."."""
    why = str(item.refusal)
    if why.startswith(f"Job {item.job.id}"):
        return why
    return f"Job {item.job.id} {item.job.name}: {why}"


def bulk_title(plan: BulkPlan) -> str:
    n = len(plan.act)
    return f"{VERBS[plan.kind]} {n} marked job{'s' if n != 1 else ''}?"


def yes_label(plan: BulkPlan) -> str:
    """ "Cancel 3 jobs", "Enhanced abort 1 job": what the button does."""
    n = len(plan.act)
    return f"{VERBS[plan.kind]} {n} job{'s' if n != 1 else ''}"


def counts_line(plan: BulkPlan) -> str:
    counts = plan.counts()
    parts = [f"{label(status)} {n}" for status, n in sorted(counts.items())]
    refused = len(plan.refused) + len(plan.missing)
    if refused:
        parts.append(f"refused {refused}")
    return " · ".join(parts) if parts else "nothing to act on"


def bulk_lines(plan: BulkPlan) -> Text:
    text = Text()
    verb = VERBS[plan.kind].lower()
    text.append(f"Jobs to {verb} ({len(plan.act)}):", style="bold")
    for item in plan.act:
        j = item.job
        line = f"{j.id} {j.name} ({label(j.status)})"
        if item.abort is not None and item.abort.tasks:
            stops = [
                f"{t.name}: {t.stops_by.cancel}" if t.stops_by else t.name for t in item.abort.tasks
            ]
            line += " — " + "; ".join(stops)
        text.append("\n• " + safe_line(line))
    if not plan.act:
        text.append("\n• none")
    if plan.kind == "enhanced_abort" and plan.act:
        restart_text(text, plan)
    if plan.refused or plan.missing:
        text.append(f"\n\nRefused ({len(plan.refused) + len(plan.missing)}):", style="bold")
        for item in plan.refused:
            text.append("\n• " + safe_line(refusal_line(item)))
        for job_id in plan.missing:
            text.append(f"\n• Job {job_id} does not exist")
    return text


class ConfirmBulk(Dialog[str | None]):
    """Dismisses with the reason typed for a cancel ("" for none, and for an abort), or
    None: nothing is done. The buttons say what they do, as the one-job dialog's:
    "Cancel 3 jobs" / "Back"."""

    BINDINGS = [Binding("escape", "back", "Back")]
    AUTO_FOCUS = "#no"

    def __init__(self, plan: BulkPlan) -> None:
        super().__init__()
        self.plan = plan
        self.typed = typed_needed(plan.kind, len(plan.act))

    def compose(self) -> ComposeResult:
        plan = self.plan
        live = bool(getattr(self.app, "live", True))
        with Vertical(id="dialog"):
            yield Static(bulk_title(plan), classes="dialog-title")
            yield Static(counts_line(plan), id="bulk-counts")
            if plan.kind != "cancel":
                yield Static(
                    "Aborting is unsafe: it can leave orphaned or incomplete data.",
                    classes="warning",
                )
            with DialogList(classes="dialog-list"):
                yield Static(bulk_lines(plan))
            if plan.kind == "cancel" and plan.act:
                actor = str(getattr(self.app, "actor", "you"))
                yield Static(f"Reason for cancel: “Job canceled by {actor}” followed by:")
                reason = Input(placeholder="Reason (optional)", id="reason")
                reason.cursor_blink = live
                yield reason
            if self.typed:
                yield Static(typed_why(plan.kind), classes="warning", id="typed-why")
                box = Input(placeholder=f"type {len(plan.act)}", id="count")
                box.cursor_blink = live
                yield box
            with Horizontal(classes="buttons"):
                yield Button(
                    yes_label(plan),
                    variant="error",
                    id="yes",
                    disabled=self.typed or not plan.act,
                )
                yield Button("Back", variant="primary", id="no")

    def _reason(self) -> str:
        boxes = self.query("#reason").results(Input)
        return next((b.value.strip() for b in boxes), "")

    @on(Input.Changed, "#count")
    def _typed(self, event: Input.Changed) -> None:
        ok = event.value.strip() == str(len(self.plan.act)) and bool(self.plan.act)
        self.query_one("#yes", Button).disabled = not ok

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.query_one("#yes", Button).disabled:
            self.dismiss(self._reason())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self._reason() if event.button.id == "yes" else None)

    def action_back(self) -> None:
        self.dismiss(None)
