"""The SQLModel tables as SQLAlchemy Core tables: what every statement is built from.

``engine.store.models`` declares them once; statements name their columns through these
(``task.c.status``), so a renamed or moved column fails loudly where it is used.
"""

from __future__ import annotations

from sqlalchemy import Table

from engine.store.models import Event, Job, JobRecipe, Meta, Server, Task, TaskDep, TaskLog

job: Table = Job.__table__  # type: ignore[assignment]
job_recipe: Table = JobRecipe.__table__  # type: ignore[assignment]
task: Table = Task.__table__  # type: ignore[assignment]
taskdep: Table = TaskDep.__table__  # type: ignore[assignment]
server: Table = Server.__table__  # type: ignore[assignment]
event: Table = Event.__table__  # type: ignore[assignment]
meta: Table = Meta.__table__  # type: ignore[assignment]
task_log: Table = TaskLog.__table__  # type: ignore[assignment]
