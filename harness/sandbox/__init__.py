"""Running untrusted generated code: each program in a fresh, limited child of a warm jailed worker.

The jail (harness/sandbox/isolation.py: bwrap, unshare, or the explicit, unisolated rlimits) is built once
per Sandbox and holds a worker (harness/sandbox/worker.py) that forks one child per program: the
jail's cost is paid once, a program costs a fork. Each child gets rlimits on CPU time, address
space, file size and open files, a scrubbed environment (no API keys), a wall-clock timeout after
which every process in the jail but the worker is killed, and its output on memfds the worker
created (read back bounded; nothing is re-opened by path). A control group (harness/sandbox/cgroups.py)
adds a memory limit that counts shared memory, a process limit, and a kill-all.

Outcomes: a pass needs the runner's proof that the program ran to its last statement (see the
worker); a sandbox error is only ever the harness's own finding (the jail's worker never said
hello), never text a program printed.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import psutil

from harness.sandbox.cgroups import Cgroup
from harness.sandbox.isolation import (
    INNER_WORKDIR,
    LEVELS,
    NOBODY,
    PRIVATE_FOLDERS,
    Isolation,
    Limits,
    Plan,
    candidates,
    command,
    diagnose,
    environment,
    interpreter_paths,
    jail_parent,
    rlimits,
    unreadable_by_nobody,
)
from harness.sandbox.outcome import Result, last_line, memory_detail, outcome

__all__ = ["LEVELS", "Isolation", "Limits", "Result", "Sandbox", "SandboxError"]

_WORKER = Path(__file__).with_name("worker.py")
_START_S = 30.0  # a jail that has not said hello by then is broken
_GRACE_S = 5.0  # the worker enforces the timeout; the harness steps in only this much later
_MEMORY_HEADROOM = 96 << 20  # the worker and the jail's own processes share the control group
_names = itertools.count()


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): the case is an error, never a wrong answer."""


class Sandbox:
    """Runs Python programs, one contained child each. Thread-safe (one program at a time per
    Sandbox: run several Sandboxes for parallel programs); close() or garbage collection ends the jail."""

    def __init__(self, limits: Limits | None = None, level: str = "auto", python: str | None = None) -> None:
        if level != "auto" and level not in LEVELS:
            raise ValueError(f"sandbox level {level!r}: expected auto or one of {', '.join(LEVELS)}")
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self._plan, self._cgroup_name = _choose_plan(level, self.python)
        self._lock = threading.Lock()
        self._holder: list[_Worker | None] = [None]  # the jail, started on the first run
        self._finalizer = weakref.finalize(self, _close_worker, self._holder)

    @property
    def isolation(self) -> Isolation:
        return self._plan.isolation(self._cgroup_name)

    def run(self, program: str, limits: Limits | None = None) -> Result:
        """Run `program` (Python source) and say how it ended."""
        limits = limits or self.limits
        with self._lock:
            worker = self._holder[0]
            if worker is None or worker.python != self.python or not worker.alive():
                if worker is not None:
                    worker.close()
                try:
                    worker = _Worker.start(self._plan, self.python, self.limits)
                except _StartError as error:
                    self._holder[0] = None
                    return Result("sandbox_error", f"could not start the sandbox: {error}")
                self._holder[0] = worker
            return worker.run(program, limits)

    def close(self) -> None:
        self._finalizer()


def _close_worker(holder: list[_Worker | None]) -> None:
    if holder[0] is not None:
        holder[0].close()
        holder[0] = None


# -- choosing the isolation ---------------------------------------------------------------------

_plans: dict[tuple[str, str], tuple[Plan, str]] = {}


def _choose_plan(level: str, python: str) -> tuple[Plan, str]:
    # Probe each candidate with a real program: a namespace the kernel refuses, a bwrap that
    # cannot mount, an interpreter `nobody` cannot reach all show up here, not mid-benchmark.
    if (level, python) in _plans:
        return _plans[(level, python)]
    tried = []
    plans = candidates(level)
    for plan in plans:
        if plan.as_root and plan.level != "rlimits" and (why := unreadable_by_nobody(python)):
            raise SandboxError(why)
        try:
            worker = _Worker.start(plan, python, Limits(timeout_s=20.0))
        except _StartError as error:
            tried.append(f"{plan.level}: {error}")
            continue
        try:
            result = worker.run("print('sandbox ok')", Limits(timeout_s=20.0))
            cgroup = worker.cgroup.describe if worker.cgroup else "none"
        finally:
            worker.close()
        if result.passed and result.stdout.strip() == "sandbox ok":
            _plans[(level, python)] = (plan, cgroup)
            if level == "auto" and plan.level != "bwrap":  # said once per process and interpreter
                warnings.warn(f"the sandbox runs generated code at level {plan.level}, not bwrap"
                              + (f" ({'; '.join(tried)})" if tried else " (bubblewrap is not installed)")
                              + ("" if shutil.which("bwrap") else
                                 ": apt-get install bubblewrap for the strongest isolation"), stacklevel=3)
            return plan, cgroup
        tried.append(f"{plan.level}: {result.outcome} {result.detail}".strip())
    fix = "pass --sandbox rlimits to run generated code unisolated"
    if not shutil.which("bwrap"):  # advised only where it is missing: an installed one failed for a reason above
        fix = f"install bubblewrap (apt-get install bubblewrap), or {fix}"
    if not plans:
        raise SandboxError(f"sandbox level {level!r} is not installed here (bwrap; unshare, setpriv, mount "
                           f"and pivot_root from util-linux): {fix}")
    raise SandboxError(f"no sandbox level {level!r} works on this machine; tried: " + "; ".join(tried)
                       + f" -- fix: {fix}")


# -- the jailed worker --------------------------------------------------------------------------


class _StartError(Exception):
    pass


class _Worker:
    """One jail with its worker process, as the harness holds it."""

    def __init__(self, plan: Plan, python: str, proc: subprocess.Popen[bytes], root: Path,
                 log: Any, cgroup: Cgroup | None) -> None:
        self.plan, self.python, self.proc, self.root, self.log, self.cgroup = plan, python, proc, root, log, cgroup
        self.workdir = str(root / "work") if plan.level == "rlimits" else INNER_WORKDIR
        self.wipe = [self.workdir] if plan.level == "rlimits" else [INNER_WORKDIR, *PRIVATE_FOLDERS]
        self.nproc = _nproc(plan, limits_processes=0) if cgroup is None else None
        self.cgroup_limits: tuple[int, int] | None = None
        self.keep = [str(p) for p in interpreter_paths(python)]  # the way to the interpreter: never wiped

    @classmethod
    def start(cls, plan: Plan, python: str, limits: Limits) -> _Worker:
        try:  # TMPDIR, unless bwrap-as-nobody must pass through and cannot (a `mktemp -d` TMPDIR)
            parent = jail_parent(plan, python)
        except PermissionError as exc:
            raise _StartError(str(exc)) from None
        root = Path(tempfile.mkdtemp(prefix="harness-sandbox-", dir=parent))
        root.chmod(0o755)  # nobody passes through to staged interpreter folders; writes nothing here
        cgroup = Cgroup.create(f"harness-sandbox-{os.getpid()}-{next(_names)}")
        if plan.level == "rlimits":
            (root / "work").mkdir()
        # The jail's own messages (bwrap: ...) go to a file only the harness holds open.
        log = tempfile.TemporaryFile()  # noqa: SIM115 (held open for the jail's lifetime, closed in close())
        argv = command(plan, python, root, limits, _WORKER.read_text(), cgroup.procs_files if cgroup else [])
        env = environment(str(root / "work") if plan.level == "rlimits" else INNER_WORKDIR, python)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                    cwd=root / "work" if plan.level == "rlimits" else root,
                                    close_fds=True, start_new_session=True)
        except OSError as exc:
            log.close()
            _cleanup(root, cgroup)
            raise _StartError(str(exc)) from None
        worker = cls(plan, python, proc, root, log, cgroup)
        try:
            assert proc.stdout is not None
            hello = _read_frame(proc.stdout.fileno(), time.monotonic() + _START_S)
        except (TimeoutError, ValueError):
            hello = None
        if hello is None or not hello.get("ready"):
            why = worker.log_text()
            worker.close()
            raise _StartError(diagnose(plan, why) if why else f"the jail exited with status {proc.returncode}")
        # What the jail promises, checked from inside it: never root, never a capability.
        broken = (plan.as_root and hello["uid"] != NOBODY) or hello["caps"].strip("0") or not hello["no_new_privs"]
        if plan.level != "rlimits" and broken:
            worker.close()
            raise _StartError(f"the jail's worker runs as uid {hello['uid']} with capabilities "
                              f"{hello['caps']} (no_new_privs {hello['no_new_privs']}): refused")
        return worker

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        self.log.seek(0)
        text = self.log.read(4096).decode("utf-8", errors="replace").strip()
        return text.splitlines()[0] if text else ""

    def run(self, program: str, limits: Limits) -> Result:
        if self.cgroup is not None:
            wanted = (limits.memory_bytes + _MEMORY_HEADROOM, limits.processes + 2)
            if wanted != self.cgroup_limits:
                self.cgroup.limit(*wanted)
                self.cgroup_limits = wanted
        nproc = None if self.nproc is None else self.nproc + limits.processes
        nonce = secrets.token_hex(8)  # an answer that does not carry it was not the worker's
        request = {"nonce": nonce, "program": program, "timeout": limits.timeout_s, "rlimits": rlimits(limits, nproc),
                   "output_bytes": limits.output_bytes, "workdir": self.workdir, "wipe": self.wipe,
                   "keep": self.keep}
        start = time.perf_counter()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            body = json.dumps(request).encode()
            os.write(self.proc.stdin.fileno(), struct.pack("!I", len(body)) + body)
            answer = _read_frame(self.proc.stdout.fileno(), time.monotonic() + limits.timeout_s + _GRACE_S)
        except TimeoutError:  # the worker itself is stuck (memory pressure): end the jail
            self.close()
            return Result("timeout", f"no exit within {limits.timeout_s:g} s (wall clock)",
                          wall_s=time.perf_counter() - start)
        except OSError:
            answer = None
        except ValueError:  # not the worker's writing: only a program running as the harness's user gets here
            answer = {}
        if answer is None:  # the worker died while the program ran: the program's doing
            self.close()
            memory = self.cgroup is not None and self.cgroup.memory_limit_hit()
            return Result("crash", memory_detail(limits) if memory else
                          "the sandbox's worker was killed while the program ran", signal="SIGKILL",
                          wall_s=time.perf_counter() - start)
        if answer.get("nonce") != nonce:  # only a program running as the harness's user gets here
            self.close()
            return Result("crash", "the program wrote into the sandbox worker's answer channel",
                          wall_s=time.perf_counter() - start)
        if "error" in answer:  # the worker's own failure, in its own words
            self.close()
            return Result("sandbox_error", f"the sandbox's worker failed: {answer['error'].strip().splitlines()[-1]}")
        if not answer["started"] and not answer["timed_out"]:  # the child died in the runner's setup
            detail = last_line(answer["stderr"]) or f"exit status {os.waitstatus_to_exitcode(answer['status'])}"
            return Result("sandbox_error", f"the sandbox could not start the program: {detail}")
        return outcome(answer, program, limits, self.cgroup is not None and self.cgroup.memory_limit_hit())

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:  # the worker ends at end of input, and the jail's processes reap it
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            if self.cgroup is not None:
                self.cgroup.kill()
            _kill_tree(self.proc.pid)
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        _cleanup(self.root, self.cgroup)


def _cleanup(root: Path, cgroup: Cgroup | None) -> None:
    if cgroup is not None:
        cgroup.remove()
    shutil.rmtree(root, ignore_errors=True)  # fd-based: symlinks the program left are not followed


def _kill_tree(pid: int) -> None:
    try:
        victims = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        victims = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for child in victims:
        try:
            child.kill()
        except psutil.Error:
            pass


def _nproc(plan: Plan, limits_processes: int) -> int | None:
    """RLIMIT_NPROC counts every task of the user: as many as run now, plus the program's share."""
    uid = NOBODY if plan.as_root and plan.level != "rlimits" else os.geteuid()
    if uid == 0:
        return None  # root is exempt
    running = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        uids = proc.info.get("uids")
        if uids is not None and uids.real == uid:
            running += proc.info.get("num_threads") or 1
    return running + limits_processes


def _read_frame(fd: int, deadline: float, limit: int = 16 << 20) -> dict[str, Any] | None:
    """One length-prefixed JSON answer of the worker: None at end of file, ValueError for what no
    worker writes (too long, not JSON), TimeoutError past the deadline. Reads exactly one frame."""
    head = _read_exact(fd, 4, deadline)
    if head is None:
        return None
    length = struct.unpack("!I", head)[0]
    if length > limit:
        raise ValueError(f"an answer of {length} bytes")
    body = _read_exact(fd, length, deadline)
    if body is None:
        return None
    answer = json.loads(body)  # json.JSONDecodeError is a ValueError
    if not isinstance(answer, dict):
        raise ValueError("an answer that is not an object")
    return answer


def _read_exact(fd: int, size: int, deadline: float) -> bytes | None:
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
