"""The small faults found with issue 21, each through the real command line: a rendered
SQL cache of valid JSON but the wrong shape, keymaps that are not files or name no key,
``list`` with wide and long names, and ``submit`` interrupted by ctrl-c."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proc_support import BATCHDECK, Deck, deck_in, wait_for


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[Deck]:
    with deck_in(tmp_path) as d:
        yield d


def run_console(deck: Deck, keymap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        BATCHDECK,
        env={**deck.env, "BATCHDECK_KEYMAP": keymap},
        cwd=deck.dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_keymap_that_is_not_a_regular_file_is_refused_in_one_line(deck: Deck) -> None:
    fifo = deck.dir / "keymap.fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo), str(deck.dir)):
        res = run_console(deck, path)
        assert res.returncode == 2, res
        (line,) = res.stderr.splitlines()
        assert path in line and "not a regular file" in line, line


def test_a_keymap_naming_no_key_textual_can_bind_is_refused_in_one_line(deck: Deck) -> None:
    keymap = deck.dir / "keymap.toml"
    keymap.write_text('cancel-job = "not a key at all!!"\n')
    res = run_console(deck, str(keymap))
    assert res.returncode == 2, res
    (line,) = res.stderr.splitlines()
    assert "not a key at all!!" in line and "not a key Textual can bind" in line, line
    big = deck.dir / "big.toml"
    big.write_text("# " + "x" * 100_000 + "\n")
    res = run_console(deck, str(big))
    assert res.returncode == 2 and "not a keymap" in res.stderr, res


def test_list_pads_by_display_width_and_cuts_long_names(deck: Deck) -> None:
    from rich.cells import cell_len

    names = ["ascii-only", "日本語のジョブ", "emoji 🚀🚀", "x" * 200]
    for n in names:
        deck.ok(
            "submit",
            str(
                deck.recipe(
                    f"r{len(n)}",
                    f'name = "{n}"\n[[task]]\nname = "w"\naction = "wait"\nseconds = 0\n',
                )
            ),
        )
    lines = deck.ok("list").out.splitlines()
    header, rows = lines[0], lines[1:]
    tasks_at = cell_len(header[: header.index("TASKS")])
    for row in rows:
        # Every row's TASKS column starts where the header's does, in cells.
        name_end = row.index("0/1") if "0/1" in row else row.index("1/1")
        assert cell_len(row[:name_end]) == tasks_at, (row, header)
    (long_row,) = [r for r in rows if "xxxx" in r]
    assert "x" * 39 + "…" in long_row and "x" * 41 not in long_row
    assert max(cell_len(r) for r in lines) < 150


def test_submit_interrupted_by_ctrl_c_says_nothing_was_submitted(deck: Deck) -> None:
    deck.ok("settings", "lease_seconds", "5")  # the database exists (a read creates none)
    fifo = deck.dir / "recipe.toml"
    os.mkfifo(fifo)  # its open waits for a writer: the submit is caught mid-way
    proc = subprocess.Popen(
        [*BATCHDECK, "submit", str(fifo)],
        env=deck.env,
        cwd=deck.dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: Path(f"/proc/{proc.pid}/wchan").read_text() == "wait_for_partner",
            "submit to wait on the recipe",
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 1
    assert out == "" and err.strip() == "batchdeck submit: interrupted: nothing was submitted"
    assert deck.sql("SELECT count(*) FROM job") == [(0,)]
