"""Answering a code task, whichever strategy: n samples of one model (pass@k), or the cascade.

The tries themselves (one model call, one sandboxed run each) are in attempts.py; the cascade
(cascade.py) strings tries of two models together. `answer` is what a benchmark module calls for
one case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.confidence import TESTS_PASSED, passed_share
from harness.models.call import ModelCall
from harness.report import passk
from harness.sandbox import Sandbox, SandboxError
from harness.strategies import cascade
from harness.strategies.attempts import GREEDY, Attempt, Variant, attempt, sample, totals, variants
from harness.suites.base import Score
from harness.suites.code import CodeTask

if TYPE_CHECKING:
    from harness.strategies.delegate import RouterResult

__all__ = ["GREEDY", "Attempt", "CodeAnswer", "Variant", "answer", "attempt", "routed_answer", "sample", "totals",
           "variants"]


@dataclass
class CodeAnswer:
    """A code case's outcome, ready for the `record` fixture."""

    prediction: str
    score: Score
    mode: str
    extra: dict[str, Any]


def routed_answer(task: CodeTask, routed: RouterResult, sandbox: Sandbox) -> CodeAnswer:
    """A delegation-router case: the large model's final text, run against the task's tests."""
    result = sandbox.run(task.program(routed.text))
    if result.outcome == "sandbox_error":
        raise SandboxError(f"item {task.item_id}: the sandbox failed: {result.detail}")
    return CodeAnswer(routed.text, Score(result.passed, {"pass@1": float(result.passed)}), "router",
                      {**routed.to_extra(), "output": routed.text, "outcome": result.outcome,
                       "detail": result.detail, "sandbox_s": result.wall_s, "sandbox_cpu_s": result.cpu_s,
                       "isolation": sandbox.isolation.describe()})


def answer(task: CodeTask, model: ModelCall, sandbox: Sandbox, *, strategy: str = "single",
           large: Callable[[], ModelCall] | None = None, samples: int = 1,
           cascade_variants: int = 2) -> CodeAnswer:
    """One case of a code suite: n samples of one model (pass@k), or the cascade.

    The verdict (`correct`) of a sampled case is its first sample's: an unbiased pass@1 per item,
    so the scoreboard's accuracy estimates pass@1; scores hold pass@k and pass^k over all n.
    """
    isolation = sandbox.isolation.describe()
    # False only under an explicit --sandbox rlimits: the report's header must say code ran unisolated.
    isolated = sandbox.isolation.isolated
    if strategy == "cascade":
        if large is None:
            raise ValueError("the cascade needs the large model")
        result = cascade.run(model, large, task, sandbox, variants(cascade_variants))
        final = result.final
        extra = result.to_extra()
        # Every step of the cascade is a typed try of the record.
        extra["tries"] = extra.pop("attempts")
        return CodeAnswer(final.code, Score(final.passed, {"pass@1": float(final.passed)}), "cascade",
                          {**extra, "outcome": final.outcome, "detail": final.detail, "isolation": isolation,
                           "sandbox_isolated": isolated})
    if strategy != "single":
        raise ValueError(f"unknown code strategy {strategy!r}")
    tries = sample(model, task, sandbox, samples)
    passed = [t.passed for t in tries]
    first = tries[0]
    return CodeAnswer(first.code, Score(first.passed, passk.scores(passed)), "sample" if samples > 1 else "greedy",
                      {"outcome": first.outcome, "detail": first.detail, "samples": len(tries),
                       "passed": sum(passed), "outcomes": [t.outcome for t in tries],
                       "sandbox_s": sum(t.sandbox_s for t in tries),
                       "sandbox_cpu_s": sum(t.sandbox_cpu_s for t in tries), "isolation": isolation,
                       "tries": [t.to_dict() for t in tries] if len(tries) > 1 else [], "sandbox_isolated": isolated,
                       # The share that passed the tests: the cascade's signal, for the routing lab.
                       "confidence": passed_share(passed), "confidence_source": TESTS_PASSED})
