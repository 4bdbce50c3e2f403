"""Bringing a database of an older schema version up to this one, in the transaction
that opens it for writing. Read-only opens never change a database: they refuse it
with the version found and how to upgrade it (``engine.store.db``)."""

from __future__ import annotations

from sqlalchemy import Connection, column, insert, inspect, select, table, update

from engine.store.tables import job_recipe, meta, task, task_log

# What version 2 had and 3 no longer declares: the recipe in the job's own row.
_JOB_V2 = table("job", column("id"), column("recipe_json"))


def _from_2(conn: Connection) -> None:
    job_recipe.create(conn, checkfirst=True)
    conn.execute(
        insert(job_recipe).from_select(
            ["job_id", "recipe_json"],
            select(_JOB_V2.c.id, _JOB_V2.c.recipe_json).where(_JOB_V2.c.recipe_json.is_not(None)),
        )
    )
    # The column stays (SQLite cannot drop it everywhere); emptied, it costs nothing.
    conn.execute(update(_JOB_V2).where(_JOB_V2.c.recipe_json.is_not(None)).values(recipe_json=None))


def _replace_task_index(conn: Connection, old: str, *new: str) -> None:
    """Drop the task index ``old`` and create the ``new`` ones as ``engine.store.models``
    declares them."""
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {old}")
    for index in task.indexes:
        if index.name in new:
            index.create(conn, checkfirst=True)


def _from_3(conn: Connection) -> None:
    # Version 3 indexed every task by (server, status), those without a server too.
    _replace_task_index(conn, "ix_task_server_status", "ix_task_on_server")


def _from_4(conn: Connection) -> None:
    # Version 4 indexed every task by (status, id), the ended ones too.
    _replace_task_index(conn, "ix_task_status_id", "ix_task_ready", "ix_task_stopping")


def _from_5(conn: Connection) -> None:
    # Version 6 records a remote long action's job on its task; older rows have none.
    if "remote_job" not in {c["name"] for c in inspect(conn).get_columns("task")}:
        conn.exec_driver_sql("ALTER TABLE task ADD COLUMN remote_job VARCHAR")


def _from_6(conn: Connection) -> None:
    # Version 6 indexed Ready tasks by (status, id) on PostgreSQL too, where the planner,
    # its statistics behind a running job, walked the primary key instead (see
    # engine.models). SQLite keeps its index as it was.
    if conn.dialect.name == "postgresql":
        _replace_task_index(conn, "ix_task_ready", "ix_task_ready_by_id")


def _from_7(conn: Connection) -> None:
    # Only a new table and its indexes: no row of an older table changes.
    task_log.create(conn, checkfirst=True)


UPGRADES = {
    "2": _from_2,
    "3": _from_3,
    "4": _from_4,
    "5": _from_5,
    "6": _from_6,
    "7": _from_7,
}


def upgrade(conn: Connection, found: str, to: int) -> bool:
    """Upgrade from version ``found`` step by step; False if there is no way from it."""
    version = found
    while version != str(to):
        step = UPGRADES.get(version)
        if step is None:
            return False
        step(conn)
        version = str(int(version) + 1)
    conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=version))
    return True
