"""``batchdeck service unit``: a systemd unit file for ``batchdeck serve``.

``Type=notify``: systemd waits for READY (the servers run) and restarts the engine when
it stops petting the watchdog (``engine.service.notify``). ``KillMode=mixed``: a stop
sends SIGTERM to ``serve`` alone, which stops its server processes itself (their runs
go back to Ready); whatever is left when ``TimeoutStopSec`` is over gets SIGKILL.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys
from urllib.parse import urlsplit

from engine.cli.main import EXIT_OK, EXIT_USAGE, Fail, server_args

DEFAULT_WATCHDOG_S = 30


def systemd_quote(arg: str) -> str:
    """One ExecStart word: quoted where systemd would split or expand it."""
    arg = arg.replace("%", "%%")
    if arg and not any(c in arg for c in " \t\"'\\;$"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def executable() -> str:
    """The ``batchdeck`` this command runs as (an absolute path, as ExecStart needs)."""
    me = sys.argv[0] if sys.argv else ""
    if os.path.basename(me) == "batchdeck" and os.path.isfile(me):
        return os.path.abspath(me)
    beside = os.path.join(os.path.dirname(sys.executable), "batchdeck")  # a venv's
    if os.path.isfile(beside):
        return beside
    found = shutil.which("batchdeck")
    return os.path.abspath(found) if found else "/usr/local/bin/batchdeck"


def unit_text(
    *,
    user: str,
    db: str,
    servers: dict[str, int],
    exe: str,
    metrics: tuple[str, int] | None = None,
    watchdog_s: int = DEFAULT_WATCHDOG_S,
) -> str:
    """The unit file. ``db``: an absolute path or a PostgreSQL URL (no password)."""
    argv = [exe, "serve", "--db", db]
    for name, slots in servers.items():
        argv += ["--server", f"{name}:{slots}"]
    if metrics is not None:
        host, port = metrics
        argv += ["--metrics", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    names = ", ".join(servers)
    writable = "" if "://" in db else f"ReadWritePaths={systemd_quote(os.path.dirname(db))}\n"
    return f"""\
# batchdeck engine, written by `batchdeck service unit`.
# Install: save as /etc/systemd/system/batchdeck.service, then
#   systemctl daemon-reload && systemctl enable --now batchdeck
[Unit]
Description=batchdeck engine ({names})
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
User={user}
ExecStart={" ".join(systemd_quote(a) for a in argv)}
# Secrets (PGPASSWORD, a remote action's credentials) go here, never in this file.
EnvironmentFile=-/etc/batchdeck/batchdeck.env
Environment=PYTHONUNBUFFERED=1
# The read statements' cache (engine.read_sql) goes in /var/cache/batchdeck.
CacheDirectory=batchdeck
Environment=XDG_CACHE_HOME=%C/batchdeck
# Restarted when it stops petting: no database write for the lease, or a stuck loop.
WatchdogSec={watchdog_s}
Restart=on-failure
RestartSec=5
TimeoutStartSec=120
# A stop: SIGTERM to serve alone, which stops its servers (runs go back to Ready);
# SIGKILL to anything left after TimeoutStopSec.
KillMode=mixed
TimeoutStopSec=60

# Hardening. Recipes that write elsewhere (a bulk import's target, an export's file)
# need their directories added to ReadWritePaths.
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=read-only
{writable}ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
LockPersonality=yes
SystemCallArchitectures=native
UMask=0027

[Install]
WantedBy=multi-user.target
"""


def cmd_unit(args: argparse.Namespace) -> int:
    from engine.core.dburl import parse_db
    from engine.sql.sqlite_file import default_db_path

    try:
        servers = server_args(args.server)
    except ValueError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    try:
        target = parse_db(args.unit_db or default_db_path())
    except ValueError as exc:
        raise Fail(f"--db: {exc}", EXIT_USAGE) from None
    if target.is_sqlite:
        db = os.path.abspath(target.path)
    else:
        if urlsplit(target.url).password is not None:
            raise Fail(
                "--db: leave the password out of the URL (every user can read a unit "
                "file); put PGPASSWORD in /etc/batchdeck/batchdeck.env",
                EXIT_USAGE,
            )
        db = target.url
    user = args.user or getpass.getuser()
    if not user or any(c.isspace() or c in "\"'\\%$" for c in user):
        raise Fail(f"--user {user!r}: not a user name", EXIT_USAGE)
    print(
        unit_text(
            user=user,
            db=db,
            servers=servers,
            exe=executable(),
            metrics=args.metrics,
            watchdog_s=args.watchdog or DEFAULT_WATCHDOG_S,
        ),
        end="",
    )
    return EXIT_OK
