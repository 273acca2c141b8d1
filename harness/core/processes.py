"""Whether a process runs, for the files that name a process by its PID (a model host's supervisor,
an endpoint pool's members)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """The process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    try:  # a zombie (our own child, not yet reaped) has ended too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
