"""Who is asking: the OS user, and the SSH client address when there is one."""

from __future__ import annotations

import getpass
import os


def current_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    ssh = os.environ.get("SSH_CONNECTION", "").split()
    return f"{user} from {ssh[0]}" if ssh else user


def user_name(actor: str) -> str:
    return actor.split(" from ", 1)[0]
