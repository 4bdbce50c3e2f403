"""The read statements of ``engine.reader.reader.Reader``, built from the tables: their one source.

Each is named, and a name with options (a filter's shape, a sort column) has one
statement per variant (``engine.sql.light.variant_key``). Values are named bound
parameters, never part of the text, so the text of every variant can be rendered once
per dialect and cached (``engine.sql.light``); the PostgreSQL reader executes these
statements themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from itertools import product
from typing import Any

from sqlalchemy import Select, String, bindparam, case, func, over, select

from engine.core.statuses import TASK_RUNNING
from engine.core.views import EventView, JobView, ServerView, TaskView
from engine.sql.keys import SORTS, TEXT_KINDS, variant_key
from engine.store.dialect import LikeCI, distinct_list, equals_any, in_list
from engine.store.models import STOPPING_STATUSES
from engine.store.tables import event as event_t
from engine.store.tables import job as job_t
from engine.store.tables import meta as meta_t
from engine.store.tables import server as server_t
from engine.store.tables import task as task_t

SORT_COLUMNS = {
    "id": job_t.c.id,
    "name": job_t.c.name,
    "status": job_t.c.status,
    "started": job_t.c.started_at,
    "submitted_by": job_t.c.submitted_by,
}
assert tuple(SORT_COLUMNS) == SORTS


def _columns(view: type, table: Any) -> list[Any]:
    """The table's columns a view takes, by the view's field names: a view field that
    names a column is read from it, so columns can move without breaking a view."""
    return [table.c[f.name] for f in fields(view) if f.name in table.c]


JOB_COLS = _columns(JobView, job_t)
TASK_COLS = _columns(TaskView, task_t)
EVENT_COLS = _columns(EventView, event_t)
SERVER_COLS = _columns(ServerView, server_t)
_JOBS = select(*JOB_COLS)


def _ids(column: Any, name: str = "ids") -> Any:
    return in_list(column, name)


def _stopping_event(e: Any) -> Any:
    # Rendered with its values inline: SQLite uses the partial index only when the
    # query's terms match the index's own predicate, which bound parameters cannot.
    return e.c.to_status.in_(
        bindparam("stopping", list(STOPPING_STATUSES), expanding=True, literal_execute=True)
    )


def _stopping_tasks() -> Select:
    """Tasks winding down, with since when: the first event that put each into Canceling
    or Aborting (``since``) and the one that put it into its current status. Both
    lookups use the partial index ix_event_stopping, so the cost follows the number of
    tasks winding down, not the size of the database."""
    e1, e2 = event_t.alias("e1"), event_t.alias("e2")
    return select(
        task_t.c.job_id,
        task_t.c.id,
        task_t.c.name,
        task_t.c.action,
        task_t.c.params,
        task_t.c.status,
        task_t.c.server,
        task_t.c.started_at,
        select(func.min(e1.c.at))
        .where(e1.c.task_id == task_t.c.id, _stopping_event(e1))
        .scalar_subquery()
        .label("since"),
        select(func.max(e2.c.at))
        .where(e2.c.task_id == task_t.c.id, _stopping_event(e2), e2.c.to_status == task_t.c.status)
        .scalar_subquery()
        .label("status_since"),
    ).where(equals_any(task_t.c.status, STOPPING_STATUSES))  # ix_task_stopping


def _filtered(stmt: Select, text: str, statuses: bool) -> Select:
    """The list's filter: ``statuses`` (bound as ``statuses``), and a text typed by the
    operator: ``digits`` (``text_id`` or ``pattern``), ``words`` (``pattern`` and
    ``prefix``) or ``none``."""
    if statuses:
        stmt = stmt.where(in_list(job_t.c.status, "statuses"))
    if text == "digits":
        pattern = bindparam("pattern", type_=String())
        stmt = stmt.where((job_t.c.id == bindparam("text_id")) | LikeCI(job_t.c.name, pattern))
    elif text == "words":
        pattern = bindparam("pattern", type_=String())
        stmt = stmt.where(
            LikeCI(job_t.c.name, pattern)
            | LikeCI(job_t.c.submitted_by, pattern)
            | LikeCI(job_t.c.status, bindparam("prefix", type_=String()))
        )
    return stmt


def _order(sort: str, descending: bool) -> tuple[Any, Any]:
    order = SORT_COLUMNS[sort]
    if descending:
        return order.desc(), job_t.c.id.desc()
    return order.asc(), job_t.c.id.asc()


def _in_use() -> Any:
    return (
        select(func.count())
        .where(
            task_t.c.server == server_t.c.name,
            task_t.c.status.in_(["executing", "canceling", "aborting"]),
        )
        .scalar_subquery()
        .label("in_use")
    )


def _fixed() -> dict[str, Select]:
    """The statements with no variants."""
    return {
        "schema_version": select(meta_t.c.value).where(meta_t.c.key == "schema_version"),
        "setting": select(meta_t.c.value).where(meta_t.c.key == bindparam("key")),
        "aggregates": select(
            task_t.c.job_id,
            func.count().label("total"),
            # Done is what Ended: a canceled job's Didn't run tasks are work not done.
            func.sum(case((task_t.c.status == "ended", 1), else_=0)).label("done"),
            func.sum(case((task_t.c.status == "didnt_run", 1), else_=0)).label("didnt_run"),
            func.sum(case((task_t.c.status.in_(sorted(TASK_RUNNING)), 1), else_=0)).label(
                "running"
            ),
            distinct_list(task_t.c.server).label("servers"),
        )
        .where(_ids(task_t.c.job_id))
        .group_by(task_t.c.job_id),
        "stopping_tasks": _stopping_tasks(),
        "stopping_tasks_of": _stopping_tasks().where(_ids(task_t.c.job_id)),
        "recipe_paths": select(job_t.c.id, job_t.c.recipe_path).where(_ids(job_t.c.id)),
        "restarts": select(
            server_t.c.name,
            server_t.c.status,
            server_t.c.drain_deadline,
            server_t.c.restart_job_id,
        ).where(
            in_list(server_t.c.restart_job_id, "ids"),
            server_t.c.status.in_(["draining", "restarting"]),
        ),
        "jobs_by_ids": _JOBS.where(_ids(job_t.c.id)).order_by(job_t.c.id.desc()),
        "leases": select(server_t.c.name, server_t.c.lease_owner, server_t.c.heartbeat_at)
        .where(server_t.c.lease_owner.is_not(None))
        .order_by(server_t.c.name),
        "leases_of": select(server_t.c.name, server_t.c.lease_owner, server_t.c.heartbeat_at)
        .where(server_t.c.lease_owner.is_not(None))
        .where(server_t.c.lease_owner == bindparam("owner"))
        .order_by(server_t.c.name),
        "status_counts": select(job_t.c.status, func.count().label("n")).group_by(job_t.c.status),
        "job": _JOBS.where(job_t.c.id == bindparam("job_id")),
        "job_tasks": select(*TASK_COLS, task_t.c.params)
        .where(task_t.c.job_id == bindparam("job_id"))
        .order_by(task_t.c.seq, task_t.c.id),
        "job_children": _JOBS.where(job_t.c.parent_id == bindparam("job_id")).order_by(job_t.c.id),
        "job_events": select(*EVENT_COLS)
        .where(event_t.c.job_id == bindparam("job_id"))
        .order_by(event_t.c.id.desc())
        .limit(bindparam("limit")),
        "servers": select(*SERVER_COLS, _in_use()).order_by(server_t.c.name),
    }


def _filtered_variants() -> Iterator[tuple[str, dict[str, Any], Select]]:
    for text, statuses in product(TEXT_KINDS, (False, True)):
        f = {"text": text, "statuses": statuses}
        count = select(func.count().label("n")).select_from(job_t)
        yield "count_jobs", f, _filtered(count, text, statuses)
        yield "job_ids", f, _filtered(select(job_t.c.id).select_from(job_t), text, statuses)
        for sort, descending in product(SORTS, (False, True)):
            v = {**f, "sort": sort, "descending": descending}
            keys = _order(sort, descending)
            page = _filtered(_JOBS, text, statuses).order_by(*keys)
            yield (
                "list_jobs",
                v,
                page.limit(bindparam("limit")).offset(bindparam("offset")),
            )
            numbered = _filtered(
                select(job_t.c.id, over(func.row_number(), order_by=keys).label("rn")),
                text,
                statuses,
            ).subquery()
            yield (
                "job_position",
                v,
                select(numbered.c.rn).where(numbered.c.id == bindparam("job_id")),
            )


@cache
def statements() -> dict[str, Select]:
    """Every read statement, by ``variant_key``: built once per process."""
    out = dict(_fixed())
    for name, variant, stmt in _filtered_variants():
        out[variant_key(name, **variant)] = stmt
    return out
