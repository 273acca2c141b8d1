"""Running untrusted generated code: each program in its own contained process.

A program gets a fresh temporary directory as its working directory and HOME, a scrubbed
environment (no API keys), rlimits on CPU time, address space, file size, processes and open
files, a wall-clock timeout that kills the whole process tree, and its output capped (stdout and
stderr go to files under RLIMIT_FSIZE, so printing a gigabyte stops at the cap).

How much more it gets depends on the machine; the strongest level that works here is chosen once
per process and reported (`Sandbox.isolation`), because a run's figures mean little without it:

- bwrap: bubblewrap with new network, PID, IPC and UTS namespaces, a read-only root filesystem,
  a private /tmp, the home folders hidden; as root the program runs as `nobody`, which makes
  RLIMIT_NPROC count (root is exempt from it) and keeps it from everything root owns.
- unshare: util-linux `unshare` with new network and PID namespaces (`-r` when not root); the
  filesystem is shared.
- rlimits: a plain process with the limits only.

Only the wall-clock timeout and the rlimits hold at every level; the network, the filesystem and
other processes are protected only by the first two.
"""

from __future__ import annotations

import functools
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

Outcome = Literal["pass", "fail", "timeout", "crash", "sandbox_error"]
LEVELS = ("bwrap", "unshare", "rlimits")
NOBODY = 65534
PROGRAM_FILE = "program.py"
# Wrapper programs that name themselves at the start of their own error messages.
_WRAPPER_ERRORS = ("bwrap: ", "unshare: ", "setpriv: ", "prlimit: ", "sh: ")
_TIMES_MARKER = "@@harness-sandbox-times@@"
_TIMES = re.compile(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s")
_TRACEBACK_LINE = re.compile(r'File "[^"]*' + re.escape(PROGRAM_FILE) + r'", line (\d+)')


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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}


@dataclass
class Result:
    outcome: Outcome
    detail: str = ""  # the failed assertion, the exception, the signal or the limit hit
    exit_code: int | None = None
    signal: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_kb: int | None = None  # None where the wrapper hides it (bwrap)
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False  # stdout or stderr was longer than Limits.output_bytes
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data


@dataclass(frozen=True)
class _Plan:
    """How to wrap a command: an Isolation and the argv prefix that gives it."""

    isolation: Isolation
    drop_to_nobody: bool
    user_namespace: bool


class Sandbox:
    """Runs Python programs, one contained process each. Thread-safe; cheap to keep around."""

    def __init__(self, limits: Limits | None = None, level: str = "auto",
                 python: str | None = None) -> None:
        if level != "auto" and level not in LEVELS:
            raise ValueError(f"sandbox level {level!r}: expected auto or one of {', '.join(LEVELS)}")
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self._plan = _choose_plan(level, self.python)

    @property
    def isolation(self) -> Isolation:
        return self._plan.isolation

    def run(self, program: str, limits: Limits | None = None) -> Result:
        """Run `program` (Python source) and say how it ended."""
        return _run(self._plan, self.python, program, limits or self.limits)


# -- choosing the isolation ---------------------------------------------------------------------


def _candidates(level: str) -> list[_Plan]:
    root = os.geteuid() == 0
    me = "root" if root else _user_name()
    plans: list[_Plan] = []
    if level in ("auto", "bwrap") and shutil.which("bwrap"):
        if root:
            plans.append(_Plan(Isolation("bwrap", True, True, "read-only", "nobody", True), True, False))
        plans.append(_Plan(Isolation("bwrap", True, True, "read-only", me, not root), False, True))
    if level in ("auto", "unshare") and shutil.which("unshare"):
        if root:
            plans.append(_Plan(Isolation("unshare", True, True, "shared", "nobody", True), True, False))
            plans.append(_Plan(Isolation("unshare", True, True, "shared", "root", False), False, False))
        else:
            plans.append(_Plan(Isolation("unshare", True, True, "shared", me, True), False, True))
    if level in ("auto", "rlimits"):
        plans.append(_Plan(Isolation("rlimits", False, False, "shared", me, not root), False, False))
    return plans


@functools.lru_cache(maxsize=None)
def _choose_plan(level: str, python: str) -> _Plan:
    # Probe each candidate with a real program: a namespace the kernel refuses, a bwrap that
    # cannot mount, an interpreter `nobody` cannot reach all show up here, not mid-benchmark.
    tried = []
    probe_limits = Limits(timeout_s=20.0)
    for plan in _candidates(level):
        result = _run(plan, python, "print('sandbox ok')", probe_limits)
        if result.passed and result.stdout.strip() == "sandbox ok":
            return plan
        tried.append(f"{plan.isolation.describe()}: {result.outcome} {result.detail}".strip())
    raise RuntimeError(f"no sandbox level {level!r} works on this machine; tried: " + "; ".join(tried)
                       if tried else f"sandbox level {level!r} is not installed here (bwrap, unshare)")


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


# -- building the command -----------------------------------------------------------------------


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


def _bwrap_argv(plan: _Plan, python: str, workdir: Path) -> list[str]:
    argv = ["bwrap", "--ro-bind", "/", "/"]
    for folder in _hidden_folders(python, plan.drop_to_nobody):
        argv += ["--tmpfs", str(folder)]
        # The interpreter may live under a hidden folder (pyenv under /root): show it again,
        # read-only, and nothing else of that folder.
        for path in _interpreter_paths(python):
            if folder == path or folder in path.parents:
                # bwrap would make the folders on the way private (0700): nobody must pass them.
                argv += [*_open_folders(folder, path), "--ro-bind", str(path), str(path)]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             *_open_folders(Path("/tmp"), workdir), "--bind", str(workdir), str(workdir), "--chdir", str(workdir),
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


def _nproc_limit(limits: Limits, plan: _Plan) -> int:
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


def _limit_args(limits: Limits, plan: _Plan) -> list[str]:
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    return ["prlimit", f"--cpu={cpu}", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}",
            f"--nproc={_nproc_limit(limits, plan)}", f"--nofile={limits.open_files}", "--"]


def _command(plan: _Plan, python: str, workdir: Path, limits: Limits) -> list[str]:
    # A shell runs the program and then reports the CPU time of its children after a marker on
    # stderr: the wrappers' own resource usage does not include the program's (bwrap's does not).
    # The shell also keeps the program from being PID 1 of a new namespace, where default-action
    # signals are ignored. -s: no user site-packages; not -I, which would ignore PYTHONHASHSEED
    # (the environment is the sandbox's own anyway).
    shell = f'"$@"; s=$?; printf "\\n{_TIMES_MARKER}\\n" >&2; times >&2; exit $s'
    program = [*_limit_args(limits, plan), "sh", "-c", shell, "sh", python, "-s", PROGRAM_FILE]
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if plan.drop_to_nobody else []
    level = plan.isolation.level
    if level == "bwrap":
        return [*_bwrap_argv(plan, python, workdir), *drop, *program]
    if level == "unshare":
        user = ["--map-root-user"] if plan.user_namespace else []
        return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", *drop, *program]
    return program


def _environment(workdir: Path) -> dict[str, str]:
    # Built from nothing, not filtered: whatever secrets the harness holds stay out.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
            "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# -- running ------------------------------------------------------------------------------------


def _run(plan: _Plan, python: str, program: str, limits: Limits) -> Result:
    root = Path(tempfile.mkdtemp(prefix="harness-sandbox-"))
    try:
        workdir = root / "work"
        workdir.mkdir()
        (workdir / PROGRAM_FILE).write_text(program, encoding="utf-8")
        if plan.drop_to_nobody:
            for path in (root, workdir, workdir / PROGRAM_FILE):
                os.chown(path, NOBODY, NOBODY)
        # Output goes to files outside the work folder: RLIMIT_FSIZE caps them, and nobody has
        # to drain a pipe that a program could fill faster than we read.
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            try:
                command = _command(plan, python, workdir, limits)
                start = time.perf_counter()
                proc = subprocess.Popen(command, cwd=workdir, env=_environment(workdir), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, close_fds=True, start_new_session=True)
            except OSError as exc:
                return Result("sandbox_error", f"could not start the sandbox: {exc}")
            status, rusage, timed_out = _wait(proc, limits.timeout_s)
            wall = time.perf_counter() - start
        return _result(plan, program, root, limits, status, rusage, timed_out, wall)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any, bool]:
    """Wait for the program or the deadline, then reap it with its resource usage."""
    timed_out = False
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            timed_out = not select.select([pidfd], [], [], timeout)[0]
        finally:
            os.close(pidfd)
    else:
        deadline, delay = time.monotonic() + timeout, 0.001
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    if timed_out:
        _kill_tree(proc.pid)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not try to reap it again
    _kill_tree(proc.pid, leader_gone=True)  # stragglers left in the group (rlimits level)
    return status, rusage, timed_out


def _kill_tree(pid: int, leader_gone: bool = False) -> None:
    # With a PID namespace, killing the wrapper tears the namespace down with everything in it;
    # without one, the process group and the descendants we can still find are what we can reach.
    victims = []
    if not leader_gone:
        try:
            victims = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for child in victims:
        try:
            child.kill()
        except psutil.Error:
            pass


def _read(path: Path, limit: int, tail: bool = False) -> tuple[str, bool]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if tail and size > limit:
            handle.seek(size - limit)
        data = handle.read(limit)
    return data.decode("utf-8", errors="replace"), size > limit


def _result(plan: _Plan, program: str, root: Path, limits: Limits, status: int, rusage: Any,
            timed_out: bool, wall: float) -> Result:
    stdout, cut_out = _read(root / "stdout", limits.output_bytes)
    stderr, cut_err = _read(root / "stderr", limits.output_bytes, tail=True)  # the traceback is last
    stderr, marker, times = stderr.rpartition(f"\n{_TIMES_MARKER}\n")
    if not marker:  # the shell never got to report (killed at the deadline)
        stderr, times = times, ""
    children = _TIMES.findall(times)
    cpu = sum(int(m) * 60 + float(s) for m, s in (children[-1][:2], children[-1][2:])) if len(children) == 2 \
        else rusage.ru_utime + rusage.ru_stime
    # bwrap's own usage leaves the sandboxed processes out; the other levels wait for them.
    rss = None if plan.isolation.level == "bwrap" else rusage.ru_maxrss
    result = Result("crash", wall_s=wall, cpu_s=cpu, max_rss_kb=rss, stdout=stdout, stderr=stderr,
                    truncated=cut_out or cut_err)
    code = os.waitstatus_to_exitcode(status)
    result.exit_code = code
    # The shell (and bwrap) report a signal death as 128 + signal; a killed wrapper as -signal.
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum is not None:
        try:
            result.signal = signal.Signals(signum).name
        except ValueError:
            result.signal = str(signum)
    if timed_out:
        result.outcome, result.detail = "timeout", f"no exit within {limits.timeout_s:g} s (wall clock)"
    elif code == 0:
        result.outcome = "pass"
    elif result.signal == "SIGXCPU":
        result.outcome, result.detail = "timeout", "CPU time limit exceeded (SIGXCPU)"
    elif result.signal == "SIGXFSZ":
        result.detail = f"file size limit of {limits.file_bytes} bytes exceeded (SIGXFSZ): output or a file too large"
    elif stderr.startswith(_WRAPPER_ERRORS) and code in (1, 126, 127):
        result.outcome, result.detail = "sandbox_error", stderr.strip().splitlines()[0]
    else:
        last = _last_line(stderr)
        if last.startswith("AssertionError"):
            result.outcome, result.detail = "fail", _failed_assertion(program, stderr) or last
        elif result.signal is not None:
            result.detail = f"killed by {result.signal}" + (f" ({last})" if last else "")
        else:
            result.detail = last or f"exit status {code}"
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _failed_assertion(program: str, stderr: str) -> str | None:
    """`line N: assert ...`: the program's line the traceback ends on."""
    found = _TRACEBACK_LINE.findall(stderr)
    if not found:
        return None
    number = int(found[-1])
    lines = program.splitlines()
    source = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    return f"line {number}: {source}" if source else f"line {number}"
