"""Where a model host lives on disk: its folder, socket, key, lock and exit status.

A private host (one client) gets a fresh temporary folder. A shared host (every pytest-xdist
worker of a run on this machine) gets a folder named by a digest of the run id and the model's
registry entry, so each worker finds the same one:

    <tmp>/harness-hosts-<uid>/<digest>/
        lock            flock: one client at a time starts, probes or finds the host; the host
                        takes it too before it ends, so nobody connects to a host on its way out
        choice.json     the options the starter settled on (extra buffer types off after a probe)
        current         the generation now serving (a number)
        gen-<n>/        one folder per host start: host.sock, key (0600), stderr.log, and
                        exit.json, written by the host's supervisor when the host ends

A host's generation folder outlives it, so a client that saw the host die reads its exit status
and stderr tail, even after another client started the next generation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.core.processes import alive


def _controller() -> int:
    """The process that runs the session: an xdist worker's parent (execnet starts workers as
    children of the controller), else this process. Two sessions given one --run-id (the same
    test run twice at once, by two people) must not share hosts."""
    return os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()


def shared_folder(shared_by: str, spec_json: str) -> Path:
    """The folder every client of one run (its session, this harness's code) and model agrees on."""
    package = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(f"{shared_by}\n{_controller()}\n{package}\n{spec_json}".encode()).hexdigest()[:24]
    root = Path(tempfile.gettempdir()) / f"harness-hosts-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = root / digest
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`: released when the block ends or the process dies."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class HostPlace:
    """One host's folder: `private` ones are removed with their host, shared ones persist."""

    def __init__(self, folder: Path, *, private: bool) -> None:
        self.folder = folder
        self.private = private

    @classmethod
    def new_private(cls) -> HostPlace:
        return cls(Path(tempfile.mkdtemp(prefix="harness-host-")), private=True)

    @property
    def lock_path(self) -> Path:
        return self.folder / "lock"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.lock_path)

    # -- generations ------------------------------------------------------------------------------
    def current(self) -> int | None:
        try:
            return int((self.folder / "current").read_text().strip())
        except (OSError, ValueError):
            return None

    def generation(self, number: int) -> Path:
        return self.folder / f"gen-{number}"

    def new_generation(self, key: bytes) -> tuple[int, Path]:
        """A fresh generation folder with the socket's key (call under the lock)."""
        number = (self.current() or 0) + 1
        folder = self.generation(number)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        key_path = folder / "key"
        key_path.write_bytes(b"")
        key_path.chmod(0o600)
        key_path.write_bytes(key.hex().encode())
        (self.folder / "current").write_text(str(number))
        return number, folder

    @staticmethod
    def key(generation: Path) -> bytes | None:
        try:
            return bytes.fromhex((generation / "key").read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def exit_status(generation: Path, supervisor: int | None = None, wait_s: float = 30.0) -> int | None:
        """The host's exit status as its supervisor wrote it (-N for signal N), waiting while the
        supervisor lives (a busy machine can take seconds to schedule it); None where it never says."""
        deadline = time.monotonic() + wait_s
        while True:
            gone = supervisor is not None and not alive(supervisor)
            try:
                return int(json.loads((generation / "exit.json").read_text())["returncode"])
            except (OSError, ValueError, KeyError, TypeError):
                if gone or time.monotonic() > deadline:
                    return None
                time.sleep(0.05)

    # -- what the starter chose -------------------------------------------------------------------
    def read_choice(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / "choice.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_choice(self, options: dict[str, Any], choice: dict[str, Any]) -> None:
        temporary = self.folder / f"choice.{os.getpid()}.tmp"
        temporary.write_text(json.dumps({"options": options, "choice": choice}))
        os.replace(temporary, self.folder / "choice.json")

    def remove(self) -> None:
        if self.private:
            shutil.rmtree(self.folder, ignore_errors=True)


def write_exit_status(generation: Path, returncode: int) -> None:
    temporary = generation / f"exit.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"returncode": returncode}))
    os.replace(temporary, generation / "exit.json")
