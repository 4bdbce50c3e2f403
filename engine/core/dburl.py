"""What ``--db`` and ``BATCHDECK_DB`` name: a SQLite file or a PostgreSQL server.

Accepted, as people write them: a file path (``./batchdeck.db``), ``sqlite:///path``
(``sqlite:////abs/path`` for an absolute one), and libpq-style
``postgresql://user:pass@host:5432/db`` (``postgres://`` too, query parameters such as
``sslmode`` or ``host=/socket/dir`` kept). Light on purpose: the command line parses
this before it decides whether it needs the database layer at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class DbTarget:
    kind: str  # "sqlite" or "postgresql"
    path: str | None  # the file, for SQLite
    url: str  # the libpq URL as given, for PostgreSQL; the path for SQLite

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    def sqlalchemy_url(self, *, async_: bool = False) -> str:
        """The URL SQLAlchemy takes, with the driver named (psycopg 3 for both)."""
        if self.is_sqlite:
            return f"sqlite+aiosqlite:///{self.path}" if async_ else f"sqlite:///{self.path}"
        parts = urlsplit(self.url)
        return urlunsplit(("postgresql+psycopg",) + tuple(parts[1:]))

    def identity(self) -> str:
        """Which database this is, password left out: the file's real path, or
        ``user@host:port/db`` (with the query, which may name a socket directory)."""
        if self.is_sqlite:
            return os.path.realpath(str(self.path))
        parts = urlsplit(self.url)
        host = (parts.hostname or "").lower()
        return f"{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}?{parts.query}"

    def display(self) -> str:
        """For messages: the path, or the URL without its password."""
        if self.is_sqlite:
            return str(self.path)
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit((parts.scheme, netloc, *parts[2:]))


def parse_db(text: str) -> DbTarget:
    """``text`` as a database target (see the module's doc)."""
    text = str(text)
    if text.startswith(SQLITE_PREFIX):
        path = text[len(SQLITE_PREFIX) :]
        if not path:
            raise ValueError(f"{text}: no file named after sqlite:///")
        return DbTarget("sqlite", path, path)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in POSTGRES_SCHEMES:
        return DbTarget("postgresql", None, text)
    if scheme:
        raise ValueError(
            f"{scheme}://: not a database batchdeck knows (a file path, sqlite:///PATH "
            "or postgresql://USER:PASS@HOST:PORT/DB)"
        )
    return DbTarget("sqlite", text, text)
