"""``batchdeck settings [KEY [VALUE]]``: every setting, one, or (a manager) a change
(``engine.flows.settings``)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli.shared import EXIT_OK, EXIT_USAGE, Fail, actor, flow
from engine.core.safe_text import safe_line


def cmd_settings(args: argparse.Namespace) -> int:
    """Prints ``KEY = VALUE`` lines (a value alone for ``settings KEY``); a bad key or
    value is a usage Fail, a change by someone who may not a refusal."""
    import time

    from engine.core.setting_values import SettingError
    from engine.flows import settings

    write = args.value is not None

    def shown(sql: Any) -> list[str]:
        if args.key is None:
            return [f"{k} = {v}" for k, v in settings.all_settings(sql).items()]
        value = settings.get(sql, args.key)
        return [f"{args.key} = {value}" if write else value]

    def go(reading: Any, transaction: Any) -> list[str]:
        if write:
            settings.put(
                transaction, args.key, args.value, actor=actor(), at=time.time(), force=args.force
            )
        with reading() as sql:
            lines = shown(sql)
            if write and args.key == "managers":  # who will be managers, said
                lines.append(settings.managers_line(settings.get(sql, "managers"), actor()))
            return lines

    try:
        lines = flow(args, go, write=write)
    except SettingError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    for line in lines:
        print(safe_line(line.rstrip()))
    return EXIT_OK
