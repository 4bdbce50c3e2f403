"""What a flow (``engine.flows``) runs its statements on: ``Sql``, one transaction whose
statements are named by key (``engine.sql.keys``). The store gives one on SQLAlchemy
(``engine.store.db.Store.transaction``); the light path one on the checked-in text
(``engine.sql.light.LightSql``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Params = Mapping[str, Any]


class Sql(Protocol):
    """The statements of ``engine.store.flow_statements``, run by key in one transaction."""

    def rows(self, key: str, params: Params) -> list[Any]:
        """A read's rows, their columns as attributes."""
        ...

    def run(self, key: str, params: Params | Sequence[Params]) -> int:
        """A write (several parameter sets: one ``executemany``); its row count."""
        ...

    def db_now(self, fallback: float) -> float:
        """The time leases are compared in: the database's clock on PostgreSQL,
        ``fallback`` (the caller's clock, injectable in tests) on SQLite."""
        ...

    @property
    def moves_in_one(self) -> bool:
        """A move's event rows and rows in one statement (``KEY/both``): PostgreSQL."""
        ...
