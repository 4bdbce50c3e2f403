"""Who is asking: the OS user, and the SSH client address when there is one.

The user comes from the process's real uid, never from ``LOGNAME`` or ``USER``: anyone
can set those (``LOGNAME=someone-else batchdeck cancel 1``), and the audit must not
take a name on the word of the environment. The SSH client address can only come from
the environment (``SSH_CONNECTION``, or ``SSH_CLIENT`` where a server or ``sudo`` sets
only that one); it is recorded only when it reads as an IP address.
"""

from __future__ import annotations

import ipaddress
import os
import pwd


def os_user() -> str:
    """The name of the process's real uid (``uid1234`` when the system has no name for it)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def ssh_client() -> str | None:
    """The SSH client's address, from ``SSH_CONNECTION`` or else ``SSH_CLIENT``."""
    for var in ("SSH_CONNECTION", "SSH_CLIENT"):
        words = os.environ.get(var, "").split()
        if not words:
            continue
        try:
            return str(ipaddress.ip_address(words[0]))
        except ValueError:
            return None  # not an address: nothing trustworthy to record
    return None


def current_actor() -> str:
    user = os_user()
    client = ssh_client()
    return f"{user} from {client}" if client else user


def user_name(actor: str) -> str:
    return actor.split(" from ", 1)[0]
