"""Plain-text renderings for the command line (the console draws its own widgets).

Every value that comes from a recipe or a task (names, messages, reasons, users) goes
through ``safe_line``: nothing in it reaches the terminal as a control character, and a
newline cannot break a table row."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.core.format import clock, duration, label, progress, stamp
from engine.core.safe_text import safe_line
from engine.core.views import EventView, JobDetail, JobView, TaskView

if TYPE_CHECKING:  # the plans' types only: list and show never load the write path
    from engine.flows.abort import AbortPlan
    from engine.flows.bulk import BulkPlan


# A name wider than this is cut with "…" in a table, as the console cuts it: one long
# name must not make every row hundreds of columns wide.
NAME_MAX_CELLS = 40


def _cells(text: str) -> int:
    """Display width: ``len`` for ASCII (rich's tables cost ~15 ms to import, so a
    plain listing never loads them)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _fit(text: str, most: int) -> str:
    if _cells(text) <= most:
        return text
    if text.isascii():
        return text[: most - 1] + "…"
    from rich.cells import set_cell_size

    return set_cell_size(text, most - 1) + "…"


def _table(header: list[str], rows: list[list[str]], *, cut: dict[str, int] | None = None) -> str:
    """Columns padded by display width (a CJK character or an emoji takes two cells),
    those named in ``cut`` cut to that many cells with "…"."""
    rows = [[safe_line(c) for c in r] for r in rows]
    for i, h in enumerate(header):
        if cut and h in cut:
            for r in rows:
                r[i] = _fit(r[i], cut[h])
    cells = [[_cells(c) for c in r] for r in rows]
    widths = [max([len(h), *(c[i] for c in cells)]) for i, h in enumerate(header)]

    def line(row: list[str], lens: list[int]) -> str:
        return "  ".join(c + " " * (w - n) for c, n, w in zip(row, lens, widths, strict=True))

    lines = [line(header, [len(h) for h in header]).rstrip()]
    lines += [line(r, c).rstrip() for r, c in zip(rows, cells, strict=True)]
    return "\n".join(lines)


def job_progress(job: JobView) -> str:
    return f"{job.tasks_done}/{job.tasks_total}" if job.tasks_total else ""


def job_table(jobs: list[JobView], now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not jobs:
        return "no jobs"
    return _table(
        ["ID", "STATUS", "NAME", "TASKS", "SERVERS", "STARTED", "DURATION", "BY"],
        [
            [
                str(j.id),
                label(j.status)
                + (" (system)" if j.system else "")
                + (" STUCK" if j.stuck_for is not None else ""),
                j.name,
                job_progress(j),
                ",".join(j.servers),
                clock(j.started_at, now),
                duration(j.duration(now)),
                j.submitted_by,
            ]
            for j in jobs
        ],
        cut={"NAME": NAME_MAX_CELLS},
    )


def job_detail_text(d: JobDetail, now: float | None = None, banner: str | None = None) -> str:
    """``banner``: the stuck banner (``Reader.stuck_job``), shown first when given."""
    now = time.time() if now is None else now
    j = d.job
    fields = [("Stuck", banner)] if banner else []
    fields += [
        ("Job", f"{j.id} {j.name}" + (" (system)" if j.system else "")),
        ("Status", label(j.status)),
        ("Submitted", f"{stamp(j.submitted_at)} by {j.submitted_by}"),
        ("Started", stamp(j.started_at)),
        ("Ended", stamp(j.ended_at)),
        ("Duration", duration(j.duration(now))),
    ]
    if j.rerun_of:
        fields.append(("Rerun of", f"job {j.rerun_of}"))
    if j.parent_id:
        fields.append(
            ("Parent", f"job {j.parent_id} ({j.call_mode})" + (" - orphaned" if j.orphaned else ""))
        )
    if j.cancel_reason:
        fields += [
            ("Reason for cancel", j.cancel_reason),
            ("Canceled", f"{stamp(j.canceled_at)} by {j.canceled_by}"),
        ]
    if j.aborted_by:
        fields.append(("Aborted", f"{stamp(j.aborted_at)} by {j.aborted_by}"))
    if j.error:
        fields.append(("Error", j.error))
    out = [f"{k + ':':<19}{safe_line(v)}" for k, v in fields]
    # How a cancel stops each running task: only when some task is running.
    stops = any(t.stops_by for t in d.tasks)
    header = ["TASK", "STATUS", "SERVER", "TRY", "PROGRESS", "STARTED", "DURATION"]
    header += ["ON CANCEL", "MESSAGE"] if stops else ["MESSAGE"]
    rows = []
    for t in d.tasks:
        row = [
            t.name,
            label(t.status),
            t.server or "-",
            f"{t.attempt}/{t.max_attempts}",  # as the console's Try column
            progress(t.progress_done, t.progress_total, t.progress_unit),
            clock(t.started_at, now),
            duration(t.duration(now)),
        ]
        if stops:
            row.append(t.stops_by.cancel if t.stops_by else "")
        rows.append([*row, t.error or t.message or ""])
    out += ["", _table(header, rows)]
    if d.children:
        out += ["", "Children:"] + [
            safe_line(
                f"  {c.id} {c.name} {label(c.status)} ({c.call_mode})"
                + (" orphaned" if c.orphaned else "")
            )
            for c in d.children
        ]
    if d.events:
        names = {t.id: t.name for t in d.tasks}
        out += ["", "Events:"] + [f"  {stamp(e.at)}  {event_text(e, names)}" for e in d.events]
    return "\n".join(out)


def event_text(e: EventView, task_names: dict[int, str]) -> str:
    """One line of the audit log: who, what moved, why."""
    what = (
        f"task {task_names.get(e.task_id, e.task_id)}"
        if e.task_id
        else (f"server {e.server}" if e.kind == "server" else "job")
    )
    move = f" {label(e.from_status or '')} -> {label(e.to_status or '')}" if e.to_status else ""
    why = f": {e.reason}" if e.reason else ""
    return safe_line(f"{e.actor}: {what}{move}{why}")


def plan_task_line(t: TaskView, now: float) -> str:
    running = duration(now - t.started_at) if t.started_at else "-"
    prog = progress(t.progress_done, t.progress_total, t.progress_unit) or "no progress reported"
    return safe_line(f"{t.name} on {t.server or '-'}, running {running}, {prog}")


def abort_plan_text(plan: AbortPlan, now: float | None = None) -> str:
    now = time.time() if now is None else now
    kind = "Enhanced abort" if plan.enhanced else "Abort"
    lines = [
        f"{kind} of job {plan.job.id} {plan.job.name} ({label(plan.job.status)})",
        "Aborting is unsafe: it can leave orphaned or incomplete data.",
    ]
    if plan.cancel_first:
        lines.append(
            "The job is Executing: it will be canceled first (not-started tasks become Didn't run)."
        )
    lines.append(f"Tasks to force-stop ({len(plan.tasks)}):")
    lines += [
        f"  {plan_task_line(t, now)}" + (f"; on cancel: {t.stops_by.cancel}" if t.stops_by else "")
        for t in plan.tasks
    ] or ["  (none)"]
    walled = [t.name for t in plan.tasks if t.stops_by and t.stops_by.key == "restart"]
    if walled and not plan.enhanced:
        lines.append(
            f"In an unmanaged wait: {', '.join(walled)}: an abort leaves them Aborting until "
            "the wait returns; only an enhanced abort (server restart) stops them now."
        )
    if plan.enhanced:
        lines += restart_lines(plan)
    return "\n".join(safe_line(line) for line in lines)


def restart_lines(plan: AbortPlan | BulkPlan) -> list[str]:
    """An enhanced abort's reach, one job's or many's: the servers it restarts and every
    other job they run (D365: its confirmation lists the disrupted jobs)."""
    lines = [
        f"Servers to restart: {', '.join(plan.servers) or '(none)'} "
        f"(drain up to {duration(plan.drain_seconds)})",
        f"Other jobs disrupted ({len(plan.disrupted)}):",
    ]
    lines += [f"  job {d.id} {d.name}: {', '.join(d.tasks)}" for d in plan.disrupted] or [
        "  (none)"
    ]
    return lines


def _aligned(rows: list[list[str]]) -> list[str]:
    """Plan lines, indented, each cell but a row's last padded to its column's widest."""
    rows = [[safe_line(c) for c in r] for r in rows]
    width = max((len(r) for r in rows), default=0)
    widths = [max((len(r[i]) for r in rows if len(r) > i + 1), default=0) for i in range(width)]
    return [
        "  " + "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)), r[-1]])
        for r in rows
    ]


def bulk_plan_text(plan: BulkPlan) -> str:
    """The plan of ``cancel --all`` / ``abort --all``: each job acted on, each refused."""
    verb = {"cancel": "Cancel", "abort": "Abort", "enhanced_abort": "Enhanced abort"}[plan.kind]
    act, refused = plan.act, plan.refused
    counts = ", ".join(f"{n} {label(s)}" for s, n in sorted(plan.counts().items()))
    lines = [
        f"{verb}: {len(act)} job{'s' if len(act) != 1 else ''}" + (f" ({counts})" if counts else "")
    ]
    rows = []
    for item in act:
        j = item.job
        row = [str(j.id), j.name, label(j.status), f"by {j.submitted_by or '-'}"]
        if item.abort is not None:
            n = len(item.abort.tasks)
            first = ", canceled first" if item.abort.cancel_first else ""
            row.append(f"({n} task{'s' if n != 1 else ''} to force-stop{first})")
        rows.append(row)
    gone = [[str(i.job.id), i.job.name, label(i.job.status) + ":", str(i.refusal)] for i in refused]
    aligned = _aligned(rows + gone)
    lines += aligned[: len(rows)]
    if plan.kind == "enhanced_abort":
        lines += restart_lines(plan)
    if plan.kind != "cancel":
        lines.append("Aborting is unsafe: it can leave orphaned or incomplete data.")
    lines.append(f"Refused: {len(refused)} job{'s' if len(refused) != 1 else ''}")
    lines += aligned[len(rows) :]
    lines += [f"  {m}: does not exist" for m in plan.missing]
    return "\n".join(safe_line(line) for line in lines)
