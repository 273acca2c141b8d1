"""Reading a sandboxed program's outcome from the worker's answer (harness/sandbox/worker.py).

A pass needs the runner's proof (the per-run secret given back after the program's last
statement), never the exit status alone; the detail names the failed assertion, the exception,
the signal or the limit hit, from the program's own stderr tail.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

PROGRAM_FILE = "program.py"  # the name tracebacks give the program (worker.py's PROGRAM)
Outcome = Literal["pass", "fail", "timeout", "crash", "sandbox_error"]


class Limits(Protocol):
    """The limits a detail names (harness.sandbox.isolation.Limits; a lower layer cannot import it)."""

    @property
    def timeout_s(self) -> float: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def file_bytes(self) -> int: ...
_TRACEBACK_LINE = re.compile(r'File "' + re.escape(PROGRAM_FILE) + r'", line (\d+)')


@dataclass
class Result:
    outcome: Outcome
    detail: str = ""  # the failed assertion, the exception, the signal or the limit hit
    exit_code: int | None = None
    signal: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_kb: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False  # stdout or stderr was longer than Limits.output_bytes

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_detail(limits: Limits) -> str:
    return f"memory limit of {limits.memory_bytes} bytes reached (control group, shared memory included)"


def outcome(answer: dict[str, Any], program: str, limits: Limits, memory_limit_hit: bool) -> Result:
    """The Result of one answer; `memory_limit_hit`: the control group's OOM killer acted."""
    stderr = answer["stderr"]
    code = os.waitstatus_to_exitcode(answer["status"])
    result = Result("crash", exit_code=code, wall_s=answer["wall_s"], cpu_s=answer["cpu_s"],
                    max_rss_kb=answer["max_rss_kb"], stdout=answer["stdout"], stderr=stderr,
                    truncated=answer["truncated"])
    if code < 0:
        try:
            result.signal = signal.Signals(-code).name
        except ValueError:
            result.signal = str(-code)
    memory = memory_limit_hit
    last = last_line(stderr)
    if answer["timed_out"]:
        result.outcome, result.detail = "timeout", f"no exit within {limits.timeout_s:g} s (wall clock)"
    elif code == 0 and answer["proof"]:
        result.outcome = "pass"
    elif result.signal == "SIGXCPU":
        result.outcome, result.detail = "timeout", "CPU time limit exceeded (SIGXCPU)"
    elif memory and result.signal == "SIGKILL":
        result.detail = memory_detail(limits)
    elif result.signal == "SIGXFSZ":
        result.detail = f"file size limit of {limits.file_bytes} bytes exceeded (SIGXFSZ): output or a file too large"
    elif last.startswith("AssertionError"):
        result.outcome, result.detail = "fail", _failed_assertion(program, stderr) or last
    elif code == 0:  # exit status 0 without the runner's proof: the program did not run to its end
        result.outcome = "fail"
        result.detail = answer["tampered"] or "the program exited with status 0 before its last statement ran"
    elif answer["tampered"]:
        result.detail = answer["tampered"]
    elif result.signal is not None:
        result.detail = f"killed by {result.signal}" + (f" ({last})" if last else "")
    else:
        result.detail = last or f"exit status {code}"
    return result


def last_line(text: str) -> str:
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
