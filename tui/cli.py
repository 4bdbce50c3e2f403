"""The ``batchdeck`` command: the engine's command line, plus the console commands.

Textual is imported only when a console command runs, so ``batchdeck --help`` and the
control commands start fast.
"""

from __future__ import annotations

import argparse
import sys

from engine.cli.main import main as engine_main


def _console(args: argparse.Namespace) -> int:
    from tui.launch import run_console

    return run_console(args)


def main() -> None:
    sys.exit(engine_main(sys.argv[1:], console=_console))
