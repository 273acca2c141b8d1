"""Helpers of the backends that talk to a server on this machine (openai-compatible, Ollama)."""

from __future__ import annotations


def pid_listening_on(port: int) -> int | None:
    """The PID of the local process listening on a TCP port, if this user may see it."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.AccessDenied, OSError):
        return None
    return None
