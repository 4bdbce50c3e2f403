"""The built-in actions, by name."""

from __future__ import annotations

from engine.actions import aids, approval, bulk_csv, call_job, python_call, shell, wait
from engine.actions.base import Action, Param
from engine.actions.remote import HTTP_JOB, SALESFORCE_BULK

ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        wait.ACTION,
        shell.ACTION,
        bulk_csv.IMPORT_ACTION,
        bulk_csv.EXPORT_ACTION,
        call_job.ACTION,
        approval.ACTION,
        python_call.ACTION,
        SALESFORCE_BULK,
        HTTP_JOB,
        aids.FAIL,
        aids.BLOCKING_WAIT,
    )
}


def get_action(name: str) -> Action | None:
    return ACTIONS.get(name)


__all__ = ["ACTIONS", "Action", "Param", "get_action"]
