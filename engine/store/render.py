"""Writes the statements' SQL text into the tree: ``engine/sql/rendered/<dialect>.json``.

``python -m engine.store.render`` renders every read (``engine.store.read_statements``) and
every flow statement (``engine.store.flow_statements``) for SQLite and PostgreSQL and
writes the files; ``--check`` writes nothing and exits 1 if a file differs from what the
statements render to now. Run it after changing a statement, a table or a dialect
construct, and commit the files with the change: the diff shows the SQL that changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sqlalchemy.dialects import postgresql, sqlite

from engine.sql.keys import FLOW
from engine.sql.text import RENDERED_DIR, Rendered, SqlText
from engine.store import flow_statements, read_statements
from engine.store.dialect import GlobPattern
from engine.store.models import SCHEMA_VERSION
from engine.store.prepared import CompiledText

DIALECTS = ("sqlite", "postgresql")


def render(dialect: str = "sqlite") -> Rendered:
    """Every read and flow statement compiled for ``dialect`` (``sqlite`` or ``postgresql``).
    Raises TypeError for a statement whose parameter needs a conversion the text cannot say."""
    if dialect == "sqlite":
        d = sqlite.dialect(paramstyle="named")
    elif dialect == "postgresql":
        d = postgresql.psycopg.dialect()  # pyformat, as psycopg takes it
    else:
        raise ValueError(f"no rendered text for {dialect}")
    pg = dialect == "postgresql"
    out: dict[str, SqlText] = {}
    every = {
        **read_statements.statements(),
        **{FLOW + k: s for k, s in flow_statements.statements().items()},
    }
    for key, stmt in every.items():
        c = CompiledText(stmt, d)
        regex: tuple[str, ...] = ()
        if pg and c.processors:  # a shell pattern is matched as a regex there
            binds = stmt.compile(dialect=d).binds
            regex = tuple(n for n in c.processors if isinstance(binds[n].type, GlobPattern))
        for name in c.processors:
            if name not in (*c.lists, *c.floats, *c.bools, *regex):
                raise TypeError(f"{key}: parameter {name} needs a bind processor")
        # PostgreSQL takes a list as an array and a bool as a boolean, as they are.
        lists, bools = ((), ()) if pg else (c.lists, c.bools)
        out[key] = SqlText(c.sql, c.defaults, c.needed, lists, c.floats, bools, regex)
    return Rendered(dialect, SCHEMA_VERSION, out)


def file_text(dialect: str) -> str:
    """The checked-in file's content for ``dialect``, as ``render`` makes it now."""
    return json.dumps(render(dialect).to_json(), indent=1, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.store.render")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for dialect in DIALECTS:
        path = RENDERED_DIR / f"{dialect}.json"
        text = file_text(dialect)
        current = path.read_text("utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(path))
        if not args.check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, "utf-8")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}: run python -m engine.store.render", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
