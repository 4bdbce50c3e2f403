"""``batchdeck completion bash|zsh``: a completion script (shtab) for subcommands,
options, statuses, settings keys, and the ids of live jobs for ``cancel``, ``abort``
and ``show`` (asked of ``batchdeck completion --job-ids`` as the operator types, on the
database ``$BATCHDECK_DB`` or ./batchdeck.db names).

Install: ``batchdeck completion bash > ~/.local/share/bash-completion/completions/batchdeck``;
zsh: ``batchdeck completion zsh > "${fpath[1]}/_batchdeck"``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.main import EXIT_OK, EXIT_USAGE, Fail

# The statuses a job id is offered for: jobs an operator can still act on.
LIVE = ("waiting", "withhold", "executing", "canceling")
MAX_IDS = 500


def _words(name: str, words: list[str]) -> dict[str, Any]:
    """A shtab ``.complete`` offering fixed ``words``."""
    joined = " ".join(words)
    return {
        "bash": f"_batchdeck_{name}",
        "zsh": f"({joined})",
        "preamble": {"bash": f'_batchdeck_{name}() {{\n  compgen -W "{joined}" -- "$1"\n}}\n'},
    }


def _job_ids() -> dict[str, Any]:
    command = "batchdeck completion --job-ids 2>/dev/null"
    return {
        "bash": "_batchdeck_job_ids",
        "zsh": f"($({command}))",
        "preamble": {"bash": f'_batchdeck_job_ids() {{\n  compgen -W "$({command})" -- "$1"\n}}\n'},
    }


def completion_parser() -> argparse.ArgumentParser:
    """The command line's parser, its arguments told what to complete with."""
    from engine.cli.main import build_parser
    from engine.core.setting_values import DEFAULTS
    from engine.core.statuses import LABELS

    parser = build_parser()
    statuses = _words("statuses", sorted(LABELS))
    keys = _words("settings_keys", sorted(DEFAULTS))
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if "--status" in action.option_strings:
                action.complete = statuses  # type: ignore[attr-defined]
            elif action.dest == "job" and name in ("cancel", "abort", "show"):
                action.complete = _job_ids()  # type: ignore[attr-defined]
            elif action.dest == "key" and name == "settings":
                action.complete = keys  # type: ignore[attr-defined]
    return parser


def live_job_ids(args: argparse.Namespace) -> list[int]:
    from engine.cli import main as cli

    path = cli._db_path(args)
    if "://" not in path:
        import os

        if not os.path.exists(path):
            return []
    page = cli._run(lambda r: r.list_jobs(0, MAX_IDS, statuses=LIVE, with_total=False), args)
    return [j.id for j in page.rows]


def cmd_completion(args: argparse.Namespace) -> int:
    if args.job_ids:
        for job_id in live_job_ids(args):
            print(job_id)
        return EXIT_OK
    if args.shell is None:
        raise Fail("give a shell: completion bash|zsh", EXIT_USAGE)
    import shtab

    sys.stdout.write(shtab.complete(completion_parser(), shell=args.shell))
    return EXIT_OK
