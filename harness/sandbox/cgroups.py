"""Control groups for the sandbox: one group per jail, holding all of its processes.

A memory limit there counts what RLIMIT_AS misses (memfd, /dev/shm and tmpfs files, page cache
the program dirties), a process limit holds for `nobody` too, and killing the group ends every
process the program started, `setsid` or not. cgroup v2 (one hierarchy) and v1 (separate
`memory` and `pids` hierarchies) are both used where the machine lets this process create groups;
elsewhere `Cgroup.create` returns None and the sandbox says so (Isolation.cgroup).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MOUNT = Path("/sys/fs/cgroup")


def _own_paths() -> dict[str, str]:
    """This process's group per hierarchy: {"": path} for v2, {"memory": path, ...} for v1."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


@dataclass
class Cgroup:
    version: int
    folders: list[Path]  # v2: one; v1: memory and pids
    _oom_before: int = field(default=0)

    @property
    def describe(self) -> str:
        return f"cgroup v{self.version} memory+pids"

    @classmethod
    def create(cls, name: str) -> Cgroup | None:
        if os.geteuid() != 0 and not os.access(MOUNT, os.W_OK):
            return None
        own = _own_paths()
        v2 = (MOUNT / "cgroup.controllers").exists()
        try:
            group = cls._create_v2(name, own.get("", "/")) if v2 else cls._create_v1(name, own)
        except OSError:
            return None
        if group is not None and not group._joinable():
            group.remove()
            return None
        return group

    def _joinable(self) -> bool:
        """Whether a process can really join (delegation, the "no internal processes" rule): a
        jail that cannot would fail to start, so the sandbox goes without the group instead."""
        script = "".join(f"echo $$ > '{procs}' || exit 1; " for procs in self.procs_files)
        try:
            return subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=10,
                                  check=False).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    @classmethod
    def _create_v2(cls, name: str, own: str) -> Cgroup | None:
        # Next to this process's group where it may have children with controllers (the "no
        # internal processes" rule forbids them below a group holding processes), else the root.
        own_folder = MOUNT / own.lstrip("/")
        for parent in dict.fromkeys([own_folder.parent if own_folder != MOUNT else MOUNT, MOUNT]):
            try:
                controllers = (parent / "cgroup.controllers").read_text().split()
                if not {"memory", "pids"} <= set(controllers):
                    continue
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if not {"memory", "pids"} <= set(enabled):
                    (parent / "cgroup.subtree_control").write_text("+memory +pids")
                folder = parent / name
                _remove_stale(parent)
                folder.mkdir()
                return cls(2, [folder])
            except OSError:
                continue
        return None

    @classmethod
    def _create_v1(cls, name: str, own: dict[str, str]) -> Cgroup | None:
        folders = []
        for controller in ("memory", "pids"):
            hierarchy = MOUNT / controller
            if not (hierarchy / "cgroup.procs").exists():
                return None
            folder = hierarchy / own.get(controller, "/").lstrip("/") / name
            _remove_stale(folder.parent)
            folder.mkdir()
            folders.append(folder)
        return cls(1, folders)

    @property
    def procs_files(self) -> list[Path]:
        return [folder / "cgroup.procs" for folder in self.folders]

    def limit(self, memory_bytes: int, processes: int) -> None:
        if self.version == 2:
            folder = self.folders[0]
            _write(folder / "memory.max", memory_bytes)
            _write(folder / "memory.swap.max", 0, optional=True)  # swap would be memory beyond the limit
            _write(folder / "pids.max", processes)
        else:
            memory, pids = self.folders
            # memory+swap may never be below memory: raise it first, lower it last.
            _write(memory / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
            _write(memory / "memory.limit_in_bytes", memory_bytes)
            _write(memory / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
            _write(pids / "pids.max", processes)
        self._oom_before = self.oom_kills()

    def oom_kills(self) -> int:
        """Processes the memory limit has killed so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.folders[0] / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def memory_limit_hit(self) -> bool:
        """Whether the memory limit killed something since the last check; resets the check."""
        now = self.oom_kills()
        hit, self._oom_before = now > self._oom_before, now
        return hit

    def processes(self) -> list[int]:
        pids: set[int] = set()
        for procs in self.procs_files:
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
        return sorted(pids)

    def kill(self) -> None:
        """SIGKILL every process in the group, until none is left (a fork bomb races the sweep)."""
        if self.version == 2 and (self.folders[0] / "cgroup.kill").exists():
            _write(self.folders[0] / "cgroup.kill", 1, optional=True)
        for _ in range(200):
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.005)

    def remove(self) -> None:
        self.kill()
        for folder in self.folders:
            for _ in range(100):  # the group can be removed once its last process is reaped
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _remove_stale(parent: Path) -> None:
    """Empty groups of harness processes that died without closing their sandbox (SIGKILL)."""
    for folder in parent.glob("harness-sandbox-*-*"):
        try:
            pid = int(folder.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if not os.path.exists(f"/proc/{pid}"):
            try:
                folder.rmdir()  # fails, harmlessly, while a process is still inside
            except OSError:
                pass


def _write(path: Path, value: int, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        if not optional:
            raise
