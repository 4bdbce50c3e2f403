"""One registry of keys (tui.keys) feeds the bindings, the help screen and the palette;
an operator's keymap moves keys by binding id, and two actions on one key are refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests import scenario
from tests.screenshots import select, settle
from tests.tui_support import RecordingApp, painted, press, shown, text_of, utc  # noqa: F401 - utc: autouse
from tui.keys import JOB_KEYS, KeymapError, check_keymap, keymap_path, load_keymap
from tui.launch import run_console
from tui.modals.abort import ConfirmAbort
from tui.modals.cancel import ConfirmCancel
from tui.screens.help import HelpScreen
from tui.screens.jobs import JobListScreen


def test_every_binding_has_an_id_and_every_job_key_a_flow() -> None:
    for screen in (JobListScreen, RecordingApp):
        assert all(b.id for b in screen.BINDINGS)  # type: ignore[union-attr]
    assert {k.id for k in JOB_KEYS} == {
        "cancel-job",
        "abort-job",
        "enhanced-abort",
        "cancel-tree",
        "hold-release",
        "approve",
        "reject",
        "rerun-job",
        "open-logs",
    }
    assert all(k.flow is not None and k.palette for k in JOB_KEYS)


def test_keymap_file_is_read_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "keymap.toml"
    assert keymap_path({"BATCHDECK_KEYMAP": str(path)}) == path
    assert keymap_path({"HOME": "/home/op"}) == Path("/home/op/.config/batchdeck/keymap.toml")
    assert load_keymap(tmp_path / "absent.toml") == {}
    path.write_text('cancel-job = "x"\nabort-job = "ctrl+a"\n')
    assert load_keymap(path) == {"cancel-job": "x", "abort-job": "ctrl+a"}


@pytest.mark.parametrize(
    ("keymap", "message"),
    [
        (
            {"cancel-job": "a"},
            "keymap: 'a' would do both 'Cancel' (cancel-job) and 'Abort' (abort-job); "
            "give one another key",
        ),
        (
            {"sort": "s"},  # "s" opens the servers from every screen
            "keymap: 's' would do both 'Servers' (servers) and 'Sort' (sort); give one another key",
        ),
        (
            {"abort-job": "ctrl+p"},
            "keymap: 'ctrl+p' is the command palette everywhere; give abort-job another key",
        ),
        ({"cancel": "x"}, "keymap: unknown key id 'cancel' (known: quit, help, servers,"),
        ({"cancel-job": ""}, 'keymap: cancel-job must be a key name, like "x" or "ctrl+x"'),
    ],
)
def test_two_actions_on_one_key_are_refused(keymap: dict[str, str], message: str) -> None:
    with pytest.raises(KeymapError) as err:
        check_keymap(keymap)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_keys_that_never_meet_may_share() -> None:
    # "escape" is "back" on the detail screen; on the list it is free once "clear" moves.
    keymap = {"status-filter": "escape", "clear": "z"}
    assert check_keymap(keymap) == keymap
    # A key moved onto itself, or swapped with another, is no clash either.
    assert check_keymap({"cancel-job": "c"}) == {"cancel-job": "c"}
    assert check_keymap({"sort": "O", "reverse": "o"}) == {"sort": "O", "reverse": "o"}


def test_a_bad_keymap_stops_the_console_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keymap.toml"
    path.write_text('cancel-job = "a"\n')
    monkeypatch.setenv("BATCHDECK_KEYMAP", str(path))
    assert run_console(argparse.Namespace(command="console")) == 2
    err = capsys.readouterr().err
    assert err == (
        f"batchdeck: {path}: 'a' would do both 'Cancel' (cancel-job) and 'Abort' (abort-job); "
        "give one another key\n"
    )


async def test_a_remapped_key_works_and_shows_everywhere(tmp_path: Path) -> None:
    db = scenario.build(tmp_path / "scenario.db")
    app = RecordingApp(
        db,
        mode_label="test",
        clock=lambda: scenario.NOW,
        actor="alice",
        live=False,
        keymap={"cancel-job": "x", "abort-job": "ctrl+b"},
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, 2)
        footer = painted(app).splitlines()[-1]
        assert " x Cancel " in footer and " ^b Abort " in footer and " c Cancel " not in footer
        await press(pilot, "c")  # its old key does nothing now
        await pilot.pause()
        assert isinstance(app.screen, JobListScreen)
        await press(pilot, "x")
        await shown(pilot, ConfirmCancel)
        await press(pilot, "escape")
        await shown(pilot, JobListScreen)
        await press(pilot, "ctrl+b")
        await shown(pilot, ConfirmAbort)
        await press(pilot, "escape")
        await settle(pilot)
        await press(pilot, "question_mark")
        help_screen = await shown(pilot, HelpScreen)
        body = text_of(help_screen.query_one("#help-body"))
        assert "x           Cancel gracefully" in body
        assert "ctrl+b      Abort: force-stop" in body
        # The palette offers the same actions, named by the registry.
        titles = [c.title for c in app.get_system_commands(app.screen_stack[1])]
        assert "Cancel job 2" in titles and "Abort job 2" in titles
