"""Reading the worker's answer: the outcome rules, on answers written out by hand."""

from __future__ import annotations

import signal

import pytest

from harness.sandbox import Limits
from harness.sandbox.outcome import outcome

PROGRAM = "def f(x):\n    return x\n\nassert f(2) == 3\n"


def answer(status: int = 0, proof: bool = False, stderr: str = "", timed_out: bool = False,
           tampered: str = "") -> dict:
    return {"status": status, "proof": proof, "stderr": stderr, "stdout": "", "timed_out": timed_out,
            "tampered": tampered, "wall_s": 0.1, "cpu_s": 0.05, "max_rss_kb": 9000, "truncated": False}


def exited(code: int) -> int:
    return code << 8  # a wait status


@pytest.mark.parametrize(("given", "expected"), [
    (answer(exited(0), proof=True), ("pass", "")),
    (answer(exited(0)), ("fail", "the program exited with status 0 before its last statement ran")),
    (answer(exited(0), tampered="an unexpected message on the runner's channel"),
     ("fail", "an unexpected message on the runner's channel")),
    (answer(exited(1), stderr='Traceback:\n  File "program.py", line 4, in <module>\nAssertionError\n'),
     ("fail", "line 4: assert f(2) == 3")),
    (answer(exited(1), stderr="bwrap: Can't mount proc on /newroot/proc: Operation not permitted\n"),
     ("crash", "bwrap: Can't mount proc on /newroot/proc: Operation not permitted")),
    (answer(exited(127), stderr="unshare: failed to execute sh\n"), ("crash", "unshare: failed to execute sh")),
    (answer(signal.SIGXCPU), ("timeout", "CPU time limit exceeded (SIGXCPU)")),
    (answer(signal.SIGKILL, timed_out=True), ("timeout", "no exit within 10 s (wall clock)")),
    (answer(signal.SIGSEGV), ("crash", "killed by SIGSEGV")),
])
def test_outcome_rules(given: dict, expected: tuple[str, str]) -> None:
    result = outcome(given, PROGRAM, Limits(), memory_limit_hit=False)
    assert (result.outcome, result.detail) == expected


def test_a_kill_by_the_memory_limit_says_so() -> None:
    result = outcome(answer(signal.SIGKILL), PROGRAM, Limits(memory_bytes=1 << 28), memory_limit_hit=True)
    assert (result.outcome, result.signal) == ("crash", "SIGKILL")
    assert result.detail.startswith("memory limit of 268435456 bytes reached")
