"""Confirm "cancel with children": every job of the tree, and which ones are skipped."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.core.format import label
from engine.core.refusal import Refusal
from engine.core.safe_text import safe_line
from engine.core.views import JobView
from tui.modals.base import DialogList, YesNoModal
from tui.styles import status_style


def tree_lines(tree: list[tuple[JobView, Refusal | None]]) -> Text:
    depth: dict[int, int] = {}
    text = Text()
    for i, (job, skip) in enumerate(tree):
        d = depth.get(job.parent_id, -1) + 1 if job.parent_id in depth else 0
        depth[job.id] = d
        if i:
            text.append("\n")
        text.append("  " * d + ("└ " if d else "• "))
        text.append(safe_line(f"job {job.id} {job.name}") + "  ")
        text.append(label(job.status), style=status_style(job.status))
        if skip:
            text.append(f"  skipped: {skip}", style="dim")
        else:
            text.append("  → canceled", style="bold")
    return text


class ConfirmCancelTree(YesNoModal):
    def __init__(self, job_id: int, tree: list[tuple[JobView, Refusal | None]]) -> None:
        super().__init__()
        self.job_id = job_id
        self.jobs = tree

    @property
    def todo(self) -> int:
        return sum(1 for _, skip in self.jobs if skip is None)

    def compose(self) -> ComposeResult:
        n = self.todo
        with Vertical(id="dialog"):
            yield Static(
                f"Cancel job {self.job_id} and every job it called?", classes="dialog-title"
            )
            yield Static(
                f"{n} of {len(self.jobs)} job{'s' if len(self.jobs) != 1 else ''} "
                "will be canceled gracefully (running tasks wind down):"
            )
            with DialogList(classes="dialog-list"):
                yield Static(tree_lines(self.jobs))
            with Horizontal(classes="buttons"):
                yield self.yes_button(f"Yes, cancel {n} job{'s' if n != 1 else ''}")
                yield self.no_button()
