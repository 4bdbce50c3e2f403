"""The demo's remote service: the emulator of ``engine.remote_emulator``, running in the
demo's own process on 127.0.0.1, so that ``crm-upsert`` has a remote job to follow."""

from __future__ import annotations

import os
from pathlib import Path

from engine.remote_emulator import Emulator

RECIPE = "crm-upsert"
# The variable the recipe names: set here, in the process whose engine (and its batch
# servers) run the task, as a service's environment would hold a real token.
TOKEN_ENV = "BATCHDECK_DEMO_SF_TOKEN"
_TOKEN = "demo-only-token"
_PLACEHOLDER = 'instance_url = "http://127.0.0.1:9"'
# 20,000 leads at 100 a second: minutes to watch and cancel; every 97th one fails.
RATE = 100.0
FAIL_EVERY = 97

_emulator: Emulator | None = None


def emulator_url() -> str:
    """The address of this process's emulator, started on first use."""
    global _emulator
    if _emulator is None:
        os.environ.setdefault(TOKEN_ENV, _TOKEN)
        _emulator = Emulator(tokens={os.environ[TOKEN_ENV]}, rate=RATE, fail_every=FAIL_EVERY)
        _emulator.start()
    return _emulator.url


def point_at_emulator(recipe: Path) -> None:
    """Write the emulator's address into the copied recipe."""
    text = recipe.read_text(encoding="utf-8")
    recipe.write_text(
        text.replace(_PLACEHOLDER, f'instance_url = "{emulator_url()}"'), encoding="utf-8"
    )
