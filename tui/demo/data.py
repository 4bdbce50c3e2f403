"""The demo's data files, generated deterministically with the standard library."""

from __future__ import annotations

import csv
import os
import random
import sqlite3
from pathlib import Path

LEADS = 20_000
CONTACTS = 1_200

_FIRST = (
    "Ada",
    "Bruno",
    "Chen",
    "Dara",
    "Elif",
    "Femi",
    "Greta",
    "Hugo",
    "Ines",
    "Jon",
    "Kenji",
    "Lina",
    "Mateo",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
)
_LAST = (
    "Adams",
    "Berg",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Khan",
    "Larsen",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Rossi",
    "Silva",
    "Tanaka",
    "Weber",
)
_COMPANIES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
)
_REGIONS = ("APAC", "EMEA", "LATAM", "NA-East", "NA-West")
_SOURCES = ("web", "event", "partner", "referral", "cold-call")


def write_leads(path: Path, rows: int = LEADS, seed: int = 2024) -> Path:
    """A CSV of ``rows`` leads, the same bytes on every run."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "id",
                "first_name",
                "last_name",
                "email",
                "company",
                "region",
                "source",
                "score",
                "created_at",
            ]
        )
        for i in range(1, rows + 1):
            first = _FIRST[rng.randrange(len(_FIRST))]
            last = _LAST[rng.randrange(len(_LAST))]
            company = _COMPANIES[rng.randrange(len(_COMPANIES))]
            out.writerow(
                [
                    f"L{i:06d}",
                    first,
                    last,
                    f"{first.lower()}.{last.lower()}{i}@{company.lower()}.example",
                    company,
                    _REGIONS[rng.randrange(len(_REGIONS))],
                    _SOURCES[rng.randrange(len(_SOURCES))],
                    rng.randrange(0, 101),
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                ]
            )
    os.replace(tmp, path)
    return path


def write_crm(path: Path, rows: int = CONTACTS, seed: int = 7) -> Path:
    """A small SQLite database of CRM contacts (what ``crm-export`` exports)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        remove(Path(str(path) + suffix))
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT, email TEXT, region TEXT)"
            )
            conn.executemany(
                "INSERT INTO contacts VALUES (?, ?, ?, ?)",
                [
                    (
                        i,
                        f"{first} {last}",
                        f"{first.lower()}.{last.lower()}@crm.example",
                        _REGIONS[rng.randrange(len(_REGIONS))],
                    )
                    for i in range(1, rows + 1)
                    for first, last in [
                        (_FIRST[rng.randrange(len(_FIRST))], _LAST[rng.randrange(len(_LAST))])
                    ]
                ],
            )
    finally:
        conn.close()
    return path


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
