"""Shell patterns (``--name 'nightly-*'``) as the databases match them: SQLite's GLOB
takes the pattern itself; PostgreSQL matches the POSIX regular expression written here.
No SQLAlchemy: the command line's rendered text converts its patterns with it too."""

from __future__ import annotations

import re


def glob_to_regex(pattern: str) -> str:
    """The anchored POSIX regular expression matching what the GLOB ``pattern`` does."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"
