"""The README's recipe is a file in the tree and runs as written."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from engine.flows import base as flows
from engine.recipes import load_recipe
from tests.engine_support import job_status, sql, task_statuses, until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "nightly-import"


def _readme_recipe() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index('```toml\nname = "nightly-import"') + len("```toml\n")
    return readme[start : readme.index("```", start)]


def test_the_readme_shows_the_example_recipe_as_it_is_in_the_tree() -> None:
    assert _readme_recipe() == (EXAMPLE / "nightly-import.toml").read_text()


async def test_the_example_recipe_runs_to_its_end(engine, tmp_path: Path) -> None:
    # A copy: the recipe writes its data, database and report beside itself.
    folder = shutil.copytree(EXAMPLE, tmp_path / "nightly-import")
    db = engine.store
    job = flows.submit(db.transaction, load_recipe(folder / "nightly-import.toml"), actor="tester")
    await until(lambda: job_status(db, job) == "ended", "the example job ends", bound=60)
    assert task_statuses(db, job) == {"extract": "ended", "load": "ended", "report": "ended"}
    with db.read() as conn:
        child = sql(conn, "SELECT id FROM job WHERE parent_id=?", (job,)).scalar_one()
    await until(lambda: job_status(db, child) == "ended", "the report job ends", bound=60)
    with open(folder / "report.csv", newline="") as f:
        assert list(csv.reader(f)) == [["leads"], ["2000"]]
