"""How the sandbox wraps a program: the isolation levels, their limits, and the command line and
environment that give each (see harness/sandbox.py for running it and reading the outcome).

Levels, strongest first (the sandbox takes the first that works on the machine):

- bwrap: bubblewrap with new network, PID, IPC and UTS namespaces, a read-only root filesystem,
  a private /tmp, the home folders hidden; as root the program runs as `nobody`, which makes
  RLIMIT_NPROC count (root is exempt from it) and keeps it from everything root owns.
- unshare: util-linux `unshare` with new network and PID namespaces (`-r` when not root); the
  filesystem is shared.
- rlimits: a plain process with the limits only.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

LEVELS = ("bwrap", "unshare", "rlimits")
NOBODY = 65534
PROGRAM_FILE = "program.py"
TIMES_MARKER = "@@harness-sandbox-times@@"  # after it on stderr: the shell's `times` of the program


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock; the whole process tree is killed after it
    cpu_s: int | None = None  # RLIMIT_CPU; default: the timeout rounded up, plus one
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: every file the program writes, its output included
    processes: int = 64  # RLIMIT_NPROC, on top of what the user already runs (see _nproc_limit)
    open_files: int = 128  # RLIMIT_NOFILE
    output_bytes: int = 64 << 10  # how much of stdout and of stderr a result keeps


@dataclass(frozen=True)
class Isolation:
    """What a program run by this sandbox actually gets."""

    level: str  # bwrap | unshare | rlimits
    network: bool  # own network namespace: no network at all
    pid_namespace: bool  # cannot see or signal the harness or other processes
    filesystem: str  # "read-only" (a private /tmp and the work folder writable) or "shared"
    user: str  # the user the program runs as
    process_limit: bool  # RLIMIT_NPROC binds (it does not for root)

    def describe(self) -> str:
        parts = [self.level,
                 "no network" if self.network else "network shared",
                 "own PID namespace" if self.pid_namespace else "PIDs shared",
                 f"filesystem {self.filesystem}", f"user {self.user}",
                 "process limit" if self.process_limit else "no process limit"]
        return ", ".join(parts)


@dataclass(frozen=True)
class Plan:
    """An isolation level as this machine can give it: what the program gets, and how."""

    isolation: Isolation
    drop_to_nobody: bool
    user_namespace: bool


def candidates(level: str) -> list[Plan]:
    root = os.geteuid() == 0
    me = "root" if root else _user_name()
    plans: list[Plan] = []
    if level in ("auto", "bwrap") and shutil.which("bwrap"):
        if root:
            plans.append(Plan(Isolation("bwrap", True, True, "read-only", "nobody", True), True, False))
        plans.append(Plan(Isolation("bwrap", True, True, "read-only", me, not root), False, True))
    if level in ("auto", "unshare") and shutil.which("unshare"):
        if root:
            plans.append(Plan(Isolation("unshare", True, True, "shared", "nobody", True), True, False))
            plans.append(Plan(Isolation("unshare", True, True, "shared", "root", False), False, False))
        else:
            plans.append(Plan(Isolation("unshare", True, True, "shared", me, True), False, True))
    if level in ("auto", "rlimits"):
        plans.append(Plan(Isolation("rlimits", False, False, "shared", me, not root), False, False))
    return plans


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _interpreter_paths(python: str) -> list[Path]:
    """Folders the interpreter needs: its own, the stdlib's and the virtual environment's."""
    paths = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths.add(Path(python).resolve().parent)
    # Drop folders inside others: binding the outer one brings them along.
    return sorted(p for p in paths if not any(q != p and q in p.parents for q in paths))


def _hidden_folders(python: str, drop_to_nobody: bool) -> list[Path]:
    """Folders to cover with an empty tmpfs: the home folders (keys, tokens, shell history) and,
    when the program runs as nobody, every folder that nobody could not pass through anyway."""
    hidden = {Path("/root"), Path.home()}
    if drop_to_nobody:
        for path in _interpreter_paths(python):
            for folder in (*reversed(path.parents), path):
                if folder != Path("/") and folder.is_dir() and not folder.stat().st_mode & 0o001:
                    hidden.add(folder)
                    break
    existing = {h.resolve() for h in hidden if h.is_dir() and h.resolve() != Path("/")}
    return sorted(h for h in existing if not any(o != h and o in h.parents for o in existing))


def _bwrap_argv(plan: Plan, python: str, workdir: Path) -> list[str]:
    argv = ["bwrap", "--ro-bind", "/", "/"]
    for folder in _hidden_folders(python, plan.drop_to_nobody):
        argv += ["--tmpfs", str(folder)]
        # The interpreter may live under a hidden folder (pyenv under /root): show it again,
        # read-only, and nothing else of that folder.
        for path in _interpreter_paths(python):
            if folder == path or folder in path.parents:
                # bwrap would make the folders on the way private (0700): nobody must pass them.
                argv += [*_open_folders(folder, path), "--ro-bind", str(path), str(path)]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # A virtual environment under /tmp (a CI checkout, say) must stay visible under the private /tmp.
    tmp = Path("/tmp").resolve()
    for path in _interpreter_paths(python):
        if tmp in path.parents:
            argv += [*_open_folders(tmp, path), "--ro-bind", str(path), str(path)]
    argv += [*_open_folders(Path("/tmp"), workdir), "--bind", str(workdir), str(workdir), "--chdir", str(workdir),
             "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--die-with-parent", "--new-session"]
    if plan.user_namespace:
        argv.append("--unshare-user")
    return argv


def _open_folders(top: Path, path: Path) -> list[str]:
    """bwrap arguments creating the folders between `top` (a fresh tmpfs) and the mount point
    `path` as 0755: bwrap would make them private (0700), and nobody must pass through them."""
    argv: list[str] = []
    for step in reversed(path.parents):
        if top in step.parents:
            argv += ["--perms", "0755", "--dir", str(step)]
    return argv


def _nproc_limit(limits: Limits, plan: Plan) -> int:
    # RLIMIT_NPROC counts every task of the user, the harness's own threads included; as
    # nobody the program is (nearly) alone, otherwise it gets `processes` more than exist now.
    if plan.drop_to_nobody:
        return limits.processes
    uid = os.geteuid()
    running = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        uids = proc.info.get("uids")
        if uids is not None and uids.real == uid:
            running += proc.info.get("num_threads") or 1
    return running + limits.processes


def rlimits(limits: Limits, plan: Plan) -> dict[str, int]:
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    return {"cpu": cpu, "as": limits.memory_bytes, "fsize": limits.file_bytes,
            "nproc": _nproc_limit(limits, plan), "nofile": limits.open_files}


def _limit_args(limits: Limits, plan: Plan) -> list[str]:
    # prlimit sets the limits right before exec, inside the namespaces. Without it (not Linux)
    # Popen's preexec_fn does, before the wrapper (see preexec).
    if shutil.which("prlimit") is None:
        return []
    return ["prlimit", *(f"--{name}={value}" for name, value in rlimits(limits, plan).items()), "--"]


def preexec(limits: dict[str, int]) -> Callable[[], None]:
    import resource

    names = {"cpu": "RLIMIT_CPU", "as": "RLIMIT_AS", "fsize": "RLIMIT_FSIZE", "nproc": "RLIMIT_NPROC",
             "nofile": "RLIMIT_NOFILE"}

    def apply() -> None:
        for name, value in limits.items():
            which = getattr(resource, names[name], None)
            if which is not None:
                try:
                    resource.setrlimit(which, (value, value))
                except (ValueError, OSError):
                    pass  # a limit this platform does not take (RLIMIT_AS on macOS)

    return apply


def command(plan: Plan, python: str, workdir: Path, limits: Limits) -> list[str]:
    # A shell runs the program and then reports the CPU time of its children after a marker on
    # stderr: the wrappers' own resource usage does not include the program's (bwrap's does not).
    # The shell also keeps the program from being PID 1 of a new namespace, where default-action
    # signals are ignored. -S: no site module, which halves the interpreter's start (the
    # installed packages come back through PYTHONPATH, see environment); not -I, which would
    # ignore PYTHONHASHSEED (the environment is the sandbox's own anyway).
    shell = f'"$@"; s=$?; printf "\\n{TIMES_MARKER}\\n" >&2; times >&2; exit $s'
    program = [*_limit_args(limits, plan), "sh", "-c", shell, "sh", python, "-S", PROGRAM_FILE]
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if plan.drop_to_nobody else []
    level = plan.isolation.level
    if level == "bwrap":
        return [*_bwrap_argv(plan, python, workdir), *drop, *program]
    if level == "unshare":
        user = ["--map-root-user"] if plan.user_namespace else []
        return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", *drop, *program]
    return program


@functools.cache
def _site_packages() -> str:
    # The interpreter's installed packages (numpy, say), as plain path entries: .pth files are not
    # run, so editable installs (the harness itself) stay out of the program's reach.
    paths = sysconfig.get_paths()
    return os.pathsep.join(dict.fromkeys(p for p in (paths["purelib"], paths["platlib"]) if os.path.isdir(p)))


def environment(workdir: Path) -> dict[str, str]:
    # Built from nothing, not filtered: whatever secrets the harness holds stay out.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
            "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": _site_packages(), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
