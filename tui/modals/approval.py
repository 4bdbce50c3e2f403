"""Confirm approving or rejecting an approval task: both are final, so No is the default."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.core.views import JobView, TaskView
from tui.modals.base import YesNoModal


def approval_title(job: JobView, task: TaskView, approve: bool) -> str:
    verb = "Approve" if approve else "Reject"
    return f"{verb} task {task.name} of job {job.id} {job.name}?"


class ConfirmApproval(YesNoModal):
    """Yes / No for one approval task; Escape, n and the default button (No) do nothing."""

    def __init__(self, job: JobView, task: TaskView, *, approve: bool) -> None:
        super().__init__()
        self.job = job
        self.approval_task = task
        self.approve = approve

    def compose(self) -> ComposeResult:
        body = Text()
        if self.approval_task.message:
            body.append(f"{self.approval_task.message}\n", style="italic")
        if self.approve:
            body.append("The task ends and the tasks after it run. ")
        else:
            body.append("The task fails (Error) and the tasks after it do not run. ")
        body.append("This cannot be undone.")
        with Vertical(id="dialog"):
            yield Static(
                approval_title(self.job, self.approval_task, self.approve), classes="dialog-title"
            )
            yield Static(body)
            with Horizontal(classes="buttons"):
                if self.approve:
                    yield self.yes_button("Yes, approve", "success")
                else:
                    yield self.yes_button("Yes, reject", "error")
                yield self.no_button()
