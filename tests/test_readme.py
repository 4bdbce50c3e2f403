"""Every command README.md names runs as written.

The README's inline commands come in three kinds:
- a usage form (``batchdeck cancel JOB [--reason TEXT]``: placeholders in capitals,
  brackets, alternatives): its command must exist (``--help`` answers);
- a long-running command (the console, ``serve``, the demo, the remote emulator): it
  must parse as written (``--help`` appended answers 0, so every option before it was
  accepted);
- any other command: it runs as written, here, against a database of the test's own,
  and answers with its exit status (0, or 1 for a refusal), never a usage error or a
  traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BATCHDECK = [sys.executable, "-c", "from tui.cli import main; main()"]

# A placeholder: a word in capitals (JOB, RECIPE.toml, HOST:PORT) or a syntax sign.
USAGE = re.compile(r"\b[A-Z][A-Z_]+\b|[\[\](){}|]|\.\.\.")
LONG_RUNNING = ("serve", "demo", "console")


def inline_commands() -> list[str]:
    found = re.findall(r"`((?:batchdeck|python -m) [^`]*|batchdeck)`", README)
    return sorted(set(found))


def kind(command: str) -> str:
    words = shlex.split(command.replace("\\|", "|"))
    if USAGE.search(command.removeprefix("python -m ")):
        return "usage"
    if command == "python -m tests.screenshots":
        return "run"  # it writes ./screenshots: run here in a directory of the test's own
    if words[0] == "python" or len(words) == 1 or words[1] in LONG_RUNNING:
        return "long"
    return "run"


def argv_of(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return [*BATCHDECK, *words[1:]]


def run(argv: list[str], db: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCHDECK_DB": str(db), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_the_readme_names_commands_of_every_kind() -> None:
    kinds = {kind(c) for c in inline_commands()}
    assert kinds == {"usage", "long", "run"}, inline_commands()


@pytest.mark.parametrize("command", [c for c in inline_commands() if kind(c) == "run"])
def test_a_command_runs_as_written(command: str, tmp_path: Path) -> None:
    db = tmp_path / "readme.db"
    setup = run([*BATCHDECK, "settings", "keep_days", ""], db)  # a database to act on
    assert setup.returncode == 0, setup.stderr
    screenshots = command == "python -m tests.screenshots"
    res = run(argv_of(command), db, tmp_path if screenshots else ROOT)
    if screenshots:  # the very screens the README shows, by name
        made = sorted(p.name for p in (tmp_path / "screenshots").iterdir())
        assert made == sorted(p.name for p in (ROOT / "screenshots").glob("*.svg"))
    assert res.returncode in (0, 1), f"{command}: exit {res.returncode}\n{res.stderr}"
    assert "Traceback" not in res.stderr, f"{command}\n{res.stderr}"
    if res.returncode == 1:  # a refusal says why in one line
        assert len(res.stderr.strip().splitlines()) == 1, f"{command}\n{res.stderr}"


# What a usage form's placeholders stand for, to parse it with real values.
SAMPLES = {
    "JOB": "1",
    "TASK": "load",
    "PATH": "examples/nightly-import/nightly-import.toml",
    "RECIPE.toml": "examples/nightly-import/nightly-import.toml",
    "S": "executing",
    "N": "3",
    "GLOB": "nightly-*",
    "U": "ops",
    "TEXT": "why",
    "DATE": "2026-01-31",
    "DIR": "demo-dir",
    "KEY": "drain_seconds",
    "VALUE": "900",
    "NAME:SLOTS": "batch-01:4",
    "NAME": "batch-01",
    "HOST:PORT": "127.0.0.1:9464",
    "USER": "ops",
    "URL": "sqlite:///x.db",
    "SECONDS": "30",
}


def filled(form: str) -> list[str]:
    """A usage form with each alternative's first choice, every option given once and
    every placeholder a sample value."""
    text = form.replace("\\|", "|")
    text = re.sub(r"\(([^()|]*)\|[^()]*\)", r"\1", text)  # (a | b) -> a
    text = re.sub(r"(\S+)\|\S+", r"\1", text)  # bash|zsh -> bash
    text = re.sub(r"(\w)\[([^\] ]+)\]", r"\1\2", text)  # NAME[:SLOTS] -> NAME:SLOTS
    text = text.replace("[filters]", "").replace("...", "")
    text = re.sub(r"[\[\]()]", " ", text)
    words = shlex.split(text)
    return [SAMPLES.get(w, w) for w in words]


@pytest.mark.parametrize("command", [c for c in inline_commands() if kind(c) != "run"])
def test_a_usage_form_or_long_running_command_parses(command: str, tmp_path: Path) -> None:
    """Parsed as written (a usage form: with sample values): ``--help`` after it
    answers 0, so every word before it was accepted."""
    argv = argv_of(shlex.join(filled(command)) if kind(command) == "usage" else command)
    res = run([*argv, "--help"], tmp_path / "readme.db")
    assert res.returncode == 0, f"{command}: {argv[3:]}: exit {res.returncode}\n{res.stderr}"
    assert "usage" in res.stdout.lower(), f"{command}\n{res.stdout}"
