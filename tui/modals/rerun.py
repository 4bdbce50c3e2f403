"""Confirm a rerun: which tasks are carried over (they Ended) and which run again."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.core.format import label
from engine.core.safe_text import safe_line
from engine.flows.rerun import RerunPlan
from tui.modals.base import DialogList, YesNoModal


def rerun_lines(plan: RerunPlan) -> Text:
    text = Text()
    text.append(f"Run again ({len(plan.rerun)}):", style="bold")
    for name in plan.rerun:
        text.append("\n• " + safe_line(name))
    text.append(f"\nCarried over as Ended, not run again ({len(plan.carried)}):", style="bold")
    for name in plan.carried:
        text.append("\n• " + safe_line(name))
    if not plan.carried:
        text.append("\n• none")
    return text


class ConfirmRerun(YesNoModal):
    def __init__(self, plan: RerunPlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        p = self.plan
        with Vertical(id="dialog"):
            yield Static(
                safe_line(f"Rerun job {p.job_id} {p.name} ({label(p.status)})?"),
                classes="dialog-title",
            )
            yield Static(
                "A new job is submitted from the recipe as it was when this one was submitted."
            )
            with DialogList(classes="dialog-list"):
                yield Static(rerun_lines(p))
            with Horizontal(classes="buttons"):
                yield self.yes_button("Yes, rerun", "primary")
                yield self.no_button()
