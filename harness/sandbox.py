"""Running untrusted generated code: each program in its own contained process.

A program gets a fresh temporary directory as its working directory and HOME, a scrubbed
environment (no API keys), rlimits on CPU time, address space, file size, processes and open
files, a wall-clock timeout that kills the whole process tree, and its output capped (stdout and
stderr go to files under RLIMIT_FSIZE, so printing a gigabyte stops at the cap).

How much more it gets depends on the machine (harness/isolation.py: bwrap, unshare, rlimits); the
strongest level that works here is chosen once per process and reported (`Sandbox.isolation`),
because a run's figures mean little without it. Only the wall-clock timeout and the rlimits hold
at every level; the network, the filesystem and other processes are protected by the first two.
"""

from __future__ import annotations

import functools
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from harness.isolation import (
    LEVELS,
    NOBODY,
    PROGRAM_FILE,
    TIMES_MARKER,
    Isolation,
    Limits,
    Plan,
    candidates,
    command,
    environment,
    preexec,
    rlimits,
)

__all__ = ["LEVELS", "Isolation", "Limits", "Result", "Sandbox", "SandboxError"]

Outcome = Literal["pass", "fail", "timeout", "crash", "sandbox_error"]
# Wrapper programs that name themselves at the start of their own error messages.
_WRAPPER_ERRORS = ("bwrap: ", "unshare: ", "setpriv: ", "prlimit: ", "sh: ")
_TIMES = re.compile(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s")
_TRACEBACK_LINE = re.compile(r'File "[^"]*' + re.escape(PROGRAM_FILE) + r'", line (\d+)')


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): the case is an error, never a wrong answer."""


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

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


@functools.cache
def _choose_plan(level: str, python: str) -> Plan:
    # Probe each candidate with a real program: a namespace the kernel refuses, a bwrap that
    # cannot mount, an interpreter `nobody` cannot reach all show up here, not mid-benchmark.
    tried = []
    probe_limits = Limits(timeout_s=20.0)
    for plan in candidates(level):
        result = _run(plan, python, "print('sandbox ok')", probe_limits)
        if result.passed and result.stdout.strip() == "sandbox ok":
            return plan
        tried.append(f"{plan.isolation.describe()}: {result.outcome} {result.detail}".strip())
    raise SandboxError(f"no sandbox level {level!r} works on this machine; tried: " + "; ".join(tried)
                       if tried else f"sandbox level {level!r} is not installed here (bwrap, unshare)")


# -- running ------------------------------------------------------------------------------------


def _run(plan: Plan, python: str, program: str, limits: Limits) -> Result:
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
                argv = command(plan, python, workdir, limits)
                start = time.perf_counter()
                # preexec_fn only where prlimit is missing: it is not safe in a threaded process.
                apply_limits = None if shutil.which("prlimit") else preexec(rlimits(limits, plan))
                proc = subprocess.Popen(argv, cwd=workdir, env=environment(workdir), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, close_fds=True, start_new_session=True,
                                        preexec_fn=apply_limits)
            except OSError as exc:
                return Result("sandbox_error", f"could not start the sandbox: {exc}")
            status, rusage, timed_out = _wait(proc, limits.timeout_s)
            wall = time.perf_counter() - start
        return _result(plan, program, root, limits, status, rusage, timed_out, wall)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any, bool]:
    """Wait for the program or the deadline, then reap it with its resource usage."""
    try:
        pidfd = os.pidfd_open(proc.pid)  # Linux 5.3+: woken the moment it exits
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            timed_out = not select.select([pidfd], [], [], timeout)[0]
        finally:
            os.close(pidfd)
    else:
        deadline, delay = time.monotonic() + timeout, 0.001
        while True:
            reaped, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if reaped:
                return _reaped(proc, status, rusage, timed_out=False)
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    if timed_out:
        _kill_tree(proc.pid)
    _, status, rusage = os.wait4(proc.pid, 0)
    return _reaped(proc, status, rusage, timed_out)


def _reaped(proc: subprocess.Popen[bytes], status: int, rusage: Any, timed_out: bool) -> tuple[int, Any, bool]:
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


def _result(plan: Plan, program: str, root: Path, limits: Limits, status: int, rusage: Any,
            timed_out: bool, wall: float) -> Result:
    stdout, cut_out = _read(root / "stdout", limits.output_bytes)
    stderr, cut_err = _read(root / "stderr", limits.output_bytes, tail=True)  # the traceback is last
    stderr, marker, times = stderr.rpartition(f"\n{TIMES_MARKER}\n")
    if not marker:  # the shell never got to report (killed at the deadline)
        stderr, times = times, ""
    children = _TIMES.findall(times)
    cpu = sum(int(m) * 60 + float(s) for m, s in (children[-1][:2], children[-1][2:])) if len(children) == 2 \
        else rusage.ru_utime + rusage.ru_stime
    # bwrap's own usage leaves the sandboxed processes out; the other levels wait for them.
    rss = None if plan.isolation.level == "bwrap" else rusage.ru_maxrss
    # A forked child starts with its parent's high-water mark (Linux keeps ru_maxrss across
    # exec): a figure not below the harness's own is the harness's, not the program's.
    if rss is not None and rss >= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss:
        rss = None
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
