"""What the command line needs of the service package before anything is loaded:
the version and the ``--metrics`` address. Standard library only."""

from __future__ import annotations

DEFAULT_METRICS_HOST = "127.0.0.1"


def version() -> str:
    """The installed distribution's version ("unknown" when run from a bare tree)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("batchdeck")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (then on 127.0.0.1: metrics are served
    beyond this host only when asked); port 0: any free port (``serve`` logs which).
    Raises ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_METRICS_HOST, text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9464), got {text!r}")
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"expected a port from 0 to 65535 in HOST:PORT, got {text!r}")
    return host, int(port)
