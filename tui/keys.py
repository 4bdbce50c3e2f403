"""Every key of the console, once: the bindings, the help screen and the command palette
are all made from ``KEYS``. Each key has a binding id, so an operator can move it to
another key from a keymap file (binding id -> key, the way posting does it):

    # ~/.config/batchdeck/keymap.toml  (or the file named by $BATCHDECK_KEYMAP)
    cancel-job = "x"
    abort-job = "ctrl+a"

A keymap that would put two actions on one key where both can fire (same screen, or a
screen and the keys that work everywhere) is refused, with one line saying which.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.binding import Binding

# Where a key works. A screen sees its own keys and the "app" ones (plus the job keys on
# the list and the detail, and the table's on the list).
SCOPES_SEEN: dict[str, tuple[str, ...]] = {
    "list": ("app", "job", "list", "table"),
    "detail": ("app", "job", "detail"),
    "servers": ("app", "servers"),
    "logs": ("app", "logs"),
}

#: How a job key starts its flow: ``(app, job_id, task_id)``. The app is the console
#: (``tui.app.BatchdeckApp``); named by duck type so this module stays at the bottom.
Flow = Callable[[Any, int, "int | None"], None]


@dataclass(frozen=True)
class Key:
    id: str  # the binding id: what a keymap file names
    key: str  # the default key(s), comma-separated
    action: str  # the Textual action it runs
    description: str  # the footer's word(s)
    help: str  # the help screen's line
    scope: str  # app, job, list, table, detail, servers
    show: bool = False  # in the footer
    key_display: str | None = None
    palette: str | None = None  # the command palette's title ("{job}": the selected id)
    flow: Flow | None = None  # job keys: the flow it starts

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            key_display=self.key_display,
            id=self.id,
            tooltip=self.help,
        )


def _job(
    id: str, key: str, description: str, help: str, palette: str, flow: Flow, show: bool = False
) -> Key:
    # One action for every job key (JobKeysMixin.action_job): the registry says what it does.
    return Key(id, key, f"job('{id}')", description, help, "job", show, None, palette, flow)


KEYS: tuple[Key, ...] = (
    # everywhere
    Key(
        "quit",
        "q",
        "quit",
        "Quit",
        "Quit (asks first if the embedded engine is running tasks)",
        "app",
        show=True,
    ),
    Key(
        "help",
        "question_mark",
        "help",
        "Help",
        "This help",
        "app",
        show=True,
        key_display="?",
        palette="Help",
    ),
    Key(
        "servers",
        "s",
        "servers",
        "Servers",
        "Servers: slots in use, engines, drain deadlines",
        "app",
        show=True,
        palette="Servers",
    ),
    # on a job (list and detail)
    _job(
        "cancel-job",
        "c",
        "Cancel",
        "Cancel gracefully: no new task starts, running ones wind down",
        "Cancel job {job}",
        lambda app, job, task: app.flow_cancel(job),
        show=True,
    ),
    _job(
        "abort-job",
        "a",
        "Abort",
        "Abort: force-stop the Canceling tasks (cancels an Executing job first)",
        "Abort job {job}",
        lambda app, job, task: app.flow_abort(job, enhanced=False),
        show=True,
    ),
    _job(
        "enhanced-abort",
        "A",
        "Enhanced abort",
        "Enhanced abort: abort and restart the servers running it",
        "Enhanced abort of job {job}",
        lambda app, job, task: app.flow_abort(job, enhanced=True),
    ),
    _job(
        "cancel-tree",
        "C",
        "Cancel with children",
        "Cancel the job and every job it called",
        "Cancel job {job} with children",
        lambda app, job, task: app.flow_cancel_tree(job),
    ),
    _job(
        "hold-release",
        "h",
        "Hold/release",
        "Hold a Waiting job, or release a held one",
        "Hold or release job {job}",
        lambda app, job, task: app.flow_hold_release(job),
    ),
    _job(
        "rerun-job",
        "r",
        "Rerun",
        "Rerun what did not end (a job in a final status): Ended tasks are carried over",
        "Rerun job {job}",
        lambda app, job, task: app.flow_rerun(job),
    ),
    _job(
        "open-logs",
        "l",
        "Logs",
        "Logs: the selected task's (in the detail) or every task's, followed live",
        "Logs of job {job}",
        lambda app, job, task: app.open_logs(job, task),
    ),
    _job(
        "approve",
        "y",
        "Approve",
        "Approve the waiting approval task (asks first)",
        "Approve in job {job}",
        lambda app, job, task: app.flow_approval(job, task, approve=True),
    ),
    _job(
        "reject",
        "n",
        "Reject",
        "Reject the waiting approval task (asks first)",
        "Reject in job {job}",
        lambda app, job, task: app.flow_approval(job, task, approve=False),
    ),
    # the job list
    Key(
        "open",
        "enter",
        "open",
        "Open",
        "Open the selected job",
        "list",
        show=True,
        palette="Open the selected job",
    ),
    Key(
        "filter",
        "slash",
        "filter",
        "Filter",
        "Filter by text (id, name, user, status)",
        "list",
        show=True,
        key_display="/",
        palette="Filter jobs by text",
    ),
    Key(
        "status-filter",
        "f",
        "status_filter",
        "Status filter",
        "Status filter: all, running, waiting, failed, ended",
        "list",
        palette="Next status filter",
    ),
    Key(
        "sort",
        "o",
        "sort",
        "Sort",
        "Sort by id, name, status, started",
        "list",
        palette="Next sort order",
    ),
    Key("reverse", "O", "reverse", "Reverse order", "Reverse the order", "list"),
    Key(
        "mark",
        "space",
        "mark",
        "Mark",
        "Mark or unmark the selected job and move down (as file managers do): c, a and A "
        "then act on the marked jobs",
        "list",
        show=True,
        key_display="space",
    ),
    Key(
        "mark-all",
        "asterisk",
        "mark_all",
        "Mark all",
        "Mark every job the filter shows (again: clear the marks)",
        "list",
        key_display="*",
        palette="Mark every job the filter shows",
    ),
    Key("clear", "escape", "clear", "Clear filter", "Clear the filters", "list"),
    Key("cursor-up", "up,k", "cursor_up", "Up", "Up", "table"),
    Key("cursor-down", "down,j", "cursor_down", "Down", "Down", "table"),
    Key("page-up", "pageup", "page_up", "Page up", "Page up", "table"),
    Key("page-down", "pagedown", "page_down", "Page down", "Page down", "table"),
    Key("first", "home", "first", "First", "First", "table"),
    Key("last", "end", "last", "Last", "Last", "table"),
    # the detail and the servers
    Key("detail-back", "escape", "back", "Back", "Back", "detail", show=True),
    Key("servers-back", "escape,s", "back", "Back", "Back", "servers", show=True),
    # the log screen
    Key("logs-back", "escape", "back", "Back", "Back (or close the search)", "logs", show=True),
    Key("logs-follow", "f", "follow", "Follow", "Follow new lines (toggle)", "logs", show=True),
    Key("logs-wrap", "w", "wrap", "Wrap", "Wrap long lines (toggle)", "logs", show=True),
    Key(
        "logs-search",
        "slash",
        "search",
        "Search",
        "Search the log (any case)",
        "logs",
        show=True,
        key_display="/",
    ),
    Key("logs-next", "n", "next_match", "Next", "Next match", "logs"),
    Key("logs-previous", "N", "previous_match", "Previous", "Previous match", "logs"),
    Key("logs-top", "g,home", "top", "Top", "The first line", "logs"),
    Key("logs-bottom", "G,end", "bottom", "Bottom", "The last line", "logs"),
    Key(
        "logs-attempt-back",
        "left_square_bracket",
        "attempt(-1)",
        "Earlier attempt",
        "The task's earlier attempt",
        "logs",
        key_display="[",
    ),
    Key(
        "logs-attempt-on",
        "right_square_bracket",
        "attempt(1)",
        "Later attempt",
        "The task's later attempt",
        "logs",
        key_display="]",
    ),
)


BY_ID: dict[str, Key] = {k.id: k for k in KEYS}
JOB_KEYS: tuple[Key, ...] = tuple(k for k in KEYS if k.scope == "job")
KEY_NAMES = {
    "slash": "/",
    "question_mark": "?",
    "asterisk": "*",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
}
# Keys Textual itself binds on every screen: a keymap may not take them.
RESERVED = {
    "ctrl+p": "the command palette",
    "ctrl+q": "quit",
    "ctrl+c": "copy",
    "tab": "the next widget",
    "shift+tab": "the previous widget",
}


def bindings(*ids: str) -> list[Binding]:
    """The Textual bindings of these keys, in this order."""
    return [BY_ID[i].binding() for i in ids]


def scope_bindings(scope: str) -> list[Binding]:
    """The Textual bindings of every key of one scope, in registry order."""
    return [k.binding() for k in KEYS if k.scope == scope]


def shown(keys: str) -> str:
    """ "slash" -> "/", "up,k" -> "up, k": a key list as the help screen shows it."""
    return ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


# -- keymap files ----------------------------------------------------------------------


class KeymapError(Exception):
    """The keymap cannot be used; the message is one line."""


def keymap_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("BATCHDECK_KEYMAP"):
        return Path(env["BATCHDECK_KEYMAP"])
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    return Path(config).expanduser() / "batchdeck" / "keymap.toml"


def _norm(keys: str) -> list[str]:
    """Key names as Textual writes them ("?" -> "question_mark"), for comparing."""
    from textual.keys import _character_to_key

    names = [k.strip() for k in keys.split(",") if k.strip()]
    return [_character_to_key(k) if len(k) == 1 else k for k in names]


_MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}


def _bindable(name: str) -> bool:
    """A key name Textual can bind: modifiers, then one printable character, a named key
    ("f5", "pageup") or a character's name ("question_mark")."""
    from textual.keys import Keys, key_to_character

    *mods, base = name.split("+")
    if not base or any(m not in _MODIFIERS for m in mods):
        return False
    if len(base) == 1:
        return base.isprintable()
    return base in {k.value for k in Keys} or key_to_character(base) is not None


# A keymap is a few lines; more is not one (``/dev/zero`` would read for ever).
KEYMAP_MAX_BYTES = 64 * 1024


def check_keymap(keymap: Mapping[str, str], origin: str = "keymap") -> dict[str, str]:
    """The keymap, checked: known ids, string keys, and no key doing two things where
    both could fire. Raises KeymapError (one line)."""
    for binding_id, keys in keymap.items():
        if binding_id not in BY_ID:
            raise KeymapError(
                f"{origin}: unknown key id {binding_id!r} (known: {', '.join(BY_ID)})"
            )
        if not isinstance(keys, str) or not _norm(keys):
            raise KeymapError(f'{origin}: {binding_id} must be a key name, like "x" or "ctrl+x"')
        for name in _norm(keys):
            if not _bindable(name):
                raise KeymapError(
                    f"{origin}: {binding_id} = {name!r} is not a key Textual can bind "
                    '(like "x", "f5", "ctrl+x" or "question_mark")'
                )
            if name in RESERVED:
                raise KeymapError(
                    f"{origin}: {name!r} is {RESERVED[name]} everywhere; give {binding_id} "
                    "another key"
                )
    effective = {k.id: _norm(keymap.get(k.id, k.key)) for k in KEYS}
    for seen in SCOPES_SEEN.values():
        owner: dict[str, Key] = {}
        for k in KEYS:
            if k.scope not in seen:
                continue
            for name in effective[k.id]:
                other = owner.get(name)
                # Only a remapped key can clash: the defaults are chosen (escape is "back"
                # on the detail and "clear" on the list; s toggles the servers screen).
                if other is not None and (k.id in keymap or other.id in keymap):
                    raise KeymapError(
                        f"{origin}: {shown(name)!r} would do both {other.description!r} "
                        f"({other.id}) and {k.description!r} ({k.id}); give one another key"
                    )
                owner.setdefault(name, k)
    return dict(keymap)


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """The operator's keymap ({} when there is no file). Raises KeymapError (one line)."""
    path = path or keymap_path()
    try:
        # Looked at before it is opened: a FIFO would hang the open, a device read on.
        if not stat.S_ISREG(path.stat().st_mode):
            raise KeymapError(f"{path}: not a regular file; a keymap is a TOML file")
        with path.open("rb") as fh:
            raw = fh.read(KEYMAP_MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeymapError(f"{path}: {exc.strerror or exc}") from exc
    if len(raw) > KEYMAP_MAX_BYTES:
        raise KeymapError(f"{path}: larger than {KEYMAP_MAX_BYTES // 1024} KiB; not a keymap")
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeymapError(f"{path}: not valid TOML ({exc})") from exc
    return check_keymap(data, str(path))


def key_names(key_id: str, keymap: Mapping[str, str]) -> list[str]:
    """The key names (as Textual writes them) that key ``key_id`` is on with ``keymap``."""
    return _norm(keymap.get(key_id, BY_ID[key_id].key))


def effective_key(key: Key, keymap: Mapping[str, str]) -> str:
    return shown(keymap.get(key.id, key.key_display or key.key))
