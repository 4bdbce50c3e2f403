"""Recipe loading and validation: real TOML files in a temporary directory."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from engine.actions import ACTIONS, get_action
from engine.recipes import (
    Recipe,
    RecipeError,
    TaskSpec,
    check_path,
    load_recipe,
    recipe_from_dict,
)

GOOD = """
name = "nightly-import"
description = "the nightly load"
max_attempts = 5

[[task]]
name = "extract"
action = "shell"
command = ["sh", "-c", "./extract.sh"]
on_cancel = "finish"

[[task]]
name = "load"
action = "bulk_import_csv"
after = ["extract"]
file = "data/leads.csv"
database = "target.db"
table = "leads"
key = "id"
chunk_rows = 250

[[task]]
name = "report"
action = "call_job"
after = ["load"]
recipe = "report.toml"
mode = "async"
"""

SMALL = """
name = "small"
[[task]]
name = "a"
action = "wait"
seconds = 1
"""


@pytest.fixture
def recipes_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``recipes/`` folder, with the current directory set so paths read as in the SPEC."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "recipes"
    folder.mkdir()
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_error(text: str) -> str:
    write(Path("recipes"), "x.toml", text)
    with pytest.raises(RecipeError) as info:
        load_recipe("recipes/x.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_registry_lists_every_builtin_action() -> None:
    assert set(ACTIONS) == {
        "wait",
        "shell",
        "bulk_import_csv",
        "bulk_export_csv",
        "call_job",
        "approval",
        "python",
        "fail",
        "blocking_wait",
        "salesforce_bulk",
        "http_job",
    }
    assert get_action("wait") is ACTIONS["wait"]
    assert get_action("nope") is None


def test_good_recipe_loads_in_file_order_with_paths_and_defaults(recipes_dir: Path) -> None:
    write(recipes_dir, "report.toml", SMALL)
    path = write(recipes_dir, "nightly.toml", GOOD)
    recipe = load_recipe("recipes/nightly.toml")
    assert isinstance(recipe, Recipe)
    assert recipe.name == "nightly-import"
    assert recipe.path == os.path.abspath(path)
    assert recipe.system is False
    assert recipe.max_attempts == 5
    assert recipe.description == "the nightly load"
    assert [t.name for t in recipe.tasks] == ["extract", "load", "report"]
    extract, load, report = recipe.tasks
    assert extract == TaskSpec(
        "extract",
        "shell",
        (),
        {"command": ["sh", "-c", "./extract.sh"], "on_cancel": "finish", "cwd": None},
    )
    assert load.after == ("extract",)
    assert load.params == {
        "file": str(recipes_dir / "data" / "leads.csv"),
        "database": str(recipes_dir / "target.db"),
        "table": "leads",
        "key": "id",
        "chunk_rows": 250,
        "delimiter": ",",
        "rows_per_second": None,
    }
    assert report.params == {"recipe": str(recipes_dir / "report.toml"), "mode": "async"}


def test_system_flag_and_default_attempts(recipes_dir: Path) -> None:
    write(recipes_dir, "s.toml", "system = true\n" + SMALL)
    recipe = load_recipe(recipes_dir / "s.toml")
    assert recipe.system is True
    assert recipe.max_attempts == 3
    # An int is fine where a number is expected; it becomes a float.
    assert recipe.tasks[0].params == {"seconds": 1.0}
    assert isinstance(recipe.tasks[0].params["seconds"], float)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            """
     name = "x"
     [[task]
     name = "a"
     """,
            "recipes/x.toml: not valid TOML: ",
        ),
        (
            """
     [[task]]
     name = "a"
     action = "wait"
     seconds = 1
     """,
            "recipes/x.toml: field 'name': missing",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "load"
     action = "bulk_imprt"
     """,
            "recipes/x.toml: task 'load': field 'action': unknown action 'bulk_imprt' "
            "(known: approval, blocking_wait, bulk_export_csv, bulk_import_csv, call_job, "
            "fail, http_job, python, salesforce_bulk, shell, wait)",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "load"
     action = "bulk_import_csv"
     database = "t.db"
     table = "leads"
     key = "id"
     """,
            "recipes/x.toml: task 'load': field 'file': missing parameter",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "load"
     action = "bulk_import_csv"
     file = "a.csv"
     database = "t.db"
     table = "leads"
     key = "id"
     chunk_rows = "many"
     """,
            "recipes/x.toml: task 'load': field 'chunk_rows': expected an integer, got 'many'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "extract"
     action = "wait"
     seconds = 1
     [[task]]
     name = "load"
     action = "wait"
     seconds = 1
     after = ["extrct"]
     """,
            "recipes/x.toml: task 'load': field 'after': no task named 'extrct'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "a"
     action = "wait"
     seconds = 1
     after = ["b"]
     [[task]]
     name = "b"
     action = "wait"
     seconds = 1
     after = ["a"]
     """,
            "recipes/x.toml: task 'a': field 'after': dependency cycle a -> b -> a",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "a"
     action = "wait"
     seconds = 1
     after = ["a"]
     """,
            "recipes/x.toml: task 'a': field 'after': dependency cycle a -> a",
        ),
        (
            """
     name = "x"
     owner = "me"
     [[task]]
     name = "a"
     action = "wait"
     seconds = 1
     """,
            "recipes/x.toml: field 'owner': unknown field",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "a"
     action = "wait"
     seconds = 1
     second = 2
     """,
            "recipes/x.toml: task 'a': field 'second': unknown parameter for action 'wait'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "load"
     action = "bulk_import_csv"
     file = "a.csv"
     database = "t.db"
     table = "leads"
     key = "id"
     chunk_rows = true
     """,
            "recipes/x.toml: task 'load': field 'chunk_rows': expected an integer, got true",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "load"
     action = "bulk_import_csv"
     file = "a.csv"
     database = "t.db"
     table = "leads"
     key = "id"
     chunk_rows = 0
     """,
            "recipes/x.toml: task 'load': field 'chunk_rows': must be at least 1, got 0",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "w"
     action = "wait"
     seconds = true
     """,
            "recipes/x.toml: task 'w': field 'seconds': expected a number, got true",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "run"
     action = "shell"
     command = ["ls"]
     on_cancel = "kill"
     """,
            "recipes/x.toml: task 'run': field 'on_cancel': expected one of 'terminate', "
            "'finish', got 'kill'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "run"
     action = "shell"
     command = []
     """,
            "recipes/x.toml: task 'run': field 'command': must not be empty",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "run"
     action = "shell"
     command = "ls -l"
     """,
            "recipes/x.toml: task 'run': field 'command': expected a list of strings, got 'ls -l'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "child"
     action = "call_job"
     recipe = "missing.toml"
     """,
            "recipes/x.toml: task 'child': field 'recipe': no such file: ",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "py"
     action = "python"
     function = "no colon here"
     """,
            "recipes/x.toml: task 'py': field 'function': expected 'module:function', "
            "got 'no colon here'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "a"
     action = "wait"
     seconds = 1
     [[task]]
     name = "a"
     action = "wait"
     seconds = 2
     """,
            "recipes/x.toml: task 'a': field 'name': duplicate task name",
        ),
        (
            """
     name = "x"
     [[task]]
     action = "wait"
     seconds = 1
     """,
            "recipes/x.toml: task #1: field 'name': missing",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "a"
     seconds = 1
     """,
            "recipes/x.toml: task 'a': field 'action': missing",
        ),
        ('name = "x"\n', "recipes/x.toml: field 'task': missing"),
        (
            'name = "x"\n[[task]]\nname = "w"\naction = "wait"\nseconds = nan\n',
            "recipes/x.toml: task 'w': field 'seconds': expected a finite number, got nan",
        ),
        (
            'name = "x"\nmax_attempts = 0\n[[task]]\nname = "a"\naction = "fail"\n',
            "recipes/x.toml: field 'max_attempts': must be at least 1, got 0",
        ),
        (
            'name = "x"\nsystem = "yes"\n[[task]]\nname = "a"\naction = "fail"\n',
            "recipes/x.toml: field 'system': expected true or false, got 'yes'",
        ),
        (
            """
     name = "x"
     [[task]]
     name = "load"
     action = "bulk_import_csv"
     file = "a.csv"
     database = "t.db"
     table = "leads; drop table x"
     key = "id"
     """,
            "recipes/x.toml: task 'load': field 'table': not a plain identifier",
        ),
    ],
)
def test_recipe_errors_are_one_line_naming_file_task_and_field(
    recipes_dir: Path, text: str, expected: str
) -> None:
    assert load_error(text).startswith(expected)


def test_invalid_toml_reports_the_parser_position(recipes_dir: Path) -> None:
    message = load_error('name = "x"\n\nnot a key\n')
    assert message.startswith("recipes/x.toml: not valid TOML: ")
    assert "line 3" in message


def test_missing_file(recipes_dir: Path) -> None:
    with pytest.raises(RecipeError, match=r"^recipes/x\.toml: no such file$"):
        load_recipe("recipes/x.toml")


def test_long_dependency_chain_is_checked_without_recursion(recipes_dir: Path) -> None:
    lines = ['name = "chain"']
    for i in range(3000):
        after = f'after = ["t{i - 1}"]' if i else ""
        lines.append(f'[[task]]\nname = "t{i}"\naction = "fail"\n{after}')
    write(recipes_dir, "chain.toml", "\n".join(lines))
    recipe = load_recipe(recipes_dir / "chain.toml")
    assert len(recipe.tasks) == 3000
    assert recipe.tasks[-1].after == ("t2998",)


def test_python_action_accepts_open_params(recipes_dir: Path) -> None:
    write(
        recipes_dir,
        "py.toml",
        """
        name = "py"
        [[task]]
        name = "call"
        action = "python"
        function = "helpers.jobs:run"
        rows = 10
        label = "x"
        """,
    )
    (task,) = load_recipe(recipes_dir / "py.toml").tasks
    assert task.params == {"function": "helpers.jobs:run", "rows": 10, "label": "x"}


def test_recipe_from_dict_validates_the_same_and_resolves_paths(tmp_path: Path) -> None:
    data = {
        "name": "registered",
        "task": [
            {
                "name": "load",
                "action": "bulk_export_csv",
                "database": "d.db",
                "query": "SELECT * FROM t",
                "file": "out/t.csv",
            },
        ],
    }
    recipe = recipe_from_dict(data, "registered:demo", base_dir=tmp_path)
    assert recipe.path is None
    assert recipe.tasks[0].params["file"] == str(tmp_path / "out" / "t.csv")
    bad = {
        "name": "registered",
        "task": [
            {
                "name": "e",
                "action": "bulk_export_csv",
                "database": "d.db",
                "query": "DELETE FROM t",
                "file": "t.csv",
            }
        ],
    }
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(bad, "registered:demo", base_dir=tmp_path)
    assert str(info.value) == ("registered:demo: task 'e': field 'query': must be a SELECT query")


def test_check_path_walks_a_directory_sorted_and_recursive(recipes_dir: Path) -> None:
    write(recipes_dir, "b.toml", SMALL)
    write(recipes_dir, "a.toml", 'name = "a"\n[[task]]\nname = "x"\naction = "nope"\n')
    write(recipes_dir, "sub/c.toml", SMALL)
    write(recipes_dir, "notes.txt", "not a recipe")
    results = check_path("recipes")
    assert [file for file, _ in results] == [
        os.path.join("recipes", "a.toml"),
        os.path.join("recipes", "b.toml"),
        os.path.join("recipes", "sub", "c.toml"),
    ]
    (_, error_a), (_, error_b), (_, error_c) = results
    assert error_a is not None and error_a.startswith(
        "recipes/a.toml: task 'x': field 'action': unknown action 'nope'"
    )
    assert error_b is None and error_c is None
    assert check_path("recipes/b.toml") == [("recipes/b.toml", None)]
    assert check_path("recipes/missing.toml") == [
        ("recipes/missing.toml", "recipes/missing.toml: no such file")
    ]


def caller(name: str, *targets: str, mode: str = "async") -> str:
    """A recipe whose tasks call the given recipe files, one task per call."""
    lines = [f'name = "{name}"']
    for i, target in enumerate(targets):
        task = "call" if i == 0 else f"call{i + 1}"
        lines.append(
            f'[[task]]\nname = "{task}"\naction = "call_job"\nrecipe = "{target}"\nmode = "{mode}"'
        )
    return "\n".join(lines) + "\n"


def test_a_recipe_that_calls_itself_is_refused(recipes_dir: Path) -> None:
    write(recipes_dir, "a.toml", caller("a", "a.toml"))
    with pytest.raises(RecipeError) as info:
        load_recipe("recipes/a.toml")
    assert str(info.value) == (
        "recipes/a.toml: task 'call': field 'recipe': recipe cycle a.toml -> a.toml"
    )


def test_recipes_that_call_each_other_are_refused_from_either_end(recipes_dir: Path) -> None:
    write(recipes_dir, "a.toml", caller("a", "b.toml"))
    write(recipes_dir, "b.toml", caller("b", "fine.toml", "sub/c.toml", mode="sync"))
    write(recipes_dir, "fine.toml", SMALL)
    write(recipes_dir, "sub/c.toml", caller("c", "../a.toml"))
    with pytest.raises(RecipeError) as info:
        load_recipe("recipes/a.toml")
    assert str(info.value) == (
        "recipes/a.toml: task 'call': field 'recipe': "
        "recipe cycle a.toml -> b.toml -> sub/c.toml -> a.toml"
    )
    assert dict(check_path("recipes")) == {
        "recipes/a.toml": "recipes/a.toml: task 'call': field 'recipe': "
        "recipe cycle a.toml -> b.toml -> sub/c.toml -> a.toml",
        "recipes/b.toml": "recipes/b.toml: task 'call2': field 'recipe': "
        "recipe cycle b.toml -> sub/c.toml -> a.toml -> b.toml",
        "recipes/fine.toml": None,
        "recipes/sub/c.toml": "recipes/sub/c.toml: task 'call': field 'recipe': "
        "recipe cycle c.toml -> ../a.toml -> ../b.toml -> c.toml",
    }


def test_a_cycle_further_down_is_reported_as_an_invalid_called_recipe(recipes_dir: Path) -> None:
    write(recipes_dir, "top.toml", caller("top", "b.toml"))
    write(recipes_dir, "b.toml", caller("b", "c.toml"))
    write(recipes_dir, "c.toml", caller("c", "b.toml"))
    with pytest.raises(RecipeError) as info:
        load_recipe("recipes/top.toml")
    assert str(info.value) == (
        "recipes/top.toml: task 'call': field 'recipe': recipes/b.toml: task 'call': "
        "field 'recipe': recipe cycle b.toml -> c.toml -> b.toml"
    )


def test_a_called_recipe_that_is_invalid_is_refused_naming_both_files(recipes_dir: Path) -> None:
    write(recipes_dir, "a.toml", caller("a", "b.toml"))
    write(
        recipes_dir,
        "b.toml",
        'name = "b"\n[[task]]\nname = "x"\naction = "wait"\nseconds = "soon"\n',
    )
    message = "recipes/b.toml: task 'x': field 'seconds': expected a number, got 'soon'"
    with pytest.raises(RecipeError) as info:
        load_recipe("recipes/a.toml")
    assert str(info.value) == f"recipes/a.toml: task 'call': field 'recipe': {message}"
    # Written the way the caller was: absolute for an absolute path.
    with pytest.raises(RecipeError) as info:
        load_recipe(recipes_dir / "a.toml")
    assert str(info.value) == (
        f"{recipes_dir / 'a.toml'}: task 'call': field 'recipe': "
        f"{recipes_dir / 'b.toml'}: task 'x': field 'seconds': "
        "expected a number, got 'soon'"
    )
    write(recipes_dir, "b.toml", "name = [\n")
    with pytest.raises(
        RecipeError,
        match=r"^recipes/a\.toml: task 'call': field 'recipe': "
        r"recipes/b\.toml: not valid TOML: ",
    ):
        load_recipe("recipes/a.toml")


def test_a_recipe_called_from_several_places_is_accepted(recipes_dir: Path) -> None:
    write(recipes_dir, "a.toml", caller("a", "b.toml", "c.toml", "b.toml"))
    write(recipes_dir, "b.toml", caller("b", "d.toml"))
    write(recipes_dir, "c.toml", caller("c", "d.toml"))
    write(recipes_dir, "d.toml", SMALL)
    recipe = load_recipe("recipes/a.toml")
    assert [t.params["recipe"] for t in recipe.tasks] == [
        str(recipes_dir / "b.toml"),
        str(recipes_dir / "c.toml"),
        str(recipes_dir / "b.toml"),
    ]
    data = {
        "name": "registered",
        "task": [{"name": "call", "action": "call_job", "recipe": "recipes/a.toml"}],
    }
    assert recipe_from_dict(data, "registered:demo").tasks[0].name == "call"
    write(recipes_dir, "d.toml", caller("d", "a.toml"))
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(data, "registered:demo")
    assert str(info.value) == (
        "registered:demo: task 'call': field 'recipe': recipes/a.toml: task 'call': "
        "field 'recipe': recipe cycle a.toml -> b.toml -> d.toml -> a.toml"
    )
